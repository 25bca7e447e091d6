// SPDX-License-Identifier: Apache-2.0
// Taking a duplicate of another process's open file descriptor: pidfd_open(2) +
// pidfd_getfd(2) (Linux 5.6), through libc's syscall() as the other raw syscalls. The
// duplicate refers to the same open file description the other process has (its access
// mode, its offset, the credentials it was opened with): nothing is opened again by path.
// pidfd_getfd needs PTRACE_MODE_ATTACH_REALCREDS over the target (CAP_SYS_PTRACE for
// another uid's process) and is refused by Yama ptrace_scope 3, by seccomp filters that
// do not list it, and by kernels before 5.6: callers fall back and say why.
import fs from 'node:fs';
import koffi from 'koffi';
import { lastErrno } from './libc.js';
import { SystemError } from './errors.js';

const libc = koffi.load('libc.so.6');
const syscall = libc.func('long syscall(long number, ...)') as (n: number, ...typed: unknown[]) => number;
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;
const lseekFn = libc.func('int64_t lseek(int fd, int64_t offset, int whence)') as (fd: number, off: number, whence: number) => number;

// Numbers from the common syscall table (the same on x86_64 and arm64).
const SYS_PIDFD_SEND_SIGNAL = 424;
const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;
const F_GETFL = 3;
const F_SETFL = 4;
export const O_ACCMODE = 3;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
const SEEK_END = 2;
const ESRCH = 3;

/** A pidfd for `pid` (close it with fs.closeSync). Throws SystemError (ESRCH: no such process). */
export function pidfdOpen(pid: number): number {
  const fd = syscall(SYS_PIDFD_OPEN, 'int', pid, 'unsigned int', 0);
  if (fd < 0) throw new SystemError('opening', 'a pidfd', lastErrno(), { target: `pid ${pid}` });
  return fd;
}

/** A duplicate (close-on-exec) of the process's descriptor `targetFd`. Throws SystemError
 * (EBADF: no such descriptor there; EPERM: not allowed to ptrace it, or a seccomp filter). */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  const fd = syscall(SYS_PIDFD_GETFD, 'int', pidfd, 'int', targetFd, 'unsigned int', 0);
  if (fd < 0) throw new SystemError('duplicating', `descriptor ${targetFd}`, lastErrno(), { target: 'the client process' });
  return fd;
}

/** fcntl(F_GETFL): the open file description's status flags and access mode. */
export function fdFlags(fd: number): number {
  const f = fcntlFn(fd, F_GETFL, 0);
  if (f < 0) throw new SystemError('reading the flags of', `descriptor ${fd}`, lastErrno());
  return f;
}

/** Sets or clears O_NONBLOCK on the open file description (shared with every duplicate). */
export function setNonBlocking(fd: number, on: boolean): void {
  const f = fdFlags(fd);
  const want = on ? f | O_NONBLOCK : f & ~O_NONBLOCK;
  if (want !== f && fcntlFn(fd, F_SETFL, want) < 0) throw new SystemError('setting the flags of', `descriptor ${fd}`, lastErrno());
}

/** lseek(fd, 0, SEEK_END): where the next write lands in a regular file. */
export function seekEnd(fd: number): number {
  const r = lseekFn(fd, 0, SEEK_END);
  if (r < 0) throw new SystemError('seeking', `descriptor ${fd}`, lastErrno());
  return r;
}

/** The uids of a process (/proc/PID/status Uid: real, effective, saved, filesystem), or null when it is gone. */
export function processUids(pid: number): number[] | null {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$/m.exec(s);
  return m ? m.slice(1, 5).map(Number) : null;
}

/** Is the process behind `pidfd` still alive? (pidfd_send_signal with signal 0: ESRCH once
 * it exited; EPERM only says that sending it a signal would need CAP_KILL, which the unit
 * does not keep: it is alive.) */
export function pidfdAlive(pidfd: number): boolean {
  if (syscall(SYS_PIDFD_SEND_SIGNAL, 'int', pidfd, 'int', 0, 'void *', null, 'unsigned int', 0) === 0) return true;
  return lastErrno() !== ESRCH;
}
