// SPDX-License-Identifier: Apache-2.0
// `fd` delivery: the daemon writes a session's pcapng into the client's own descriptor.
//
// The unprivileged client opens its output itself (its credentials, its umask; `-w -` is
// its stdout) and offers the descriptor number; the daemon takes a duplicate with
// pidfd_open(peer pid) + pidfd_getfd. That duplicate is the open file description the
// client opened, with its access mode: the daemon opens no path as root, so there is no
// path to race and nothing the client could not write itself. What is checked before a
// byte is written:
//  - the pid is the connection's peer (SO_PEERCRED, taken when it connected) and, once
//    the pidfd holds it (a pidfd names one process, never a later one with the same pid),
//    every uid of that process (real, effective, saved, filesystem) is the peer's uid and
//    it is still alive; a peer that exited and whose pid was reused by another user's
//    process is refused (a same-uid process could hand the fd over itself anyway);
//  - it is a regular file, a FIFO/pipe or a socket (fstat): a directory, a terminal or a
//    device is refused, naming params.fd;
//  - it is open for writing (F_GETFL: O_WRONLY or O_RDWR).
// Writing: a regular file synchronously, in large gather writes straight from the perf
// ring (PcapngWriter's vectored mode, as tcpdump writes); a pipe or socket non-blocking
// (O_NONBLOCK on the shared description), the rest queued and written when poll says the
// reader made room, so a stalled reader never stalls the daemon (its backlog counts as
// clientDropped beyond the limit, as on the socket). A failed write (EPIPE: the reader went
// away; ENOSPC) ends the session, and the client is told.
import fs from 'node:fs';
import koffi from 'koffi';
import { AppError } from '../errors.js';
import type { SystemError } from '../sys/errors.js';
import { fdFlags, O_ACCMODE, O_NONBLOCK, O_RDWR, O_WRONLY, pidfdAlive, pidfdGetfd, pidfdOpen, processUids, seekEnd, setNonBlocking } from '../sys/pidfd.js';
import { writevAll } from './pcapng.js';
import type { CaptureSink } from './manager.js';

export type FdKind = 'file' | 'fifo' | 'socket';

/** The client's descriptor could not be taken for a reason of this host, not of the request: use the stream. */
export class FdUnavailable extends Error {
  override name = 'FdUnavailable';
}

const invalidFd = (fd: number, why: string): AppError =>
  new AppError('InvalidParams', `params.fd: descriptor ${fd} of the calling process ${why}`, { field: 'params.fd', value: fd });

/**
 * A duplicate of descriptor `fd` of the connection's peer (`pid`, `uid` from SO_PEERCRED).
 * Throws AppError (InvalidParams naming params.fd) when the descriptor is not one the
 * daemon may write, FdUnavailable when pidfd_getfd is refused here (fall back).
 */
export function takeClientFd(pid: number | null, uid: number, fd: number): { fd: number; kind: FdKind } {
  if (pid === null || pid <= 0) throw new FdUnavailable('the connection carries no peer pid');
  let pidfd: number;
  try {
    pidfd = pidfdOpen(pid);
  } catch (err) {
    const e = err as SystemError;
    if (e.errnoName === 'ENOSYS' || e.errnoName === 'EPERM') throw new FdUnavailable(`pidfd_open refused (${e.errnoName})`);
    throw invalidFd(fd, `cannot be taken: the client process ${pid} is gone (${e.errnoName})`);
  }
  let dup = -1;
  try {
    const uids = processUids(pid);
    if (!uids || !pidfdAlive(pidfd)) throw invalidFd(fd, `cannot be taken: the client process ${pid} is gone`);
    if (uids.some((u) => u !== uid)) {
      throw new AppError('PermissionDenied', `params.fd: process ${pid} runs with uids ${uids.join('/')}, not the connection's uid ${uid}: its descriptors are not taken`, { field: 'params.fd', value: fd });
    }
    try {
      dup = pidfdGetfd(pidfd, fd);
    } catch (err) {
      const e = err as SystemError;
      if (e.errnoName === 'EBADF') throw invalidFd(fd, 'is not open');
      throw new FdUnavailable(`pidfd_getfd refused (${e.errnoName}${e.errnoName === 'EPERM' ? ': no CAP_SYS_PTRACE, Yama ptrace_scope or a seccomp filter' : e.errnoName === 'ENOSYS' ? ': kernel before 5.6' : ''})`);
    }
    // The process may have exited between the uid check and the duplicate: a pidfd never
    // names another process, so pidfd_getfd then fails (ESRCH) rather than reach a new one.
    const st = fs.fstatSync(dup);
    const kind: FdKind | null = st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : null;
    if (!kind) {
      const what = st.isDirectory() ? 'a directory' : st.isCharacterDevice() ? 'a character device (a terminal?)' : st.isBlockDevice() ? 'a block device' : 'not a file';
      throw invalidFd(fd, `is ${what}: only a regular file, a FIFO or pipe, or a socket`);
    }
    const mode = fdFlags(dup) & O_ACCMODE;
    if (mode !== O_WRONLY && mode !== O_RDWR) throw invalidFd(fd, 'is not open for writing (opened read-only)');

    const out = { fd: dup, kind };
    dup = -1;
    return out;
  } finally {
    if (dup >= 0) fs.closeSync(dup);
    fs.closeSync(pidfd);
  }
}

