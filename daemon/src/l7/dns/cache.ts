// SPDX-License-Identifier: Apache-2.0
// Per-process resolver cache: for each process, the addresses its DNS answers gave and the
// name it asked for to get each (through any CNAME chain). A flow takes its remoteName from
// here when it is created (or looked at again while young: the answer and the connection
// come up through different ring buffers and can be read in either order) and keeps it for
// its whole life: entries here age out with the answer's TTL, names on flows do not.
//
// Bounded: `maxEntries` in all (least recently answered evicted first) and `maxPerProcess`
// per process, so that one process resolving a crawl's worth of names cannot push every
// other process's names out. Two indexes over the same entries: per process (lookups,
// per-process eviction) and one global insertion order (global eviction), both Maps, whose
// iteration order is insertion order: re-inserting an entry moves it to the young end.
import { OldestFirst } from '../../util/oldest.js';

export interface NameEntry {
  pid: number;
  address: string;
  /** The name the process asked for. */
  name: string;
  /** CNAMEs from `name` to the address record's owner. */
  chain: string[];
  learnedAtMs: number;
  expiresAtMs: number;
}

export interface ResolverCacheOptions {
  maxEntries?: number;
  maxPerProcess?: number;
  /** TTLs below this are raised to it: a TTL-0 answer is still used by the connect that follows. */
  minTtlMs?: number;
  maxTtlMs?: number;
}

export interface ResolverCacheStats {
  entries: number;
  processes: number;
  added: number;
  evicted: number;
  expired: number;
}

const key = (pid: number, address: string): string => `${pid}|${address}`;

export class ResolverCache {
  private readonly byProc = new Map<number, Map<string, NameEntry>>();
  private readonly order = new Map<string, NameEntry>();
  private readonly oldest = new OldestFirst(this.order);
  private readonly maxEntries: number;
  private readonly maxPerProcess: number;
  private readonly minTtlMs: number;
  private readonly maxTtlMs: number;
  private added = 0;
  private evicted = 0;
  private expired = 0;

  constructor(opts: ResolverCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 65536;
    this.maxPerProcess = Math.min(opts.maxPerProcess ?? 4096, this.maxEntries);
    this.minTtlMs = opts.minTtlMs ?? 10_000;
    this.maxTtlMs = opts.maxTtlMs ?? 86_400_000;
    if (!(this.maxEntries >= 1 && this.maxPerProcess >= 1)) throw new RangeError(`resolver cache: maxEntries (${this.maxEntries}) and maxPerProcess (${this.maxPerProcess}) must be at least 1`);
  }

  /** Whether `pid` has answers in the cache (its flows can take names now). */
  hasProcess(pid: number): boolean {
    return (this.byProc.get(pid)?.size ?? 0) > 0;
  }

  /** Records what an answer gave `pid`. */
  add(pid: number, answers: ReadonlyArray<{ address: string; name: string; chain: string[]; ttl: number }>, nowMs: number): void {
    for (const a of answers) {
      const ttlMs = Math.min(this.maxTtlMs, Math.max(this.minTtlMs, a.ttl * 1000));
      const e: NameEntry = { pid, address: a.address, name: a.name, chain: a.chain, learnedAtMs: nowMs, expiresAtMs: nowMs + ttlMs };
      let proc = this.byProc.get(pid);
      if (!proc) {
        proc = new Map();
        this.byProc.set(pid, proc);
      }
      const k = key(pid, a.address);
      if (proc.has(a.address)) {
        proc.delete(a.address);
        this.order.delete(k);
      } else if (proc.size >= this.maxPerProcess) {
        this.remove(proc.values().next().value!);
        this.evicted++;
      }
      proc.set(a.address, e);
      this.order.set(k, e);
      this.added++;
      while (this.order.size > this.maxEntries) {
        this.remove(this.oldest.shift()![1]);
        this.evicted++;
      }
    }
  }

  /** The name `pid` asked for to reach `address`, if an unexpired answer gave it. */
  lookup(pid: number, address: string, nowMs: number): NameEntry | undefined {
    const e = this.byProc.get(pid)?.get(address);
    if (!e) return undefined;
    if (e.expiresAtMs <= nowMs) {
      this.remove(e);
      this.expired++;
      return undefined;
    }
    return e;
  }

  /** Drops a process's entries (it exited). */
  forgetProcess(pid: number): void {
    const proc = this.byProc.get(pid);
    if (!proc) return;
    for (const e of [...proc.values()]) this.remove(e);
  }

  /** Removes expired entries, looking at most at `budget` of them (call it from a timer). */
  sweep(nowMs: number, budget = 4096): number {
    let removed = 0;
    let seen = 0;
    for (const e of this.order.values()) {
      if (++seen > budget) break;
      if (e.expiresAtMs <= nowMs) {
        this.remove(e);
        removed++;
      }
    }
    this.expired += removed;
    return removed;
  }

  stats(): ResolverCacheStats {
    return { entries: this.order.size, processes: this.byProc.size, added: this.added, evicted: this.evicted, expired: this.expired };
  }

  private remove(e: NameEntry): void {
    this.order.delete(key(e.pid, e.address));
    const proc = this.byProc.get(e.pid);
    if (!proc) return;
    proc.delete(e.address);
    if (proc.size === 0) this.byProc.delete(e.pid);
  }
}
