// SPDX-License-Identifier: Apache-2.0
// Who a cgroup (and a process) is: resolved once per cgroup id and cached.
//
//   id -> path     the pid's /proc/<pid>/cgroup when a live pid is known (confirmed by the
//                  id), else open_by_handle_at when the daemon may (CAP_DAC_READ_SEARCH),
//                  else the walk index (cgroupfs.ts); see docs/identity.md for the costs
//   path -> names  parse.ts (unit, slice, user unit, container, app) + names.ts (container
//                  names from the runtimes' files) + desktop.ts (the app's .desktop Name)
//   pid -> tree    tree.ts, per call (pids are cheap to walk and change more often)
//
// Cache: bounded LRU by cgroup id. A cgroup's path never changes and its id is never reused,
// so what the path says is kept for as long as the entry lives; names (a container renamed,
// a .desktop file installed) are read again after `namesTtlMs`; an id that could not be
// found is not looked for again before `missTtlMs` (each miss may cost a walk).
import { CgroupIndex, cgroupIdOf, cgroupPathOfPid, findCgroup2Root } from './cgroupfs.js';
import { DesktopEntries } from './desktop.js';
import { HandleResolver } from './handle.js';
import { ContainerNames } from './names.js';
import { parseCgroupPath } from './parse.js';
import { DEFAULT_TREE_DEPTH, processTree, scopeOf } from './tree.js';
import { NO_IDENTITY, toOwner } from './owner.js';
import type { Identity } from './types.js';
import type { IdentityStatus, OwnerIdentity } from '../contract/identity.js';

export interface IdentityResolverOptions {
  /** cgroup2 mount point; default: found in /proc/self/mounts. null: ids cannot be resolved, pids still can. */
  cgroupRoot?: string | null;
  procRoot?: string;
  /** Cgroup identities kept (default 4096). */
  maxEntries?: number;
  /** Container and app names are read again after this (default 60 s). */
  namesTtlMs?: number;
  /** An id that was not found is not looked for again before this (default 5 s). */
  missTtlMs?: number;
  /** Fewest ms between two walks of the hierarchy (default 1000). */
  minRewalkMs?: number;
  treeDepth?: number;
  /** Try open_by_handle_at first (default true; it turns itself off on EPERM). */
  useHandles?: boolean;
  names?: ContainerNames;
  desktop?: DesktopEntries;
  now?: () => number;
}

export interface IdentityQuery {
  /** The cgroup v2 id, as flows and events carry it (decimal string) or as a number/bigint. */
  cgroupId?: string | number | bigint;
  pid?: number;
}

type Base = Omit<Identity, 'tree'>;

interface Entry {
  base: Base;
  at: number;
  miss: boolean;
  /** `base` as the contract shows it, made on first use. */
  owner?: OwnerIdentity;
}

/** The resolver's counters: status.identity without the mount point (contract/identity.ts). */
export type IdentityStats = Omit<IdentityStatus, 'cgroupRoot'>;

export class IdentityResolver {
  readonly root: string | null;
  private readonly cache = new Map<string, Entry>();
  private readonly index: CgroupIndex | null;
  private readonly handles: HandleResolver | null;
  private readonly names: ContainerNames;
  private readonly desktop: DesktopEntries;
  private readonly now: () => number;
  private readonly counts = { hits: 0, resolved: 0, misses: 0, byPid: 0, byHandle: 0, byWalk: 0 };
  /**
   * Ids a walk that began after they were asked for did not find: their cgroup is gone
   * (ids are never reused), so they are never looked for again: no walk per query for the
   * flows of a container that came and went before it was seen. Oldest forgotten first.
   */
  private readonly gone = new Set<string>();

  constructor(private readonly opts: IdentityResolverOptions = {}) {
    this.root = opts.cgroupRoot === undefined ? findCgroup2Root() : opts.cgroupRoot;
    this.now = opts.now ?? Date.now;
    this.index = this.root ? new CgroupIndex(this.root, { minRewalkMs: opts.minRewalkMs ?? 1000, now: this.now }) : null;
    this.handles = this.root && opts.useHandles !== false ? new HandleResolver(this.root) : null;
    this.names = opts.names ?? new ContainerNames();
    this.desktop = opts.desktop ?? new DesktopEntries();
  }

