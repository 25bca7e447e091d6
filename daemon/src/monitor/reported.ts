// SPDX-License-Identifier: Apache-2.0
// The closes the daemon published since history's last listing, by flow key: each one's
// count sum (flows.ts closeReported() and noteChanged()). One entry is written for nearly
// every close event and read for nearly every refresh, about 10,000 of each a second at
// 10,000 connections/s; as a Map<string, number> of up to 100,000 keys that was 0.6 us of
// the event loop per close (a CPU profile's line ticks: nearly all on the Map's set), about
// 0.6% of a core (docs/benchmarks.md "The closes history already has, without a Map"). Here:
// one open-addressing table in typed arrays, keyed by the 40 key bytes themselves, read
// straight from the record or the refresh's key buffer: no string, no object per close.
// Written by hand: no maintained npm package keys a hash table by bytes in place without
// an allocation per key.
//
// A close does not go into the table at once: CloseLog appends its key and sum to a small
// buffer written in order, and the buffer goes into the table in one loop when it is full
// or before the next refresh reads (flows.ts). The table is read at random, and a probe at
// each close, between the event loop's other work, missed the cache nearly every time: the
// first read of a slot was most of the close's cost in a CPU profile (docs/benchmarks.md
// "Closes remembered in a buffer first"). In one loop the misses overlap; the order of the
// sets, and so what the table holds when a refresh reads, is the same.
import { FLOW_KEY } from './wire.js';

const WORDS = FLOW_KEY.size / 4;
const EMPTY = 0;
const LIVE = 1;
const FIRST_CAPACITY = 1024;
/** Bytes of the next table's buffer touched in one turn of the event loop (prepare()):
 * 64 pages, about 0.6 ms of page faults on this VM. */
const PREPARE_BYTES = 256 * 1024;
/** A slot: state, the key's hash, its 10 words, its sum (a float64 in words 14-15): 64
 * bytes, so that a probe reads one or two cache lines, not one in each of three arrays (the
 * table is read at random, and between two closes the event loop's other work evicts it). */
const SLOT = 16;
const S_HASH = 1;
const S_KEY = 2;
const S_SUM64 = 7; // in float64s from the slot's start

export class ReportedCloses {
  private cap = 0;
  private mask = 0;
  private w = new Uint32Array(0);
  private f = new Float64Array(0);
  private live = 0;
  /** Times the table was rebuilt (it doubles: deletions leave no tombstones to drop). */
  rehashes = 0;
  /** The most keys held at once since the last clear(). */
  private peak = 0;
  /** The doubled table's buffer, made ahead (prepare()); null when none is. */
  private next: ArrayBuffer | null = null;
  /** Its first bytes zeroed so far (the rest is whatever malloc gave). */
  private nextZeroed = 0;
  /** Growths that wrote into a buffer made ahead. */
  grownIntoPrepared = 0;

  /** At most `max` entries (set() refuses more). */
  constructor(readonly max: number) {
    this.alloc(FIRST_CAPACITY);
  }

  get size(): number {
    return this.live;
  }

  /** Slots in the table (a power of two; at least twice the live keys). */
  get capacity(): number {
    return this.cap;
  }

  private alloc(cap: number, made: ArrayBuffer | null = null): void {
    this.cap = cap;
    this.mask = cap - 1;
    const buf = made ?? new ArrayBuffer(cap * SLOT * 4);
    this.w = new Uint32Array(buf);
    this.f = new Float64Array(buf);
    this.live = 0;
  }

  /** The slot holding the key at `v[off..off+40)`, or -1. */
  private find(v: DataView, off: number): number {
    const m = this.mask;
    const w = this.w;
    const h = hashKey(v, off);
    for (let i = h & m, n = 0; n < this.cap; i = (i + 1) & m, n++) {
      const b = i * SLOT;
      const s = w[b]!;
      if (s === EMPTY) return -1;
      if (w[b + S_HASH] === h && sameKey(w, b + S_KEY, v, off)) return i;
    }
    return -1;
  }

  /** The count sum remembered for the key at `v[off..]`, or -1 (sums are never negative). */
  get(v: DataView, off: number): number {
    const i = this.find(v, off);
    return i < 0 ? -1 : this.f[i * (SLOT / 2) + S_SUM64]!;
  }

