// SPDX-License-Identifier: Apache-2.0
// cgroup v2 ids and paths. The id the kernel gives BPF programs (bpf_get_current_cgroup_id)
// is the kernfs node id of the cgroup's directory, which stat() shows as its inode number
// on 64-bit machines. A cgroup v2 directory cannot be renamed and ids are never reused
// (the id carries a generation), so id -> path never goes stale while the cgroup lives,
// and the path a cgroup had stays the right answer for flows it made after it is gone.
//
// Three ways from an id to its path (measured in bench/identity, see docs/identity.md):
//  - a live pid: /proc/<pid>/cgroup names the path, stat() confirms the id (one read, one stat);
//  - a walk of the hierarchy, indexed by inode (CgroupIndex: once, then again on a miss,
//    at most once per `minRewalkMs`);
//  - open_by_handle_at (handle.ts): exact and cheap per id, but needs CAP_DAC_READ_SEARCH,
//    which the daemon's hardened unit does not have.
import fs from 'node:fs';
import path from 'node:path';
import { cgroup2Root } from '../sys/mounts.js';
import { v2PathFromProcCgroup } from './parse.js';

/** The cgroup2 mount (this machine: /sys/fs/cgroup/unified, hybrid; most distros /sys/fs/cgroup). */
export function findCgroup2Root(): string | null {
  return cgroup2Root();
}

/** Path below the root (`/a/b`) -> absolute directory, refusing anything that leaves the root. */
export function cgroupDir(root: string, rel: string): string {
  const abs = path.join(root, rel);
  if (abs !== root && !abs.startsWith(`${root}/`)) throw new RangeError(`cgroup path ${JSON.stringify(rel)} is outside ${root}`);
  return abs;
}

/** The id of the cgroup at `rel`, or null if there is none. */
export function cgroupIdOf(root: string, rel: string): bigint | null {
  try {
    return fs.statSync(cgroupDir(root, rel), { bigint: true }).ino;
  } catch {
    return null;
  }
}

/** A process's cgroup v2 path (below the root), or null (gone, kernel thread on v1-only). */
export function cgroupPathOfPid(pid: number, procRoot = '/proc'): string | null {
  try {
    return v2PathFromProcCgroup(fs.readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8'));
  } catch {
    return null;
  }
}

export interface CgroupIndexOptions {
  /** Fewest ms between two walks (a miss inside that time is a miss). Default 1000. */
  minRewalkMs?: number;
  /** Ids kept (the oldest seen go first). Default 65536. */
  maxEntries?: number;
  /** Directories one walk visits at most. Default 100000. */
  maxDirs?: number;
  now?: () => number;
}

/** id -> path, from walks of the hierarchy. Entries of removed cgroups stay until evicted.
 * A walk costs a stat and a readdir per cgroup (bench/identity: about 100 us each on a loaded
 * 2-core box): the daemon walks asynchronously (walkAsync), at most one walk at a time and at
 * most once per `minRewalkMs`, so a burst of unknown ids costs one walk and blocks nothing. */
export class CgroupIndex {
  private readonly byId = new Map<bigint, string>();
  private lastWalk = -Infinity;
  private inFlight: Promise<void> | null = null;
  walks = 0;
  /** Walks begun (a walk that begins after an id was in use and does not find it proves it gone). */
  walksStarted = 0;
  lastWalkDirs = 0;
  lastWalkMs = 0;

  constructor(readonly root: string, private readonly opts: CgroupIndexOptions = {}) {}

  /** The path of `id` if a walk or remember() has seen it. */
  peek(id: bigint): string | null {
    const hit = this.byId.get(id);
    return hit === undefined ? null : hit;
  }

  /** The path of `id`, walking (synchronously) when it is unknown and the last walk is old enough. */
  lookup(id: bigint): string | null {
    const hit = this.peek(id);
    if (hit !== null || !this.walkDue()) return hit;
    this.walk();
    return this.peek(id);
  }

  /** The path of `id`, walking asynchronously when it is unknown and a walk is due (or running). */
  async lookupAsync(id: bigint): Promise<string | null> {
    const hit = this.peek(id);
    if (hit !== null) return hit;
    if (this.inFlight) await this.inFlight;
    else if (this.walkDue()) await this.walkAsync();
    return this.peek(id);
  }

  /** Records what is known from elsewhere (a pid's cgroup), sparing a walk. */
  remember(id: bigint, rel: string): void {
    this.byId.delete(id);
    this.byId.set(id, rel);
    this.trim();
  }

  get size(): number {
    return this.byId.size;
  }

  get walking(): boolean {
    return this.inFlight !== null;
  }

  private walkDue(): boolean {
    return (this.opts.now ?? Date.now)() - this.lastWalk >= (this.opts.minRewalkMs ?? 1000);
  }

  private record(st: bigint, rel: string): void {
    this.byId.delete(st);
    this.byId.set(st, rel);
  }

  private child(rel: string, name: string): string {
    return rel === '/' ? `/${name}` : `${rel}/${name}`;
  }

  private finish(dirs: number, t0: number): void {
    this.trim();
    this.walks++;
    this.lastWalkDirs = dirs;
    this.lastWalkMs = performance.now() - t0;
    this.lastWalk = (this.opts.now ?? Date.now)();
  }

  /** One synchronous walk (tests, benchmarks; the daemon uses walkAsync). */
  walk(): void {
    this.walksStarted++;
    const t0 = performance.now();
    const maxDirs = this.opts.maxDirs ?? 100_000;
    let dirs = 0;
    const stack: string[] = ['/'];
    while (stack.length && dirs < maxDirs) {
      const rel = stack.pop()!;
      const abs = rel === '/' ? this.root : this.root + rel;
      let st: fs.BigIntStats;
      let entries: fs.Dirent[];
      try {
        st = fs.statSync(abs, { bigint: true });
        entries = fs.readdirSync(abs, { withFileTypes: true });
      } catch {
        continue; // removed while we walked
      }
      dirs++;
      this.record(st.ino, rel);
      for (const e of entries) if (e.isDirectory()) stack.push(this.child(rel, e.name));
    }
    this.finish(dirs, t0);
  }

  /** One walk through the thread pool, `concurrency` directories at a time; joins a walk in progress. */
  walkAsync(concurrency = 8): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const run = async () => {
      this.walksStarted++;
      const t0 = performance.now();
      const maxDirs = this.opts.maxDirs ?? 100_000;
      let dirs = 0;
      const queue: string[] = ['/'];
      const visit = async (rel: string) => {
        const abs = rel === '/' ? this.root : this.root + rel;
        try {
          const [st, entries] = await Promise.all([fs.promises.stat(abs, { bigint: true }), fs.promises.readdir(abs, { withFileTypes: true })]);
          dirs++;
          this.record(st.ino, rel);
          for (const e of entries) if (e.isDirectory()) queue.push(this.child(rel, e.name));
        } catch {
          /* removed while we walked */
        }
      };
      while (queue.length && dirs < maxDirs) await Promise.all(queue.splice(0, concurrency).map(visit));
      this.finish(dirs, t0);
    };
    this.inFlight = run().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  private trim(): void {
    const max = this.opts.maxEntries ?? 65_536;
    for (const k of this.byId.keys()) {
      if (this.byId.size <= max) break;
      this.byId.delete(k);
    }
  }
}