/** Writes a session's pcapng into the client's descriptor (see the file's comment). */
export class FdOutput implements CaptureSink {
  private queue: Buffer[] = [];
  private queued = 0;
  private poller: ReturnType<typeof koffi.node.poll> | null = null;
  private closing = false;
  private closed = false;
  /** Bytes written into the descriptor. */
  bytes = 0;
  /** Why writing failed (then nothing more is written). */
  error: string | null = null;
  /** Called once when a write fails. */
  onError: (message: string) => void = () => undefined;
  readonly writevSync?: (parts: Uint8Array[]) => void;

  constructor(private readonly fd: number, readonly kind: FdKind) {
    if (kind === 'file') {
      // Append after what is there (a resumed session's new section after the old one,
      // past a block a killed daemon left torn and the client cut off).
      seekEnd(fd);
      this.writevSync = (parts) => this.guard(() => {
        writevAll(fs, fd, parts);
        for (const p of parts) this.bytes += p.length;
      });
    } else {
      this.wasNonBlocking = (fdFlags(fd) & O_NONBLOCK) !== 0;
      setNonBlocking(fd, true);
    }
  }

  /** The description's O_NONBLOCK before: given back at the end (the client shares it). */
  private wasNonBlocking = true;

  private guard(f: () => void): void {
    if (this.error !== null || this.closed) return;
    try {
      f();
    } catch (err) {
      this.fail(err as NodeJS.ErrnoException);
    }
  }

  private fail(err: NodeJS.ErrnoException): void {
    if (this.error !== null) return;
    this.error = err.code === 'EPIPE' ? 'the reader closed its end (EPIPE)' : `writing failed: ${err.code ?? err.message}`;
    this.queue = [];
    this.queued = 0;
    this.onError(this.error);
  }

  write(chunk: Buffer): void {
    if (this.error !== null || this.closed) return;
    if (this.kind === 'file') return this.guard(() => {
      writevAll(fs, this.fd, [chunk]);
      this.bytes += chunk.length;
    });
    if (this.queued > 0) {
      this.queue.push(chunk);
      this.queued += chunk.length;
      return;
    }
    const n = this.tryWrite([chunk]);
    if (n < 0) return;
    if (n < chunk.length) {
      this.queue.push(chunk.subarray(n));
      this.queued += chunk.length - n;
      this.arm();
    }
  }

  /** Non-blocking gather write: bytes written (0 when the reader has no room), -1 after a failure. */
  private tryWrite(parts: Buffer[]): number {
    try {
      const n = parts.length === 1 ? fs.writeSync(this.fd, parts[0]!) : fs.writevSync(this.fd, parts);
      this.bytes += n;
      return n;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      this.fail(err as NodeJS.ErrnoException);
      return -1;
    }
  }

  private arm(): void {
    if (this.poller) return this.poller.start({ writable: true }, this.onWritable);
    this.poller = koffi.node.poll(this.fd, { writable: true }, this.onWritable);
  }

  private readonly onWritable = (): void => {
    this.pump();
    if (this.queued === 0 || this.error !== null) {
      this.poller?.stop();
      if (this.closing) this.finishClose();
    }
  };

  private pump(): void {
    while (this.queued > 0 && this.error === null) {
      const batch = this.queue.slice(0, 512);
      const n = this.tryWrite(batch);
      if (n <= 0) return;
      this.queued -= n;
      let left = n;
      while (left > 0) {
        const h = this.queue[0]!;
        if (h.length <= left) {
          left -= h.length;
          this.queue.shift();
        } else {
          this.queue[0] = h.subarray(left);
          left = 0;
        }
      }
    }
  }

  backlog(): number {
    return this.queued;
  }

  /** No more data: what is queued goes out (a pipe: as the reader takes it), then the duplicate is closed. */
  end(): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    if (this.queued === 0 || this.error !== null) this.finishClose();
    else this.arm();
  }

  /**
   * The daemon stops: what is queued is written now, waiting for the reader at most
   * `ms` (a pipe's reader could stall the shutdown otherwise), then the duplicate closes.
   * Returns the bytes that could not be written (a block then torn at the end).
   */
  endSync(ms: number): number {
    if (this.closed) return 0;
    const deadline = Date.now() + ms;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    while (this.queued > 0 && this.error === null && Date.now() < deadline) {
      this.pump();
      if (this.queued > 0) Atomics.wait(nap, 0, 0, 5); // shutdown only: the reader makes room or the deadline passes
    }
    const left = this.error === null ? this.queued : 0;
    this.finishClose();
    return left;
  }

  private finishClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close();
    this.poller = null;
    this.queue = [];
    this.queued = 0;
    try {
      if (!this.wasNonBlocking) setNonBlocking(this.fd, false);
    } catch {
      // the reader is gone
    }
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    this.onClosed();
  }

  /** Called once the duplicate is closed (the file is complete). */
  onClosed: () => void = () => undefined;

  get isClosed(): boolean {
    return this.closed;
  }
}
