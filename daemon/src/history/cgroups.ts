// SPDX-License-Identifier: Apache-2.0
// cgroup id -> systemd unit, for history's `unit` filter. On cgroup v2 a cgroup's id (what
// bpf_get_current_cgroup_id() records) is the inode number of its directory, so walking the
// cgroup2 mount and stat()ing each directory maps every id to its path; the unit is the
// deepest path component that names a service or scope (`user.slice/user-1000.slice/
// user@1000.service/app.slice/app-firefox-1234.scope` -> app-firefox-1234.scope). Ids not
// found trigger one rescan, at most every `rescanMs`: cgroups come and go with units.
import fs from 'node:fs';
import path from 'node:path';

const UNIT_RE = /\.(service|scope)$/;

/** The cgroup2 mount point from a /proc/mounts text (`/sys/fs/cgroup` on most systems,
 * `/sys/fs/cgroup/unified` on a hybrid layout). Null when there is none. */
export function cgroup2Root(mounts = readOr('/proc/self/mounts')): string | null {
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1].replace(/\\040/g, ' ');
  }
  return null;
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The unit a cgroup path (relative to the cgroup2 root) belongs to, or null. */
export function unitOfPath(rel: string): string | null {
  const parts = rel.split('/').filter(Boolean);
  for (let i = parts.length - 1; i >= 0; i--) if (UNIT_RE.test(parts[i]!)) return parts[i]!;
  return null;
}

export class CgroupUnits {
  private byId = new Map<string, string | null>();
  private lastScan = -Infinity;
  /** Directories the last scan visited (for status and tests). */
  scanned = 0;

  constructor(
    private readonly root: string | null = cgroup2Root(),
    private readonly opts: { rescanMs: number; maxDirs: number; now: () => number } = { rescanMs: 5000, maxDirs: 100_000, now: Date.now },
  ) {}

  /** The unit of cgroup `id` (a decimal string, as flows carry it), or null. */
  unit(id: string | null): string | null {
    if (id === null || this.root === null) return null;
    const hit = this.byId.get(id);
    if (hit !== undefined) return hit;
    if (this.opts.now() - this.lastScan >= this.opts.rescanMs) {
      this.scan();
      const again = this.byId.get(id);
      if (again !== undefined) return again;
    }
    return null;
  }

  /** Walks the whole tree once (breadth-first, bounded): id -> unit for every directory. */
  scan(): void {
    this.lastScan = this.opts.now();
    const next = new Map<string, string | null>();
    const queue: string[] = [''];
    let n = 0;
    while (queue.length && n < this.opts.maxDirs) {
      const rel = queue.shift()!;
      const abs = path.join(this.root!, rel);
      let st: fs.BigIntStats;
      let entries: fs.Dirent[];
      try {
        st = fs.statSync(abs, { bigint: true });
        entries = fs.readdirSync(abs, { withFileTypes: true });
      } catch {
        continue; // removed while we walked
      }
      n++;
      next.set(st.ino.toString(), unitOfPath(rel));
      for (const e of entries) if (e.isDirectory()) queue.push(rel ? `${rel}/${e.name}` : e.name);
    }
    this.scanned = n;
    this.byId = next;
  }
}
