// SPDX-License-Identifier: Apache-2.0
// The process table: every process ebpfmon has seen (a /proc scan at start, then exec and
// exit events), so that flows and events can name the program, its path and its parent
// even after the process is gone. Exited processes are kept for `retentionMs`.
import fs from 'node:fs';
import type { ExecEvent, ExitEvent } from '../contract/events.js';

export interface ProcessInfo {
  pid: number;
  ppid: number | null;
  uid: number | null;
  comm: string;
  exe: string | null;
  /** cgroup v2 id at its exec, or, for a process that predates the daemon, when the
   * start-up scan read it (null: not known). */
  cgroupId: string | null;
  args: string[];
  startedAt: string | null;
  exitedAt: string | null;
  exitCode: number | null;
}

export class ProcessTable {
  private readonly procs = new Map<number, ProcessInfo & { exitedMs?: number }>();

  /** `onForget(pid, exitedAtMs)`: an exited process is forgotten (its exit's wall-clock ms). */
  constructor(private readonly opts: { retentionMs: number; maxEntries: number }, private readonly onForget?: (pid: number, exitedAtMs: number) => void) {}

  /** Reads /proc once: processes that predate the daemon. `cgroupIdOf`: a live process's
   * cgroup v2 id (the identity service's), so that its exit and its packets written after it
   * exited still name its cgroup. */
  scanProc(procRoot = '/proc', cgroupIdOf?: (pid: number) => string | null): number {
    let n = 0;
    for (const name of fs.readdirSync(procRoot)) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      try {
        const stat = fs.readFileSync(`${procRoot}/${name}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const comm = stat.slice(stat.indexOf('(') + 1, close);
        const fields = stat.slice(close + 2).split(' ');
        const status = fs.readFileSync(`${procRoot}/${name}/status`, 'utf8');
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
        let exe: string | null = null;
        try {
          exe = fs.readlinkSync(`${procRoot}/${name}/exe`);
        } catch {
          /* kernel thread, or gone */
        }
        const args = fs.readFileSync(`${procRoot}/${name}/cmdline`, 'utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
        this.procs.set(pid, { pid, ppid: Number(fields[1]), uid: Number.isNaN(uid) ? null : uid, comm, exe, cgroupId: cgroupIdOf?.(pid) ?? null, args, startedAt: null, exitedAt: null, exitCode: null });
        n++;
      } catch {
        /* exited while we looked */
      }
    }
    return n;
  }

  onExec(e: ExecEvent): void {
    this.procs.set(e.pid!, { pid: e.pid!, ppid: e.ppid, uid: e.uid, comm: e.comm ?? '', exe: e.filename, cgroupId: e.cgroupId, args: e.args, startedAt: e.at, exitedAt: null, exitCode: null });
    this.trim();
  }

  onExit(e: ExitEvent): void {
    const p = this.procs.get(e.pid!);
    const info = p ?? { pid: e.pid!, ppid: e.ppid, uid: e.uid, comm: e.comm ?? '', exe: null, cgroupId: null, args: [], startedAt: null, exitedAt: null, exitCode: null };
    info.exitedAt = e.at;
    info.exitCode = e.exitCode;
    (info as { exitedMs?: number }).exitedMs = Date.now();
    this.procs.set(e.pid!, info);
  }

  get(pid: number): ProcessInfo | undefined {
    return this.procs.get(pid);
  }

  lookup(pid: number): { ppid: number | null; exe: string | null; comm: string } | undefined {
    return this.procs.get(pid);
  }

  get size(): number {
    return this.procs.size;
  }

  /** Drops processes that exited more than `retentionMs` ago. */
  expire(now = Date.now()): void {
    for (const [pid, p] of this.procs) {
      if (p.exitedMs !== undefined && now - p.exitedMs > this.opts.retentionMs) {
        this.procs.delete(pid);
        this.onForget?.(pid, p.exitedAt !== null ? Date.parse(p.exitedAt) : NaN);
      }
    }
  }

  private trim(): void {
    if (this.procs.size <= this.opts.maxEntries) return;
    // Oldest exited first, then oldest inserted.
    for (const [pid, p] of this.procs) {
      if (this.procs.size <= this.opts.maxEntries) return;
      if (p.exitedAt !== null) this.procs.delete(pid);
    }
    for (const pid of this.procs.keys()) {
      if (this.procs.size <= this.opts.maxEntries) return;
      this.procs.delete(pid);
    }
  }
}
