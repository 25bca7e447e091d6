// SPDX-License-Identifier: Apache-2.0
// What /proc says about a process, for packet comments: executable, arguments, parent,
// systemd unit and cgroup; and, through describeProcess(), what the daemon's process table
// (monitor/processes.ts, handed in by app.ts) kept of a process that has exited since: the
// reader writes a packet up to its latency bound after the kernel took it, and a short-lived
// client is often gone by then.
import fs from 'node:fs';
import type { ProcessDetails } from './comments.js';

function read(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}

function exeOf(pid: number): string | null {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

const argsOf = (pid: number): string[] => (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);

/** The unit of a cgroup v2 path: its last `*.service` or `*.scope` component. */
export function unitOfCgroup(cgroupPath: string): string | null {
  const parts = cgroupPath.split('/').filter((p) => /\.(service|scope)$/.test(p));
  return parts.at(-1) ?? null;
}

/** What a process table kept of a process (its exec event, or the daemon's /proc scan). */
export interface KnownProcess {
  ppid: number | null;
  uid: number | null;
  exe: string | null;
  args: readonly string[];
}

/**
 * A describe function for capture sessions: /proc while the process lives (its state now),
 * else what `known` kept of it (executable, arguments, uid, parent; no cgroup path), else
 * null. The parent the same way.
 */
export function describeProcess(known: (pid: number) => KnownProcess | undefined): (pid: number) => ProcessDetails | null {
  return (pid) => {
    const live = procDetails(pid);
    if (live) return live;
    const k = known(pid);
    if (!k) return null;
    const parentLive = k.ppid ? procDetails(k.ppid) : null;
    const kept = k.ppid && !parentLive ? known(k.ppid) : undefined;
    return {
      pid, cmd: k.exe, args: k.args, uid: k.uid, ppid: k.ppid,
      parentCmd: parentLive?.cmd ?? kept?.exe ?? null,
      parentArgs: parentLive?.args ?? kept?.args ?? [],
      cgroup: null, unit: null,
    };
  };
}

export function procDetails(pid: number): ProcessDetails | null {
  const status = read(`/proc/${pid}/status`);
  if (status === null) return null;
  const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  const cg = /^0::(.*)$/m.exec(read(`/proc/${pid}/cgroup`) ?? '')?.[1] ?? null;
  return {
    pid,
    cmd: exeOf(pid),
    args: argsOf(pid),
    uid: Number.isNaN(uid) ? null : uid,
    ppid: ppid || null,
    parentCmd: ppid ? exeOf(ppid) : null,
    parentArgs: ppid ? argsOf(ppid) : [],
    cgroup: cg,
    unit: cg ? unitOfCgroup(cg) : null,
  };
}