  /** get() and delete() in one probe: the sum remembered for the key (now forgotten), or -1. */
  take(v: DataView, off: number): number {
    const i = this.find(v, off);
    if (i < 0) return -1;
    const sum = this.f[i * (SLOT / 2) + S_SUM64]!;
    this.remove(i);
    return sum;
  }

  /**
   * Empties slot `i` by backward shift, leaving no tombstone: each later slot of the same
   * run whose key may sit in the hole (its home slot is not after the hole, cyclically)
   * moves into it, and its own slot becomes the hole. Probes stop at the first empty slot,
   * so the table stays as if the key had never been set. Until December 2026 a take left a
   * deleted mark, and at 10,000 closes/s the marks filled half the table every few seconds:
   * each time a rebuild of the whole table (16 MiB at 100,000 keys) held the event loop
   * 20-25 ms (docs/benchmarks.md, "The stall's longest tasks").
   */
  private remove(i: number): void {
    const w = this.w;
    const m = this.mask;
    let hole = i;
    for (let j = (i + 1) & m; w[j * SLOT] !== EMPTY; j = (j + 1) & m) {
      const b = j * SLOT;
      // Distance from the key's home to j, against the hole's distance to j: the key may
      // move back to the hole when the hole lies between its home and j.
      if (((j - (w[b + S_HASH]! & m)) & m) >= ((j - hole) & m)) {
        w.copyWithin(hole * SLOT, b, b + SLOT);
        hole = j;
      }
    }
    w[hole * SLOT] = EMPTY;
    this.live--;
  }

  /** Remembers `sum` for the key at `v[off..]` (replacing what it had). False when the key
   * is new and `max` keys are remembered already: nothing changed. */
  set(v: DataView, off: number, sum: number): boolean {
    const m = this.mask;
    const w = this.w;
    const h = hashKey(v, off);
    let i = h & m;
    for (let n = 0; n < this.cap; i = (i + 1) & m, n++) {
      const b = i * SLOT;
      if (w[b] === EMPTY) break;
      if (w[b + S_HASH] === h && sameKey(w, b + S_KEY, v, off)) {
        this.f[i * (SLOT / 2) + S_SUM64] = sum;
        return true;
      }
    }
    if (this.live >= this.max) return false;
    // A fresh slot: keep at least half the table empty so that probes stay short.
    if ((this.live + 1) * 2 > this.cap) {
      this.rehash();
      return this.set(v, off, sum);
    }
    const free = i;
    const b = free * SLOT;
    w[b] = LIVE;
    w[b + S_HASH] = h;
    for (let k = 0; k < WORDS; k++) w[b + S_KEY + k] = v.getUint32(off + k * 4, true);
    this.f[free * (SLOT / 2) + S_SUM64] = sum;
    if (++this.live > this.peak) this.peak = this.live;
    if (this.live * 8 > this.cap * 3 && this.next === null) this.prepare();
    return true;
  }

  /** Calls `each` for every key remembered: its 40 bytes at `bytes[at..at+40)` (valid during
   * the call only; the record's own bytes on a little-endian host, which the daemon's reads
   * of kernel records assume throughout) and its sum. */
  forEach(each: (bytes: Uint8Array, at: number, sum: number) => void): void {
    const w = this.w;
    const u8 = new Uint8Array(w.buffer);
    for (let i = 0; i < this.cap; i++) if (w[i * SLOT] === LIVE) each(u8, (i * SLOT + S_KEY) * 4, this.f[i * (SLOT / 2) + S_SUM64]!);
  }

  /**
   * Forgets every key (a listing starts a new table of closes). The table keeps the size
   * the last period needed, zeroed in place: a new one grew again by doubling each time,
   * a rebuild of up to 16 MiB (its pages new to the process) in the middle of a close
   * event's drain. Smaller when the last period held far fewer keys than it has room for.
   */
  clear(): void {
    this.next = null;
    let cap = FIRST_CAPACITY;
    while (cap < 2 * this.peak) cap *= 2;
    if (cap * 2 < this.cap) this.alloc(cap);
    else {
      this.w.fill(0);
      this.live = 0;
    }
    this.peak = 0;
  }

