// SPDX-License-Identifier: Apache-2.0
// What /proc says about a process, for packet comments: executable, arguments, parent,
// systemd unit and cgroup; and, through describeProcess(), what the daemon's process table
// (monitor/processes.ts, handed in by app.ts) kept of a process that has exited since: the
// reader writes a packet up to its latency bound after the kernel took it, and a short-lived
// client is often gone by then. The identity service (daemon/src/identity) names the
// process's cgroup, live or gone (from the cgroup id its exec had): unit, container, pod, app.
import fs from 'node:fs';
import type { ProcessDetails } from './comments.js';
import type { OwnerIdentity } from '../contract/identity.js';
import type { IdentitySource } from '../identity/index.js';

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
  /** Its cgroup v2 id (decimal) when it exec'd, where the table has it. */
  cgroupId?: string | null;
}

/** What describeProcess asks of the identity service. */
export type CgroupNames = Pick<IdentitySource, 'of' | 'cgroupIdOfPid'>;

/** `d` with the identity service's names for its cgroup (over the unit /proc's path gave). */
function named(d: ProcessDetails, id: OwnerIdentity): ProcessDetails {
  const c = id.container;
  return {
    ...d,
    cgroup: id.cgroupPath ?? d.cgroup ?? null,
    unit: id.userUnit ?? id.unit ?? d.unit ?? null,
    container: c ? { id: c.id, ...(c.name ? { name: c.name } : {}) } : null,
    pod: c && (c.podName || c.podUid) ? { ...(c.podName ? { name: c.podName } : {}), ...(c.namespace ? { namespace: c.namespace } : {}), ...(c.podUid ? { uid: c.podUid } : {}) } : null,
    app: id.app?.id ?? null,
  };
}

/**
 * A describe function for capture sessions: /proc while the process lives (its state now),
 * else what `known` kept of it (executable, arguments, uid, parent), else null. The parent
 * the same way. With `names`, the process's cgroup is named by the identity service: the
 * live process's cgroup now, a gone one's from the cgroup id its exec had (without one,
 * a gone process has no unit or cgroup lines).
 */
export function describeProcess(known: (pid: number) => KnownProcess | undefined, names?: CgroupNames): (pid: number) => ProcessDetails | null {
  return (pid) => {
    const live = procDetails(pid);
    if (live) {
      if (!names) return live;
      const cg = names.cgroupIdOfPid?.(pid) ?? null;
      return cg === null ? live : named(live, names.of(cg, pid));
    }
    const k = known(pid);
    if (!k) return null;
    const parentLive = k.ppid ? procDetails(k.ppid) : null;
    const kept = k.ppid && !parentLive ? known(k.ppid) : undefined;
    const d: ProcessDetails = {
      pid, cmd: k.exe, args: k.args, uid: k.uid, ppid: k.ppid,
      parentCmd: parentLive?.cmd ?? kept?.exe ?? null,
      parentArgs: parentLive?.args ?? kept?.args ?? [],
      cgroup: null, unit: null,
    };
    return names && k.cgroupId ? named(d, names.of(k.cgroupId, null)) : d;
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
