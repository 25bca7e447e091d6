// SPDX-License-Identifier: Apache-2.0
// Cgroups a test creates under the cgroup2 mount, all below one directory named after the
// test process (`ebpfmon-id<pid36>-<n>`), with the processes the test moves into them.
// destroy() kills those processes by pid and removes the directories deepest first; a later
// run removes what a killed run left (its pid is gone).
import fs from 'node:fs';
import path from 'node:path';
import { findCgroup2Root } from '../../daemon/src/identity/cgroupfs.js';

let counter = 0;
const PREFIX_RE = /^ebpfmon-id([0-9a-z]+)-\d+$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function dirsDeepestFirst(dir: string): string[] {
  const all: string[] = [];
  const walk = (d: string) => {
    all.push(d);
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return all.sort((a, b) => b.length - a.length);
}

async function removeTree(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  const dirs = dirsDeepestFirst(dir);
  for (const d of dirs) {
    for (const l of readOr(path.join(d, 'cgroup.procs')).split('\n')) if (l) try { process.kill(Number(l), 'SIGKILL'); } catch { /* gone */ }
  }
  const deadline = Date.now() + 10_000;
  for (const d of dirs) {
    for (;;) {
      try {
        fs.rmdirSync(d);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`cannot remove cgroup ${d}: ${code}`);
        await new Promise((r) => setTimeout(r, 20)); // killed processes still exiting
      }
    }
  }
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export class TestCgroups {
  /** Path of the test's top directory below the cgroup2 root, e.g. /ebpfmon-id1x2-0. */
  readonly top: string;

  private constructor(readonly root: string) {
    this.top = `/ebpfmon-id${process.pid.toString(36)}-${counter++}`;
  }

  static async create(): Promise<TestCgroups> {
    const root = findCgroup2Root();
    if (!root) throw new Error('no cgroup2 hierarchy is mounted (see /proc/mounts)');
    for (const e of fs.readdirSync(root)) {
      const m = PREFIX_RE.exec(e);
      if (m && !pidAlive(parseInt(m[1]!, 36))) await removeTree(path.join(root, e)); // a killed run's
    }
    const t = new TestCgroups(root);
    fs.mkdirSync(path.join(root, t.top));
    return t;
  }

  /** Creates `rel` below the test's top directory; returns its path below the cgroup2 root. */
  mkdir(rel: string): string {
    const p = path.posix.join(this.top, rel);
    fs.mkdirSync(path.join(this.root, p), { recursive: true });
    return p;
  }

  /** Moves a process into the cgroup at `cgPath` (a path below the root). */
  move(pid: number, cgPath: string): void {
    fs.writeFileSync(path.join(this.root, cgPath, 'cgroup.procs'), String(pid));
  }

  async destroy(): Promise<void> {
    await removeTree(path.join(this.root, this.top));
  }
}
