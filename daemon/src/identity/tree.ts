// SPDX-License-Identifier: Apache-2.0
// The process chain from a process up to its unit's main process, from /proc: parents are
// followed while they are in the same unit (or container) cgroup subtree, so the chain
// stops below systemd, the user manager or a container runtime's shim.
import fs from 'node:fs';
import { cgroupPathOfPid } from './cgroupfs.js';
import type { TreeEntry } from './types.js';

export const DEFAULT_TREE_DEPTH = 16;

/** pid -> {ppid, comm} from /proc/<pid>/stat; null when it is gone. */
export function procStat(pid: number, procRoot = '/proc'): { ppid: number; comm: string } | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm may contain spaces and parentheses: it ends at the last ')'
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { ppid: Number(fields[1]), comm: stat.slice(stat.indexOf('(') + 1, close) };
}

/** The real uid of a process from /proc/<pid>/status; null when it is gone. */
export function processUid(pid: number, procRoot = '/proc'): number | null {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`${procRoot}/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The part of a cgroup path that makes the identity: up to the innermost unit, or the whole path. */
export function scopeOf(path: string): string {
  const parts = path.split('/');
  for (let i = parts.length - 1; i > 0; i--) {
    if (parts[i]!.endsWith('.service') || parts[i]!.endsWith('.scope')) return parts.slice(0, i + 1).join('/');
  }
  return path;
}

export function processTree(pid: number, opts: { procRoot?: string; maxDepth?: number; scope?: string | null } = {}): TreeEntry[] {
  const procRoot = opts.procRoot ?? '/proc';
  const maxDepth = opts.maxDepth ?? DEFAULT_TREE_DEPTH;
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`pid must be a positive integer, got ${pid}`);
  const out: TreeEntry[] = [];
  const scope = opts.scope === undefined ? (() => {
    const p = cgroupPathOfPid(pid, procRoot);
    return p === null ? null : scopeOf(p);
  })() : opts.scope;
  let cur = pid;
  for (let depth = 0; depth < maxDepth; depth++) {
    const st = procStat(cur, procRoot);
    if (!st) break;
    out.push({ pid: cur, comm: st.comm });
    if (st.ppid <= 1 || scope === null) break;
    const parentPath = cgroupPathOfPid(st.ppid, procRoot);
    if (parentPath === null || (parentPath !== scope && !parentPath.startsWith(`${scope}/`))) break;
    cur = st.ppid;
  }
  return out;
}
