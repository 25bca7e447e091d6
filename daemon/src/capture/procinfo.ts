// SPDX-License-Identifier: Apache-2.0
// What /proc says about a process, for packet comments: executable, arguments, parent,
// systemd unit and cgroup. The daemon's process table (monitor/processes.ts) knows more
// (processes that exited); this is the fallback, and what the capture tests use.
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
