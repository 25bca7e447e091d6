// SPDX-License-Identifier: Apache-2.0
// The flow table's index by owner, kept in user space (issue 17). emon_flows is an LRU hash
// keyed by tuple: answering "the flows of pid N" from the kernel means reading every flow
// (a million flows: about 350 ms of batch dump, bench/query). The index remembers, per
// flow key, its owner and the earliest time the collector could remove it, so that a query
// by pid reads only that pid's flows (one bpf_map_lookup_elem each, for fresh counters)
// and the collector looks only at flows that are due.
//
// Exactness. Flows appear and change owner in the kernel without telling user space one
// by one, but every such change is counted (see `MembershipCounters` in flows.ts: flows
// created, reopened, patched, closed; handoff patches). The index is filled by a full walk
// that remembers those counters as they were when it started; while they have not moved,
// no flow was added and none changed owner, so the index, less the flows deleted since
// (found missing at lookup), is the table. When they have moved, the table's reader walks
// again (and refills the index on the way). Why not kernel-side: a per-owner kernel map
// costs a hash update on every new flow and owner patch in four programs, and still
// cannot be read by owner without a walk (a hash map has no prefix lookup); a map-element
// iterator filtering in the kernel still visits every flow per query.
//
// Written here rather than taken from a library: it is two Maps and a bucketed timer
// wheel over them, specific to the flow key's bytes.
import { FLOW_KEY } from './wire.js';
import { yieldTurn } from '../util/turn.js';

interface Entry {
  /** The owner's tgid as the flow's bytes have it (0 when unowned), as a scan filters `pid`. */
  owner: number;
  /** Second (CLOCK_MONOTONIC) of the earliest collection; Infinity: not while it stays so. */
  due: number;
  /** Sync pass that last saw it. */
  epoch: number;
}

const AF_INET = 2;
/** takeDue() gives the event loop a turn after this many keys. */
const TAKE_YIELD_EVERY = 4096;
const FAMILY = FLOW_KEY.fields.family.offset;
const LADDR = FLOW_KEY.fields.laddr.offset;
const RADDR = FLOW_KEY.fields.raddr.offset;

/**
 * A flow key as a compact Map key: an IPv4 key's addresses are 4 of their 16 bytes (the
 * rest is zero), so 16 characters instead of 40; others keep all 40 bytes.
 */
export function keyString(b: Uint8Array, o: number): string {
  if (b[o + FAMILY] === AF_INET) {
    const l = o + LADDR;
    const r = o + RADDR;
    return String.fromCharCode(
      b[o]!, b[o + 1]!, b[o + 2]!, b[o + 3]!, b[o + 4]!, b[o + 5]!, b[o + 6]!, b[o + 7]!,
      b[l]!, b[l + 1]!, b[l + 2]!, b[l + 3]!, b[r]!, b[r + 1]!, b[r + 2]!, b[r + 3]!,
    );
  }
  return Buffer.from(b.buffer, b.byteOffset + o, FLOW_KEY.size).toString('latin1');
}

/** The 40 key bytes of a keyString() into `out`. */
export function keyBytes(s: string, out: Buffer = Buffer.alloc(FLOW_KEY.size)): Buffer {
  if (s.length === FLOW_KEY.size) {
    out.write(s, 0, 'latin1');
    return out;
  }
  out.fill(0);
  for (let i = 0; i < 8; i++) out[i] = s.charCodeAt(i);
  for (let i = 0; i < 4; i++) {
    out[LADDR + i] = s.charCodeAt(8 + i);
    out[RADDR + i] = s.charCodeAt(12 + i);
  }
  return out;
}

export class OwnerIndex {
  private readonly entries = new Map<string, Entry>();
  private readonly byPid = new Map<number, Set<string>>();
  /** Collection wheel: second -> keys due then (stale ones are skipped when taken). */
  private readonly wheel = new Map<number, string[]>();
  private epoch = 0;
  /** Membership counters at the start of the last complete sync (null: never synced). */
  private syncedGen: number | null = null;
  private syncedAtMs = 0;
  /** A sync pass is under way (only one at a time marks entries). */
  syncing = false;

