// SPDX-License-Identifier: Apache-2.0
// The container's cgroups. With --register=no --keep-unit and no systemd on the host,
// systemd-nspawn uses the cgroup it was started in as the container's own (it creates
// `supervisor` and `payload` under it), so it must be started in a fresh cgroup, or it
// writes into the root cgroup. This machine has a hybrid layout (cgroup2 at
// /sys/fs/cgroup/unified plus a named v1 `systemd` hierarchy that systemd 252 inside the
// container tracks its units with); a pure cgroup2 host has only the first. Every
// hierarchy present gets a directory of the same name.
import fs from 'node:fs';
import path from 'node:path';
import { killQuietly, waitUntil } from './command.js';

export interface Hierarchies {
  /** cgroup2 mount point (/sys/fs/cgroup or /sys/fs/cgroup/unified). */
  v2: string | null;
  /** The v1 name=systemd mount point, on hybrid hosts. */
  v1systemd: string | null;
}

export function hierarchies(): Hierarchies {
  const out: Hierarchies = { v2: null, v1systemd: null };
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type, opts] = line.split(' ');
    if (!mnt) continue;
    if (type === 'cgroup2' && out.v2 === null) out.v2 = mnt;
    if (type === 'cgroup' && opts?.split(',').includes('name=systemd')) out.v1systemd = mnt;
  }
  return out;
}

/** One relative cgroup path, present in every hierarchy. */
export class CgroupSet {
  private constructor(readonly rel: string, readonly dirs: string[]) {}

  /** Creates `rel` (relative to each hierarchy's root). Fails if no cgroup2 is mounted. */
  static create(rel: string): CgroupSet {
    const h = hierarchies();
    if (h.v2 === null) throw new Error('no cgroup2 hierarchy is mounted (see /proc/mounts); systemd 252 in the container needs one');
    const set = CgroupSet.at(rel);
    for (const d of set.dirs) fs.mkdirSync(d, { recursive: true });
    return set;
  }

  /** The set for `rel` without creating anything (for cleanup of a stale run). */
  static at(rel: string): CgroupSet {
    const h = hierarchies();
    return new CgroupSet(rel, [h.v2, h.v1systemd].filter((m): m is string => m !== null).map((m) => path.join(m, rel)));
  }

  child(rel: string): CgroupSet {
    return new CgroupSet(path.join(this.rel, rel), this.dirs.map((d) => path.join(d, rel)));
  }

  /** Shell lines that move the shell running them (`$$`) into this set. */
  shellMoveSelf(): string {
    return this.dirs.map((d) => `echo $$ > '${d}/cgroup.procs'`).join(' && ');
  }

  ensure(): void {
    for (const d of this.dirs) fs.mkdirSync(d, { recursive: true });
  }

  /** Pids in the subtree (any hierarchy). */
  pids(): number[] {
    const found = new Set<number>();
    for (const d of this.dirs) walk(d, (dir) => {
      for (const l of readOr(path.join(dir, 'cgroup.procs')).split('\n')) if (l) found.add(Number(l));
    });
    return [...found];
  }

  /**
   * Removes the subtree, deepest first. Processes still inside (which can only be ones
   * this harness started: the cgroup is ours) are SIGKILLed by pid first, with a bounded wait.
   */
  async remove(timeoutMs = 10_000): Promise<void> {
    if (!this.dirs.some((d) => fs.existsSync(d))) return;
    const left = this.pids();
    if (left.length) {
      for (const pid of left) killQuietly(pid, 'SIGKILL');
      await waitUntil(`processes in cgroup ${this.rel} to exit`, () => this.pids().length === 0, { timeoutMs }).catch(() => undefined);
    }
    const errors: string[] = [];
    for (const d of this.dirs) {
      const all: string[] = [];
      walk(d, (dir) => all.push(dir));
      for (const dir of all.sort((a, b) => b.length - a.length)) {
        try {
          fs.rmdirSync(dir);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT') errors.push(`${dir}: ${code}`);
        }
      }
    }
    if (errors.length) throw new Error(`could not remove cgroups: ${errors.join(', ')}`);
  }
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function walk(dir: string, visit: (dir: string) => void): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  visit(dir);
  for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name), visit);
}