  /**
   * Makes the doubled table's buffer once this one is 3/8 full, and touches its pages in
   * pieces of PREPARE_BYTES, one turn of the event loop each, while the table fills to
   * half (at least cap/8 more keys). A page new to the process costs about 10 us to fault
   * in on this VM (16 MiB: 43-48 ms to touch, 0.4 ms to fill once resident): the growth to
   * 16 MiB in the first minute at 10k connections/s held a close event's drain 40-60 ms,
   * most of it in those faults (docs/benchmarks.md, "The stall's longest tasks").
   */
  private prepare(): void {
    if (this.cap >= 2 * this.max) return; // full at `max` keys before it would grow
    // Not zeroed by the allocator (a zeroed one is touched whole when made: the faults in
    // one piece again); zeroed here a piece at a time, the rest at the growth if need be.
    const next = Buffer.allocUnsafeSlow(this.cap * 2 * SLOT * 4).buffer;
    this.next = next;
    this.nextZeroed = 0;
    const step = () => {
      if (this.next !== next) return; // used, or dropped by clear()
      const n = Math.min(PREPARE_BYTES, next.byteLength - this.nextZeroed);
      new Uint8Array(next, this.nextZeroed, n).fill(0);
      this.nextZeroed += n;
      if (this.nextZeroed < next.byteLength) setImmediate(step);
    };
    setImmediate(step);
  }

  /** Doubles the table (into the buffer prepare() made, when there is one). */
  private rehash(): void {
    const { w: old, cap } = this;
    this.rehashes++;
    const made = this.next !== null && this.next.byteLength === cap * 2 * SLOT * 4 ? this.next : null;
    if (made) {
      this.grownIntoPrepared++;
      new Uint8Array(made, this.nextZeroed).fill(0); // what the turns did not reach yet
    }
    this.next = null;
    this.alloc(cap * 2, made);
    const w = this.w;
    const m = this.mask;
    for (let j = 0; j < cap; j++) {
      const ob = j * SLOT;
      if (old[ob] !== LIVE) continue;
      let i = old[ob + S_HASH]! & m;
      while (w[i * SLOT] !== EMPTY) i = (i + 1) & m;
      w.set(old.subarray(ob, ob + SLOT), i * SLOT);
      this.live++;
    }
  }
}

/** An entry of CloseLog: the key's 10 words, then the sum as a float64 (words 10-11). */
const ENTRY = WORDS + 2;

/**
 * Closes in the order they were published, each a key and a sum, that go into a
 * ReportedCloses in one loop (the header says why). At most `max` entries (384 KiB at the
 * default 8,192: the buffer stays in the cache while it fills); append() says when it is
 * full, and the caller applies it first.
 */
export class CloseLog {
  private readonly v: DataView;
  private readonly f: Float64Array;
  private n = 0;

  constructor(readonly max = 8192) {
    const buf = new ArrayBuffer(max * ENTRY * 4);
    this.v = new DataView(buf);
    this.f = new Float64Array(buf);
  }

  get length(): number {
    return this.n;
  }

  get full(): boolean {
    return this.n >= this.max;
  }

  /** Appends the key at `v[off..off+40)` and `sum`; false when full (nothing appended). */
  append(v: DataView, off: number, sum: number): boolean {
    if (this.n >= this.max) return false;
    const d = this.v;
    const b = this.n * ENTRY * 4;
    for (let k = 0; k < WORDS * 4; k += 4) d.setUint32(b + k, v.getUint32(off + k, true), true);
    this.f[this.n * (ENTRY / 2) + WORDS / 2] = sum;
    this.n++;
    return true;
  }

  /** Sets every entry into `t`, oldest first, and empties the log. Returns how many `t`
   * refused (its bound). */
  applyTo(t: ReportedCloses): number {
    let refused = 0;
    const d = this.v;
    const f = this.f;
    for (let i = 0; i < this.n; i++) if (!t.set(d, i * ENTRY * 4, f[i * (ENTRY / 2) + WORDS / 2]!)) refused++;
    this.n = 0;
    return refused;
  }

  /** Forgets every entry. */
  clear(): void {
    this.n = 0;
  }
}

/** One hash of the key's 10 words (exported for the tests: keys whose hashes collide). */
function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x9e3779b1);
  return h ^ (h >>> 15);
}

export function hashKey(v: DataView, off: number): number {
  let h = 0x811c9dc5;
  for (let w = 0; w < WORDS; w++) h = mix(h, v.getUint32(off + w * 4, true));
  return (h ^ (h >>> 13)) >>> 0;
}

function sameKey(w: Uint32Array, b: number, v: DataView, off: number): boolean {
  for (let k = 0; k < WORDS; k++) if (w[b + k] !== v.getUint32(off + k * 4, true)) return false;
  return true;
}