  constructor(private readonly maxAgeMs: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** True when the index is the table (less deletions it will find at lookup). */
  trusted(gen: number | undefined, nowMs = Date.now()): boolean {
    return gen !== undefined && this.syncedGen === gen && nowMs - this.syncedAtMs < this.maxAgeMs;
  }

  /** Starts a sync pass; see() every flow, then endSync() with the counters read before it began. */
  beginSync(): void {
    this.syncing = true;
    this.epoch++;
  }

  /** Drops what the pass did not see (a turn of the event loop every 16384 entries: a
   * million take tens of milliseconds) and trusts the index from `gen` on. */
  async endSync(gen: number, nowMs = Date.now()): Promise<void> {
    const stale: string[] = [];
    let n = 0;
    for (const [k, e] of this.entries) {
      if (e.epoch !== this.epoch) stale.push(k);
      if (++n % 16384 === 0) await yieldTurn();
    }
    for (const k of stale) this.remove(k);
    this.syncedGen = gen;
    this.syncedAtMs = nowMs;
    this.syncing = false;
  }

  /** Puts keys taken off the wheel back as they were (a collection that failed half-way). */
  requeue(keys: readonly string[]): void {
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e) this.schedule(k, e.due);
    }
  }

  abortSync(): void {
    this.syncing = false;
  }

  /** A flow as a walk saw it (during a sync pass: marks it seen). */
  see(key: string, owner: number, due: number): void {
    const e = this.entries.get(key);
    if (!e) {
      this.entries.set(key, { owner, due, epoch: this.epoch });
      this.pidSet(owner).add(key);
      this.schedule(key, due);
      return;
    }
    e.epoch = this.epoch;
    if (e.owner !== owner) this.setOwner(key, e, owner);
    if (e.due !== due) {
      e.due = due;
      this.schedule(key, due);
    }
  }

  /** A flow as a lookup found it (its owner and due time now); it goes back on the
   * wheel even when its due time did not change (takeDue() took it off). */
  update(key: string, owner: number, due: number): void {
    const e = this.entries.get(key);
    if (!e) return this.see(key, owner, due);
    if (e.owner !== owner) this.setOwner(key, e, owner);
    e.due = due;
    this.schedule(key, due);
  }

  remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.dropFromPid(e.owner, key);
  }

  ownerOf(key: string): number | undefined {
    return this.entries.get(key)?.owner;
  }

  /** Keys of one pid's flows (a copy: lookups may move them). */
  keysOf(pid: number): string[] {
    const s = this.byPid.get(pid);
    return s ? [...s] : [];
  }

  /** True when the index lists a flow of `pid`. */
  hasPid(pid: number): boolean {
    return this.byPid.has(pid);
  }

  pids(): IterableIterator<number> {
    return this.byPid.keys();
  }

  /** Takes the keys due at or before `nowSec` off the wheel (each once, still indexed),
   * the event loop getting a turn every `yieldEvery` keys. */
  async takeDue(nowSec: number, yieldEvery = TAKE_YIELD_EVERY): Promise<string[]> {
    const out = new Set<string>();
    let n = 0;
    for (const [sec, keys] of this.wheel) {
      if (sec > nowSec) continue;
      this.wheel.delete(sec);
      for (const k of keys) {
        const e = this.entries.get(k);
        // Skipped: removed, or rescheduled to another second since.
        if (e && bucketOf(e.due) === sec) out.add(k);
        // A turn for the event loop now and then (a collection at 10k connections/s takes
        // some 30,000 keys: 12 ms in one piece). A key scheduled meanwhile into a second
        // already taken makes that second's bucket anew, and this loop reaches it too.
        if (++n % yieldEvery === 0) await yieldTurn();
      }
    }
    return [...out];
  }

  private schedule(key: string, due: number): void {
    if (due === Infinity) return;
    const sec = bucketOf(due);
    const b = this.wheel.get(sec);
    if (b) b.push(key);
    else this.wheel.set(sec, [key]);
  }

  private setOwner(key: string, e: Entry, owner: number): void {
    this.dropFromPid(e.owner, key);
    e.owner = owner;
    this.pidSet(owner).add(key);
  }

  private pidSet(pid: number): Set<string> {
    let s = this.byPid.get(pid);
    if (!s) this.byPid.set(pid, (s = new Set()));
    return s;
  }

  private dropFromPid(pid: number, key: string): void {
    const s = this.byPid.get(pid);
    if (!s) return;
    s.delete(key);
    if (s.size === 0) this.byPid.delete(pid);
  }
}

function bucketOf(due: number): number {
  return Math.floor(due);
}