  /**
   * Resolves without waiting: a live pid, open_by_handle_at or what a walk has seen. An id
   * found none of these ways comes back with `cgroup: null`, and a walk of the hierarchy
   * starts in the background (resolveAsync waits for it).
   */
  resolve(q: IdentityQuery): Identity {
    const id = parseId(q.cgroupId);
    if (q.pid !== undefined && (!Number.isInteger(q.pid) || q.pid <= 0)) throw new RangeError(`pid must be a positive integer, got ${JSON.stringify(q.pid)}`);
    if (id === null && q.pid === undefined) throw new TypeError('identity query needs a cgroupId or a pid');

    let cgId = id;
    let pidPath: string | null = null;
    if (q.pid !== undefined && this.root) {
      const p = cgroupPathOfPid(q.pid, this.opts.procRoot);
      const pid = p === null ? null : cgroupIdOf(this.root, p);
      if (pid !== null && (cgId === null || pid === cgId)) {
        cgId = pid;
        pidPath = p;
        this.index?.remember(pid, p!);
      }
    }
    if (cgId === null) return { cgroupId: null, cgroup: null, unit: null, slice: null, tree: this.tree(q.pid, null) };
    const base = this.base(cgId, pidPath);
    return { ...base, tree: this.tree(q.pid, base.cgroup) };
  }

  /**
   * The identity flows, processes and events carry, for a cgroup id as they carry it
   * (decimal string) and the owner's pid when known. The common case (a cgroup seen
   * before) is one cache lookup; a new cgroup is resolved once, through the pid if it is
   * still alive and still in that cgroup, else open_by_handle_at or the walk index (an
   * unknown id starts a walk in the background and is a miss until it finds it).
   */
  owner(cgroupId: string | null, pid: number | null): OwnerIdentity {
    if (cgroupId === null || cgroupId === '0' || this.gone.has(cgroupId)) return NO_IDENTITY;
    const now = this.now();
    const e = this.cache.get(cgroupId);
    // A recent miss is answered as one unless a pid may find it now.
    if (e && now - e.at < (e.miss ? (pid === null ? (this.opts.missTtlMs ?? 5_000) : -1) : (this.opts.namesTtlMs ?? 60_000))) {
      if (!e.miss) this.counts.hits++;
      return (e.owner ??= toOwner(e.base));
    }
    const id = parseId(cgroupId)!;
    let known: string | null = null;
    if (pid !== null && pid > 0 && this.root && this.index && this.index.peek(id) === null) {
      const p = cgroupPathOfPid(pid, this.opts.procRoot);
      if (p !== null && cgroupIdOf(this.root, p) === id) {
        known = p;
        this.index.remember(id, p);
      }
    }
    const base = this.base(id, known);
    const entry = this.cache.get(cgroupId);
    return entry ? (entry.owner ??= toOwner(entry.base)) : toOwner(base);
  }

  /** A live process's cgroup id (its /proc/PID/cgroup path, then that directory's inode), remembered for walks. */
  cgroupIdOfPid(pid: number): string | null {
    if (!this.root || !Number.isInteger(pid) || pid <= 0) return null;
    const p = cgroupPathOfPid(pid, this.opts.procRoot);
    const id = p === null ? null : cgroupIdOf(this.root, p);
    if (id === null) return null;
    this.index?.remember(id, p!);
    return id.toString();
  }

  /** resolve(), then, for an id nobody has seen yet, one walk of the hierarchy and a second look. */
  async resolveAsync(q: IdentityQuery): Promise<Identity> {
    const started = this.index?.walksStarted ?? 0; // a walk resolve() itself begins counts
    const first = this.resolve(q);
    if (first.cgroup !== null || first.cgroupId === null || !this.index || this.gone.has(first.cgroupId)) return first;
    const path = await this.index.lookupAsync(BigInt(first.cgroupId));
    if (path === null) {
      if (this.index.walksStarted > started) this.markGone(first.cgroupId);
      return first;
    }
    this.dropMisses();
    return this.resolve(q);
  }

  stats(): IdentityStats {
    return {
      entries: this.cache.size,
      ...this.counts,
      walks: this.index?.walks ?? 0,
      lastWalkDirs: this.index?.lastWalkDirs ?? 0,
      lastWalkMs: Math.round((this.index?.lastWalkMs ?? 0) * 10) / 10,
      handlesDenied: this.handles?.denied ?? true,
    };
  }

  close(): void {
    this.handles?.close();
  }

  private tree(pid: number | undefined, cgroup: string | null): Identity['tree'] {
    if (pid === undefined) return [];
    return processTree(pid, { procRoot: this.opts.procRoot, maxDepth: this.opts.treeDepth ?? DEFAULT_TREE_DEPTH, ...(cgroup !== null ? { scope: scopeOf(cgroup) } : {}) });
  }

  private base(id: bigint, knownPath: string | null): Base {
    const key = id.toString();
    const now = this.now();
    const e = this.cache.get(key);
    if (e) {
      this.cache.delete(key);
      this.cache.set(key, e); // most recently used last
      if (e.miss && knownPath === null && now - e.at < (this.opts.missTtlMs ?? 5_000)) return e.base;
      if (!e.miss && now - e.at < (this.opts.namesTtlMs ?? 60_000)) {
        this.counts.hits++;
        return e.base;
      }
      if (!e.miss) {
        // names may have changed; what the path says has not
        e.base = this.build(id, e.base.cgroup!);
        e.at = now;
        e.owner = undefined;
        return e.base;
      }
    }
    const path = knownPath ?? this.pathOf(id);
    if (knownPath !== null) this.counts.byPid++;
    const entry: Entry = path === null
      ? { base: { cgroupId: key, cgroup: null, unit: null, slice: null }, at: now, miss: true }
      : { base: this.build(id, path), at: now, miss: false };
    if (entry.miss) this.counts.misses++;
    else this.counts.resolved++;
    this.cache.set(key, entry);
    const max = this.opts.maxEntries ?? 4096;
    for (const k of this.cache.keys()) {
      if (this.cache.size <= max) break;
      this.cache.delete(k);
    }
    return entry.base;
  }

  private markGone(key: string): void {
    this.gone.add(key);
    for (const k of this.gone) {
      if (this.gone.size <= 4 * (this.opts.maxEntries ?? 4096)) break;
      this.gone.delete(k);
    }
  }

  private pathOf(id: bigint): string | null {
    if (!this.index || this.gone.has(id.toString())) return null;
    const seen = this.index.peek(id);
    if (seen !== null) {
      this.counts.byWalk++;
      return seen;
    }
    const viaHandle = this.handles?.lookup(id) ?? null;
    if (viaHandle !== null) {
      this.counts.byHandle++;
      this.index.remember(id, viaHandle);
      return viaHandle;
    }
    // Unknown: walk in the background (one at a time, rate-limited); a later call finds it.
    if (!this.index.walking) void this.index.lookupAsync(id).then((p) => p !== null && this.dropMisses());
    return null;
  }

  /** Forgets ids that were not found, so that the next look uses what a walk has since seen. */
  private dropMisses(): void {
    for (const [k, e] of this.cache) if (e.miss) this.cache.delete(k);
  }

  private build(id: bigint, path: string): Base {
    const p = parseCgroupPath(path);
    const out: Base = { cgroupId: id.toString(), cgroup: path, unit: p.unit, slice: p.slice };
    if (p.userUnit) out.userUnit = p.userUnit;
    const uid = p.userUnit?.uid;
    if (p.container) {
      out.container = this.names.enrich(p.container, { ...(uid !== undefined ? { uid } : {}), ...(p.containerdNamespace ? { containerdNamespace: p.containerdNamespace } : {}) });
    }
    if (p.app) {
      const found = this.desktop.find(p.app.desktopId, uid);
      out.app = found ? { ...p.app, name: found.name } : p.app;
    }
    return out;
  }
}

function parseId(v: IdentityQuery['cgroupId']): bigint | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') {
    if (v <= 0n) throw new RangeError(`cgroupId must be a positive integer, got ${v}`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`cgroupId must be a positive integer, got ${v}`);
    return BigInt(v);
  }
  if (typeof v === 'string' && /^[1-9]\d{0,19}$/.test(v)) return BigInt(v);
  throw new TypeError(`cgroupId must be a decimal string like "4294967302", got ${JSON.stringify(v)}`);
}
