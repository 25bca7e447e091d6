// SPDX-License-Identifier: Apache-2.0
// Turns flow observations into flow records so that a flow's records always add up to its
// own counts, however it is seen: a close event with final counts, a periodic listing of
// the flow table (open flows: the counts gained since the last record), a flow that left
// the table without a close, a daemon restart in between. Pure (the clock is a parameter):
// the writer thread runs it and persists its open-flow state in the same transaction as
// the records, so a restart neither loses nor double-counts.
//
// The rules:
// - A flow is its 5-tuple plus its first-seen time (a reused tuple is a new flow).
// - The first record of a flow counts one connection; each record carries only the counts
//   gained since the flow's previous record.
// - Close (or a listing that shows the flow closed): the final record. Counts that grow
//   after it (a retransmitted FIN) become `late` records.
// - A flow absent from two full listings in a row that began after history knew it has left
//   the table: an `ended` record (no counts: its counts were recorded as they grew). Most
//   listings are incremental (only the flows that changed: absence says nothing); they
//   name the flows that left the table instead (leftTable()), which ends them at once.
// - Short flows beyond the detail budget (a token bucket of flows per second) are merged
//   into one roll-up record per process, protocol, family, minute and remote endpoint (for
//   the first endpoints of each process; the rest with the remote unspecified and no
//   ports), and not tracked. The writer thread reads a close of a flow it does not track
//   straight from the packed row (closeUntracked): beyond the budget no object per flow, a
//   cost per flow of a few field reads and a lookup by pid, rows written in proportion to
//   the processes, not to the close rate; within it, the record and the tracked slot and
//   nothing else.
// - History forgets closed flows it has written once they leave the table, or when it
//   tracks more than `maxTracked` flows (oldest first); a closed flow seen later that closed
//   before the newest one forgotten (or before the last record of a previous run) is taken
//   as already written, not written twice.
import { PROTOCOL_NUMBERS } from '../contract/common.js';
import { strHash, tupleHash } from './pack.js';
import { ID_SHIFT, RECORD_KIND, type FlowObservation, type FlowRecord, type RecordKind } from './types.js';
import { OldestFirst } from '../util/oldest.js';
import { endpointsPerHandover, REMOTES_PER_PROCESS, serviceSide } from './overbudget.js';

export interface AccountantOptions {
  /** Short flows per second written in detail; more are rolled up. */
  detailPerSec: number;
  /** Bucket size: a burst of this many closes is written in detail. */
  detailBurst: number;
  maxTracked: number;
  /** Two observations of one tuple belong to one flow when their first-seen times differ by
   * at most this (close events derive it from a duration: +-1 ms; a restarted daemon
   * measures its clock offset again: +-1 ms). */
  reuseToleranceMs: number;
  /** Roll-ups beyond the budget that keep their remote endpoint, in all, between two drains
   * (default: a quarter of the detail budget's flows over 10 s, at least 32; none at a budget of 0). */
  endpointsPerDrain?: number;
}

// maxTracked: closed flows stay in the kernel's table for a minute; at the default table
// size (65,536 flows) no more than that can be listed again.
export const DEFAULT_ACCOUNTANT_OPTIONS: AccountantOptions = { detailPerSec: 1000, detailBurst: 10_000, maxTracked: 65_536, reuseToleranceMs: 2000 };

/** How far a flow table's close time may lie after the close event's for the same flow (the
 * two convert kernel clocks separately). A close the kernel failed to report, of a flow
 * that closed this little after the last record, is not recovered from a listing. */
export const CLOSE_CLOCK_SLACK_MS = 250;

interface Counts {
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
}

/** Float64 fields of a tracked flow's slot (NaN: null). */
const N_FLOW = 0; // id of the flow's first record; 0 when it was rolled up
const N_FIRST = 1;
const N_KNOWN = 2; // knownSince
const N_CLOSED = 3;
const N_ACC = 4; // counts already in records: tx bytes, rx bytes, tx packets, rx packets (4..7)
const N_LFIRST = 8; // the last observation's first-seen, last-seen, close, pid, uid
const N_LMS = 9;
const N_LCLOSED = 10;
const N_PID = 11;
const N_UID = 12;
const NUM = 13;
/** String fields of the last observation (references into the writer's string table). */
const S_COMM = 0;
const S_EXE = 1;
const S_CGROUP = 2;
const S_UNIT = 3;
const S_IFACE = 4;
const S_DIR = 5;
const S_HOW = 6;
const S_NAME = 7;
const S_ATTRS = 8;
const STR = 9;
const FINALIZED = 1;
/** The open-flow row is persisted (so a close must delete it). */
const PERSISTED = 2;
/** The latest observation (owner, interface...) is kept: while open; a closed flow only
 * needs its identity and counts, and tens of thousands of them are tracked. */
const HAS_LAST = 4;
/** Counts already in records are known (not after a restore of a row without them). */
const HAS_ACC = 8;
const IPV6 = 16;
/** No slot (ends a chain or the closed list). */
const NIL = -1;
/** Slots.member bits: in the index by tuple hash (tracked), in the list of closed flows. */
const IN_INDEX = 1;
const IN_CLOSED = 2;

/**
 * The flows history tracks, a slot each, a column per field. Why not an object per flow:
 * an object with its last observation and counts cost about 870 bytes of the writer's heap
 * per open flow (100,000 open flows: 87 MB, and the first listing of a million-flow table
 * about 870 MB); a slot costs its key and about 210 bytes of columns (the index's 21 among them).
 * Freed slots are reused; the columns keep their largest size.
 *
 * The tracked slots are found by their tuple's hash (flowHash()) through an index kept in
 * the same columns: `buckets` (a power of two, twice the slots) holds each chain's first
 * slot, `chain` the next slot with the same bucket. Closed flows are listed oldest close
 * first through `older`/`newer`. Why not Maps (key -> slot, hash -> count, key -> slot in
 * close order, as before): at the default 65,536 tracked flows each close kept in detail
 * set, looked up and deleted string keys in three Maps, 60-70% of its cost in the writer
 * thread (bench/history/accountant.ts, fast path), and a Map rebuilds its whole table when
 * the entries it deleted fill it.
 */
class Slots {
  cap = 0;
  /** Tracked slots (in the index). */
  count = 0;
  /** The closed flow closed longest ago, and the latest (NIL: none). */
  oldest = NIL;
  private newest = NIL;
  private buckets = new Int32Array(0);
  private mask = 0;
  private chain = new Int32Array(0);
  private older = new Int32Array(0);
  private newer = new Int32Array(0);
  private member = new Uint8Array(0);
  keys: Array<string | undefined> = [];
  hash = new Uint32Array(0);
  num = new Float64Array(0);
  flags = new Uint8Array(0);
  /** Listings that began after history knew this flow and did not list it, in a row (-1: listed). */
  missed = new Int8Array(0);
  strs: Array<string | null> = [];
  private readonly free: number[] = [];
  private top = 0;

  alloc(key: string, hash: number): number {
    const s = this.free.pop() ?? this.top++;
    if (s >= this.cap) this.grow();
    this.keys[s] = key;
    this.hash[s] = hash;
    this.num.fill(NaN, s * NUM, s * NUM + NUM);
    this.flags[s] = 0;
    this.missed[s] = 0;
    return s;
  }

  release(s: number): void {
    if (this.member[s]! & IN_INDEX) this.unlink(s);
    if (this.member[s]! & IN_CLOSED) this.unlistClosed(s);
    this.keys[s] = undefined;
    this.strs.fill(null, s * STR, s * STR + STR);
    this.flags[s] = 0;
    this.free.push(s);
  }

  private grow(): void {
    const cap = Math.max(1024, this.cap * 2);
    const hash = new Uint32Array(cap);
    hash.set(this.hash);
    this.hash = hash;
    const num = new Float64Array(cap * NUM);
    num.set(this.num);
    this.num = num;
    const flags = new Uint8Array(cap);
    flags.set(this.flags);
    this.flags = flags;
    const missed = new Int8Array(cap);
    missed.set(this.missed);
    this.missed = missed;
    const grown = (a: Int32Array): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(cap).fill(NIL);
      b.set(a);
      return b;
    };
    this.chain = grown(this.chain);
    this.older = grown(this.older);
    this.newer = grown(this.newer);
    const member = new Uint8Array(cap);
    member.set(this.member);
    this.member = member;
    // Twice as many buckets as slots: chains of about one. Rebuilt: a slot's bucket is
    // its hash under the new mask.
    this.buckets = new Int32Array(cap * 2).fill(NIL);
    this.mask = cap * 2 - 1;
    for (let t = 0; t < this.cap; t++) {
      if (!(member[t]! & IN_INDEX)) continue;
      const b = this.hash[t]! & this.mask;
      this.chain[t] = this.buckets[b]!;
      this.buckets[b] = t;
    }
    // Filled, then copied: pushing element by element cost 1.6x as much (9M pushes for a
    // million slots). Holey from the start (the keys of freed slots are undefined anyway).
    const strs = new Array<string | null>(cap * STR).fill(null);
    for (let i = 0; i < this.cap * STR; i++) strs[i] = this.strs[i]!;
    this.strs = strs;
    const keys = new Array<string | undefined>(cap);
    for (let i = 0; i < this.cap; i++) keys[i] = this.keys[i];
    this.keys = keys;
    this.cap = cap;
  }

  /** The tracked slot of the flow with this key (flowKey()) and hash (flowHash()), or NIL. */
  find(key: string, hash: number): number {
    return this.findFrom(this.cap ? this.buckets[hash & this.mask]! : NIL, key, hash);
  }

  /** The first tracked slot with this hash, or NIL (then no tracked flow has the tuple). */
  firstWithHash(hash: number): number {
    for (let t = this.cap ? this.buckets[hash & this.mask]! : NIL; t !== NIL; t = this.chain[t]!) {
      if (this.hash[t] === hash) return t;
    }
    return NIL;
  }

  /** find() from slot `t` of the hash's chain on (the head, or what firstWithHash() gave). */
  findFrom(t: number, key: string, hash: number): number {
    for (; t !== NIL; t = this.chain[t]!) {
      if (this.hash[t] === hash && this.keys[t] === key) return t;
    }
    return NIL;
  }

  /** Tracks slot `s` (found by find() from now on). */
  link(s: number): void {
    if (this.member[s]! & IN_INDEX) return;
    const b = this.hash[s]! & this.mask;
    this.chain[s] = this.buckets[b]!;
    this.buckets[b] = s;
    this.member[s]! |= IN_INDEX;
    this.count++;
  }

  private unlink(s: number): void {
    const b = this.hash[s]! & this.mask;
    let t = this.buckets[b]!;
    if (t === s) {
      this.buckets[b] = this.chain[s]!;
    } else {
      while (this.chain[t] !== s) t = this.chain[t]!;
      this.chain[t] = this.chain[s]!;
    }
    this.chain[s] = NIL;
    this.member[s]! &= ~IN_INDEX;
    this.count--;
  }

  /** Tracked slots, in slot order (the callback may release the slot it is given). */
  forEachTracked(fn: (s: number) => void): void {
    for (let t = 0; t < this.top; t++) if (this.member[t]! & IN_INDEX) fn(t);
  }

  /** Slot `s` is the latest closed flow (moved there if it was listed already). */
  listClosed(s: number): void {
    if (this.member[s]! & IN_CLOSED) this.unlistClosed(s);
    this.older[s] = this.newest;
    this.newer[s] = NIL;
    if (this.newest === NIL) this.oldest = s;
    else this.newer[this.newest] = s;
    this.newest = s;
    this.member[s]! |= IN_CLOSED;
  }

  private unlistClosed(s: number): void {
    const o = this.older[s]!;
    const n = this.newer[s]!;
    if (o === NIL) this.oldest = n;
    else this.newer[o] = n;
    if (n === NIL) this.newest = o;
    else this.older[n] = o;
    this.member[s]! &= ~IN_CLOSED;
  }

  /** Keeps `o` as the slot's last observation (its tuple is the key's). */
  setLast(s: number, o: FlowObservation): void {
    const n = this.num;
    const b = s * NUM;
    n[b + N_LFIRST] = o.firstMs;
    n[b + N_LMS] = o.lastMs;
    n[b + N_LCLOSED] = o.closedMs ?? NaN;
    n[b + N_PID] = o.pid ?? NaN;
    n[b + N_UID] = o.uid ?? NaN;
    const st = this.strs;
    const c = s * STR;
    st[c + S_COMM] = o.comm;
    st[c + S_EXE] = o.exe;
    st[c + S_CGROUP] = o.cgroupId;
    st[c + S_UNIT] = o.unit ?? null;
    st[c + S_IFACE] = o.interface;
    st[c + S_DIR] = o.direction;
    st[c + S_HOW] = o.attributedBy;
    st[c + S_NAME] = o.remoteName ?? null;
    st[c + S_ATTRS] = o.attrs ?? null;
    this.flags[s] = (this.flags[s]! & ~IPV6) | HAS_LAST | (o.family === 'ipv6' ? IPV6 : 0);
  }

  dropLast(s: number): void {
    this.strs.fill(null, s * STR, s * STR + STR);
    this.flags[s]! &= ~HAS_LAST;
  }

  /** The slot's last observation as an object (its counts: those already recorded). */
  last(s: number): FlowObservation {
    const [proto, la, lp, ra, rp] = this.keys[s]!.split(' ') as [string, string, string, string, string];
    const n = this.num;
    const b = s * NUM;
    const st = this.strs;
    const c = s * STR;
    const acc = this.flags[s]! & HAS_ACC;
    return {
      proto, family: this.flags[s]! & IPV6 ? 'ipv6' : 'ipv4', localAddr: la, localPort: lp === '' ? null : Number(lp), remoteAddr: ra, remotePort: rp === '' ? null : Number(rp),
      interface: st[c + S_IFACE] ?? null, direction: st[c + S_DIR] ?? null, attributedBy: st[c + S_HOW] ?? null,
      pid: nullable(n[b + N_PID]!), comm: st[c + S_COMM] ?? null, uid: nullable(n[b + N_UID]!), exe: st[c + S_EXE] ?? null, cgroupId: st[c + S_CGROUP] ?? null, unit: st[c + S_UNIT] ?? null,
      firstMs: n[b + N_LFIRST]!, lastMs: n[b + N_LMS]!, closedMs: nullable(n[b + N_LCLOSED]!),
      txBytes: acc ? n[b + N_ACC]! : 0, rxBytes: acc ? n[b + N_ACC + 1]! : 0, txPackets: acc ? n[b + N_ACC + 2]! : 0, rxPackets: acc ? n[b + N_ACC + 3]! : 0,
      remoteName: st[c + S_NAME] ?? null, attrs: st[c + S_ATTRS] ?? null,
    };
  }

  acc(s: number): Counts {
    const n = this.num;
    const b = s * NUM + N_ACC;
    return { txBytes: n[b]!, rxBytes: n[b + 1]!, txPackets: n[b + 2]!, rxPackets: n[b + 3]! };
  }

  setAcc(s: number, o: Counts): void {
    const n = this.num;
    const b = s * NUM + N_ACC;
    n[b] = o.txBytes;
    n[b + 1] = o.rxBytes;
    n[b + 2] = o.txPackets;
    n[b + 3] = o.rxPackets;
    this.flags[s]! |= HAS_ACC;
  }
}

const nullable = (v: number): number | null => (Number.isNaN(v) ? null : v);

/** What the store persists for an open flow, to carry on after a restart. */
export interface OpenFlowRow {
  key: string;
  flow: number;
  firstMs: number;
  acc: Counts;
  last: FlowObservation;
}

export interface WriteSet {
  records: FlowRecord[];
  /** Open-flow state to persist, as the store keeps it: the flow's row (openRow()), or null
   * to forget the key (the last word wins). */
  open: Map<string, FlowRecord | null>;
  /** Flows (ids of their first records) whose persisted open-flow row goes: replaced by a
   * row in `open`, or forgotten. The store deletes these before it writes `open`, so that a
   * first listing of 100,000 new flows deletes nothing. */
  forget: number[];
}

/**
 * An open flow's persisted state as a record row (the store's open_rows): `id` and `flow`
 * the flow's id, kind open, the counts already recorded, `firstMs` the flow's first-seen as
 * history first knew it, `endMs` its last-seen; owner and path as a record's. One object
 * per open flow in a write set (a first listing of a million flows holds a million).
 */
export function openRow(flow: number, firstMs: number, acc: Counts, o: FlowObservation): FlowRecord {
  return {
    id: flow, flow, kind: RECORD_KIND.open, conns: 0,
    pid: o.pid, comm: o.comm, uid: o.uid, exe: o.exe, cgroupId: o.cgroupId, unit: o.unit ?? null,
    proto: PROTO_NUMBERS[o.proto] ?? (Number(o.proto) || 0), family: o.family === 'ipv4' ? 4 : 6,
    localAddr: o.localAddr, localPort: o.localPort, remoteAddr: o.remoteAddr, remotePort: o.remotePort,
    interface: o.interface, direction: o.direction, attributedBy: o.attributedBy,
    firstMs, endMs: o.lastMs,
    txBytes: acc.txBytes, rxBytes: acc.rxBytes, txPackets: acc.txPackets, rxPackets: acc.rxPackets,
    remoteName: o.remoteName ?? null, attrs: o.attrs ?? null,
  };
}

/** What restore() takes for a persisted row (openRow()). */
export function openFlowOf(r: FlowRecord): OpenFlowRow {
  const acc = { txBytes: r.txBytes, rxBytes: r.rxBytes, txPackets: r.txPackets, rxPackets: r.rxPackets };
  const last: FlowObservation = {
    proto: PROTO_NAMES[r.proto] ?? String(r.proto), family: r.family === 4 ? 'ipv4' : 'ipv6',
    localAddr: r.localAddr, localPort: r.localPort, remoteAddr: r.remoteAddr, remotePort: r.remotePort,
    interface: r.interface, direction: r.direction, attributedBy: r.attributedBy,
    pid: r.pid, comm: r.comm, uid: r.uid, exe: r.exe, cgroupId: r.cgroupId, unit: r.unit ?? null,
    firstMs: r.firstMs, lastMs: r.endMs ?? r.firstMs, closedMs: null, ...acc,
    remoteName: r.remoteName, attrs: r.attrs,
  };
  return { key: flowKey(last), flow: r.flow, firstMs: r.firstMs, acc, last };
}

/** Strictly increasing record ids (time in ms * 1024 + n). A record older than the last
 * one takes the last one's time: records arrive about in time order, so this moves one by
 * at most a batch's latency, and a wall clock stepped back does not reorder the log. */
export class RecordIds {
  constructor(private last = 0) {}
  next(ts: number): number {
    const id = Math.max(Math.floor(ts) * ID_SHIFT, this.last + 1);
    this.last = id;
    return id;
  }
  get lastId(): number {
    return this.last;
  }
}

// The contract's protocol names (icmpv6, not icmp6): one name per concept.
export const PROTO_NUMBERS: Record<string, number> = PROTOCOL_NUMBERS;
export const PROTO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PROTO_NUMBERS).map(([k, v]) => [v, k]));

/** A flow's 5-tuple as text. Joined, not a template literal: V8 builds a template's result
 * as a tree of concatenations that a Map key keeps alive whole (about 250 bytes of the
 * writer's heap per tracked flow, measured); join() makes one flat string. */
export function flowKey(o: Pick<FlowObservation, 'proto' | 'localAddr' | 'localPort' | 'remoteAddr' | 'remotePort'>): string {
  return tupleKey(o.proto, o.localAddr, o.localPort, o.remoteAddr, o.remotePort);
}

/** flowKey() from the tuple's fields (the writer's fast path has no observation object). */
function tupleKey(proto: string, laddr: string, lport: number | null, raddr: string, rport: number | null): string {
  return [proto, laddr, lport ?? '', raddr, rport ?? ''].join(' ');
}

/** flowHash() of the flow whose flowKey() is `key`. */
function keyHash(key: string): number {
  const [proto, la, lp, ra, rp] = key.split(' ') as [string, string, string, string, string];
  return tupleHash(strHash(proto), strHash(la), lp === '' ? 65536 : Number(lp), strHash(ra), rp === '' ? 65536 : Number(rp));
}

/** flowKey(o) as a number: what the writer's fast path computes from the packed row. */
export function flowHash(o: Pick<FlowObservation, 'proto' | 'localAddr' | 'localPort' | 'remoteAddr' | 'remotePort'>): number {
  return tupleHash(strHash(o.proto), strHash(o.localAddr), o.localPort ?? 65536, strHash(o.remoteAddr), o.remotePort ?? 65536);
}

/** A per-process roll-up being summed in this batch. */
interface ProcSlot {
  minute: number;
  rec: FlowRecord;
}

/** One process's roll-ups until drain(), by remote address ('' for those without one). */
interface ProcRollups {
  byRemote: Map<string, ProcSlot[]>;
  /** Slots that carry an endpoint: at most REMOTES_PER_PROCESS, then closes go to ''. */
  remotes: number;
}

const UNSPECIFIED = { 4: '0.0.0.0', 6: '::' } as const;

const counts = (o: Counts): Counts => ({ txBytes: o.txBytes, rxBytes: o.rxBytes, txPackets: o.txPackets, rxPackets: o.rxPackets });

export class Accountant {
  /** Tracked flows, found by key and hash (Slots.find()); closed ones listed oldest close first. */
  private readonly slots = new Slots();
  /** Roll-ups of flows beyond the budget, by pid (-1: none), summed until drain(). */
  private readonly procRollups = new Map<number, ProcRollups>();
  /** Roll-ups with an endpoint since the last drain, at most `maxEndpoints`. */
  private endpointRollups = 0;
  private readonly maxEndpoints: number;
  private tokens: number;
  private refilledAt = -Infinity;
  /** Closed flows that closed at or before this may already be written (see the header). */
  private watermark: number;
  private out: WriteSet = { records: [], open: new Map(), forget: [] };
  private readonly rollups = new Map<string, FlowRecord>();
  /** pid -> executable and cgroup, learned from listings: close events carry neither. */
  private readonly owners = new Map<number, { comm: string | null; exe: string | null; cgroupId: string | null; unit: string | null }>();
  readonly stats = { rolledUp: 0, skippedStale: 0, skippedKnown: 0, evicted: 0 };
  /**
   * Closed flows forgotten because two listings in a row did not show them: key -> first
   * seen. The daemon's flow table can show a closed flow again later (after its GC moved it
   * out of the kernel's map), with a close time a few ms off the close event's (the event
   * and the table convert kernel clocks separately: 29 ms measured under load), so the
   * watermark alone would take it for a flow nobody wrote. Bounded like `tracked`.
   */
  private readonly gone = new Map<string, number>();
  private readonly oldestGone = new OldestFirst(this.gone);

  constructor(private readonly ids: RecordIds, private readonly opts: AccountantOptions = DEFAULT_ACCOUNTANT_OPTIONS, watermark = -Infinity) {
    this.tokens = opts.detailBurst;
    this.watermark = watermark;
    // The event loop's bound (overbudget.ts), over a default 10 s commit.
    this.maxEndpoints = opts.endpointsPerDrain ?? endpointsPerHandover(opts.detailPerSec, 10_000);
  }

  /** Closes the fast path took on the tuple of a closed flow it still tracked (that flow
   * forgotten, as observe() does): for tests. */
  reusedTuples = 0;

  get trackedCount(): number {
    return this.slots.count;
  }

  /** Carries on after a restart: the open flows the last run persisted. */
  restore(rows: OpenFlowRow[], now: number): void {
    const sl = this.slots;
    for (const r of rows) {
      const hash = flowHash(r.last);
      const old = sl.find(r.key, hash);
      if (old !== NIL) this.forget(old);
      const s = sl.alloc(r.key, hash);
      const b = s * NUM;
      sl.num[b + N_FLOW] = r.flow;
      sl.num[b + N_FIRST] = r.firstMs;
      sl.num[b + N_KNOWN] = now;
      sl.setAcc(s, r.acc);
      sl.setLast(s, r.last);
      sl.flags[s]! |= PERSISTED;
      this.track(s);
    }
  }

  /** A close event: `o` carries the flow's final counts. */
  close(o: FlowObservation, now: number): void {
    this.observe(o, true, now, null);
  }

  /** One flow of a listing of the flow table that began at `listingStart`; `full`: the
   * listing shows every flow (else only those that changed). */
  listed(o: FlowObservation, now: number, listingStart: number, full = true): void {
    this.observe(o, o.closedMs !== null, now, listingStart, full);
  }

  /** The listing that began at `listingStart` is complete. A full one: flows it did not
   * show (twice in a row, and known before it began) have left the table. An incremental
   * one says nothing of the flows it did not show. */
  endListing(listingStart: number, now: number, full = true): void {
    if (!full) return;
    const sl = this.slots;
    sl.forEachTracked((s) => {
      if (sl.num[s * NUM + N_KNOWN]! >= listingStart) return;
      if (sl.missed[s] === -1) {
        sl.missed[s] = 0; // listed
        return;
      }
      if (++sl.missed[s]! < 2) return;
      this.leave(s, now, now);
    });
  }

  /** A tracked flow has left the table (at `endedMs`): an open one's record ends it, a
   * closed one is remembered as written (a listing that shows it again writes nothing). */
  private leave(s: number, now: number, endedMs: number): void {
    const sl = this.slots;
    if (!(sl.flags[s]! & FINALIZED)) {
      this.emit(s, sl.last(s), RECORD_KIND.ended, 0, { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }, now, endedMs);
      this.unpersist(s);
    } else {
      const key = sl.keys[s]!;
      this.gone.delete(key);
      this.gone.set(key, sl.num[s * NUM + N_FIRST]!);
      if (this.gone.size > this.opts.maxTracked) this.oldestGone.shift();
    }
    this.forget(s);
  }

  /**
   * The flow with this key (flowKey()) left the table at `goneAtMs` (an incremental
   * listing's OP.gone): an open one ends now, a closed one is forgotten (as after two full
   * listings without it). A tracked flow first seen within reuseToleranceMs of that, or
   * later, is taken for a new flow on the same tuple and kept: at worst an old one lingers
   * until the tuple's next flow or full listing ends it, never is a live one ended early.
   * `hash`: the tuple's flowHash(), when the caller has the tuple (else read from the key).
   */
  leftTable(key: string, goneAtMs: number, now: number, hash: number = keyHash(key)): void {
    const s = this.slots.find(key, hash);
    if (s === NIL || this.slots.num[s * NUM + N_FIRST]! + this.opts.reuseToleranceMs >= goneAtMs) return;
    this.leave(s, now, goneAtMs);
  }

  /** Records waiting for drain() (roll-ups: one per slot, counted as the general path's). */
  get pendingRecords(): number {
    return this.out.records.length + this.rollups.size + this.procRollups.size;
  }

  /** Records and open-flow changes since the last drain. */
  drain(): WriteSet {
    const w = this.out;
    for (const r of this.rollups.values()) w.records.push(r);
    this.rollups.clear();
    for (const proc of this.procRollups.values()) for (const slots of proc.byRemote.values()) for (const p of slots) w.records.push(p.rec);
    this.procRollups.clear();
    this.endpointRollups = 0;
    this.out = { records: [], open: new Map(), forget: [] };
    return w;
  }

  private track(s: number): void {
    this.slots.link(s);
  }

  /** Stops tracking the flow in slot `s` and frees the slot. */
  private forget(s: number): void {
    this.slots.release(s);
  }

  /** Fills in what a close event lacks from what listings showed of the same process. */
  private enrich(o: FlowObservation, listed: boolean): FlowObservation {
    if (o.pid === null) return o;
    if (listed) {
      if (o.exe !== null || o.cgroupId !== null) {
        if (this.owners.size >= 65_536) this.owners.clear();
        this.owners.set(o.pid, { comm: o.comm, exe: o.exe, cgroupId: o.cgroupId, unit: o.unit ?? null });
      }
      return o;
    }
    if (o.exe !== null && o.cgroupId !== null && o.unit !== null && o.unit !== undefined) return o;
    const k = this.owners.get(o.pid);
    if (!k || k.comm !== o.comm) return o;
    return withOwner(o, o.exe ?? k.exe, o.cgroupId ?? k.cgroupId, o.unit ?? k.unit, o.direction, o.interface, o.attributedBy, o.remoteName ?? null);
  }

  private observe(obs: FlowObservation, final: boolean, now: number, listingStart: number | null, full = true): void {
    const o = this.enrich(obs, listingStart !== null);
    const key = flowKey(o);
    const hash = flowHash(o);
    const sl = this.slots;
    let s: number | undefined = sl.find(key, hash);
    if (s === NIL) s = undefined;
    if (s !== undefined && Math.abs(o.firstMs - sl.num[s * NUM + N_FIRST]!) > this.opts.reuseToleranceMs) {
      // The tuple was reused. The tracked flow, if still open, has ended.
      if (sl.num[s * NUM + N_FIRST]! > o.firstMs) {
        this.stats.skippedStale++; // an older flow's observation arriving late
        return;
      }
      if (!(sl.flags[s]! & FINALIZED)) {
        this.emit(s, sl.last(s), RECORD_KIND.ended, 0, { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }, now, now);
        this.unpersist(s);
      }
      this.forget(s);
      s = undefined;
    }
    // Only a full listing counts as a sighting for the absence rule (endListing).
    if (listingStart !== null && full && s !== undefined) sl.missed[s] = -1;
    if (s === undefined) {
      // Only a listing can show a closed flow history wrote already; a close event is news.
      // The watermark allows for the two clocks (CLOSE_CLOCK_SLACK_MS).
      const g = this.gone.get(key);
      if (final && listingStart !== null && ((o.closedMs ?? now) <= this.watermark + CLOSE_CLOCK_SLACK_MS || (g !== undefined && Math.abs(o.firstMs - g) <= this.opts.reuseToleranceMs))) {
        this.stats.skippedKnown++;
        return;
      }
      if (final && !this.takeToken(now)) {
        // Over the detail budget: roll up without tracking the flow (the cost per flow that
        // matters at 10,000 closes/s), and move the watermark past it so that a listing
        // does not write it again. The price: a close the kernel failed to report, older
        // than that, is not recovered from a listing while closes come this fast.
        const at = o.closedMs ?? now;
        const k = this.owners.get(o.pid ?? -1);
        const inbound = serviceSide(o.direction, o.attributedBy);
        this.rollupProcess(o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, k, PROTO_NUMBERS[o.proto] ?? (Number(o.proto) || 0), o.family === 'ipv4' ? 4 : 6, o.interface, o.direction, o.attributedBy,
          o.remoteAddr, inbound ? o.localPort : null, inbound ? null : o.remotePort, o.remoteName ?? null, at, at, o.firstMs, 1, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets);
        return;
      }
      const t = sl.alloc(key, hash);
      const b = t * NUM;
      sl.num[b + N_FLOW] = 0;
      sl.num[b + N_FIRST] = o.firstMs;
      sl.num[b + N_KNOWN] = listingStart !== null ? listingStart - 1 : now; // listed: known before this listing
      sl.missed[t] = listingStart !== null && full ? -1 : 0;
      sl.setLast(t, o);
      this.track(t);
      this.takeNew(t, o, final, now);
      return;
    }
    let cur = o;
    if (sl.flags[s]! & HAS_LAST) {
      cur = mergeOwner(sl, s, o);
      sl.setLast(s, cur);
    }
    if (!(sl.flags[s]! & HAS_ACC)) {
      sl.setAcc(s, o);
      return;
    }
    const n = sl.num;
    const a = s * NUM + N_ACC;
    const d = { txBytes: o.txBytes - n[a]!, rxBytes: o.rxBytes - n[a + 1]!, txPackets: o.txPackets - n[a + 2]!, rxPackets: o.rxPackets - n[a + 3]! };
    if (d.txBytes < 0 || d.rxBytes < 0 || d.txPackets < 0 || d.rxPackets < 0) {
      // An observation older than what is recorded (a listing that read the entry before
      // its close was handled): nothing new in it.
      this.stats.skippedStale++;
      return;
    }
    const grew = d.txBytes > 0 || d.rxBytes > 0 || d.txPackets > 0 || d.rxPackets > 0;
    if (sl.flags[s]! & FINALIZED) {
      if (grew) this.emit(s, cur, n[s * NUM + N_FLOW] === 0 ? RECORD_KIND.rollup : RECORD_KIND.late, 0, d, now, nullable(n[s * NUM + N_CLOSED]!));
    } else if (final) {
      this.emit(s, cur, RECORD_KIND.closed, 0, d, o.closedMs ?? now, o.closedMs ?? now);
      this.finalize(s, now);
    } else if (grew) {
      this.emit(s, cur, RECORD_KIND.open, 0, d, now, null);
      this.persist(s, o, cur);
    }
    sl.setAcc(s, o);
  }

  /** A flow history did not know: its first record counts the connection. */
  private takeNew(s: number, o: FlowObservation, final: boolean, now: number): void {
    const sl = this.slots;
    const c = counts(o);
    if (final) {
      const at = o.closedMs ?? now;
      sl.num[s * NUM + N_FLOW] = this.emit(s, o, RECORD_KIND.closed, 1, c, at, at); // the token was taken by observe()
      this.finalize(s, now);
    } else {
      sl.num[s * NUM + N_FLOW] = this.emit(s, o, RECORD_KIND.open, 1, c, now, null);
      this.persist(s, o, o);
    }
    sl.setAcc(s, c);
  }

  private finalize(s: number, now: number): void {
    const sl = this.slots;
    const b = s * NUM;
    sl.flags[s]! |= FINALIZED;
    const lastClosed = sl.flags[s]! & HAS_LAST ? sl.num[b + N_LCLOSED]! : NaN;
    sl.num[b + N_CLOSED] = Number.isNaN(lastClosed) ? now : lastClosed;
    sl.dropLast(s);
    this.unpersist(s);
    sl.listClosed(s);
    this.evictOverflow(now);
  }

  /** Beyond maxTracked, the oldest closed flows are forgotten (the watermark moves past them). */
  private evictOverflow(now: number): void {
    const sl = this.slots;
    while (sl.count > this.opts.maxTracked) {
      const old = sl.oldest;
      if (old === NIL) break;
      this.watermark = Math.max(this.watermark, nullable(sl.num[old * NUM + N_CLOSED]!) ?? now);
      this.forget(old);
      this.stats.evicted++;
    }
  }

  /** The flow's persisted open-flow row (if any) goes. */
  private unpersist(s: number): void {
    const sl = this.slots;
    if (!(sl.flags[s]! & PERSISTED)) return;
    this.out.open.set(sl.keys[s]!, null);
    this.out.forget.push(sl.num[s * NUM + N_FLOW]!);
    sl.flags[s]! &= ~PERSISTED;
  }

  /** Persists the open flow in slot `s`: `o` its counts now (all recorded), `last` its
   * latest observation with the owner details earlier ones had. */
  private persist(s: number, o: FlowObservation, last: FlowObservation): void {
    const sl = this.slots;
    const b = s * NUM;
    if (sl.flags[s]! & PERSISTED) this.out.forget.push(sl.num[b + N_FLOW]!); // the row written before is replaced
    sl.flags[s]! |= PERSISTED;
    const key = sl.keys[s]!;
    this.out.open.set(key, openRow(sl.num[b + N_FLOW]!, sl.num[b + N_FIRST]!, o, last));
  }

  /**
   * The writer's fast path for a close event, fields read in place from the packed row (no
   * observation object): when the flow is not tracked (its tuple's hash is unknown, or its
   * tuple is tracked only for an earlier flow that closed: forgotten first, as observe()
   * does), a close within the detail budget becomes its closed record and a tracked closed
   * flow here, what close() would make of it through observe(), takeNew() and finalize()
   * without the observation, its copy with the owner filled in, its last-observation columns
   * written and cleared again, and a second look at the budget; beyond the budget it joins
   * its process's roll-up. True when taken; false (the tuple's flow is open, or this close
   * is within reuseToleranceMs of its first-seen time or older) and nothing changed: the
   * caller takes the general path (close()).
   * `lport`/`rport` the flow's own ports (null: none); the roll-up keeps the service side's.
   */
  closeUntracked(hash: number, pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    protoName: string, family: 4 | 6, laddr: string, lport: number | null, raddr: string, rport: number | null,
    iface: string | null, direction: string | null, how: string | null, name: string | null, attrs: string | null,
    at: number, firstMs: number, tx: number, rx: number, txp: number, rxp: number, now: number): boolean {
    let key: string | null = null;
    const first = this.slots.firstWithHash(hash);
    if (first !== NIL) {
      // Another flow with this hash is tracked: most often an earlier, closed flow on the same
      // tuple (a client's ephemeral ports come round again every few seconds at thousands of
      // connections a second). observe() would forget it and take this one as new: so does
      // this path. A collision (another tuple) is no flow of this one. Anything else (an
      // open flow, a late or stale observation) takes the general path.
      key = tupleKey(protoName, laddr, lport, raddr, rport);
      const s = this.slots.findFrom(first, key, hash);
      if (s !== NIL) {
        if (!(this.slots.flags[s]! & FINALIZED) || firstMs - this.slots.num[s * NUM + N_FIRST]! <= this.opts.reuseToleranceMs) return false;
        this.forget(s);
        this.reusedTuples++;
      }
    }
    const proto = PROTO_NUMBERS[protoName] ?? (Number(protoName) || 0);
    const k = this.owners.get(pid ?? -1);
    if (!this.takeToken(now)) {
      const inbound = serviceSide(direction, how);
      return this.rollupProcess(pid, comm, uid, exe, cgroupId, unit, k, proto, family, iface, direction, how, raddr === '' ? null : raddr, inbound ? lport : null, inbound ? null : rport, name,
        at, at, firstMs, 1, tx, rx, txp, rxp);
    }
    // enrich(): what listings showed of the same process fills in what the close lacks.
    if (pid !== null && k !== undefined && k.comm === comm && (exe === null || cgroupId === null || unit === null)) {
      exe ??= k.exe;
      cgroupId ??= k.cgroupId;
      unit ??= k.unit;
    }
    const id = this.ids.next(at);
    // record()'s object, field for field in the same order (one object shape).
    this.out.records.push({
      id, flow: id, kind: RECORD_KIND.closed, conns: 1,
      pid, comm, uid, exe, cgroupId, unit,
      proto, family,
      localAddr: laddr, localPort: lport, remoteAddr: raddr, remotePort: rport,
      interface: iface, direction, attributedBy: how,
      firstMs, endMs: at,
      txBytes: tx, rxBytes: rx, txPackets: txp, rxPackets: rxp,
      remoteName: name, attrs,
    });
    key ??= tupleKey(protoName, laddr, lport, raddr, rport);
    const sl = this.slots;
    const t = sl.alloc(key, hash);
    const b = t * NUM;
    const n = sl.num;
    n[b + N_FLOW] = id;
    n[b + N_FIRST] = firstMs;
    n[b + N_KNOWN] = now;
    n[b + N_CLOSED] = at;
    n[b + N_ACC] = tx;
    n[b + N_ACC + 1] = rx;
    n[b + N_ACC + 2] = txp;
    n[b + N_ACC + 3] = rxp;
    sl.flags[t] = FINALIZED | HAS_ACC | (family === 6 ? IPV6 : 0);
    this.track(t);
    sl.listClosed(t);
    this.evictOverflow(now);
    return true;
  }

  /** `conns` closes the event loop summed beyond the budget (overbudget.ts): the first at
   * `at`, the last at `endAt`; `raddr` null when summed without their endpoint. */
  addRollup(pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    proto: number, family: 4 | 6, iface: string | null, direction: string | null, how: string | null,
    raddr: string | null, lport: number | null, rport: number | null, name: string | null,
    at: number, endAt: number, firstMs: number, conns: number, tx: number, rx: number, txp: number, rxp: number): void {
    this.rollupProcess(pid, comm, uid, exe, cgroupId, unit, this.owners.get(pid ?? -1), proto, family, iface, direction, how, raddr, lport, rport, name, at, endAt, firstMs, conns, tx, rx, txp, rxp);
  }

  /** Adds a flow beyond the budget to its process's roll-up of the minute and remote
   * endpoint (`raddr` and the service port, `lport` for a connection accepted, `rport` for
   * one made; the first REMOTES_PER_PROCESS endpoints of each process, and `maxEndpoints`
   * in all, until drain(); the rest without one), with exe, cgroup and unit borrowed from a
   * listing of the same process, as enrich() does. Counts it, and
   * moves the watermark past it so that a listing does not write it again (the price: a
   * close the kernel failed to report, older than that, is not recovered from a listing
   * while closes come this fast). */
  private rollupProcess(pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    k: { comm: string | null; exe: string | null; cgroupId: string | null; unit: string | null } | undefined,
    proto: number, family: 4 | 6, iface: string | null, direction: string | null, how: string | null,
    raddr: string | null, lport: number | null, rport: number | null, name: string | null,
    at: number, endAt: number, firstMs: number, conns: number, tx: number, rx: number, txp: number, rxp: number): boolean {
    if (pid !== null && k !== undefined && k.comm === comm) {
      exe ??= k.exe;
      cgroupId ??= k.cgroupId;
      unit ??= k.unit;
    }
    const minute = Math.floor(at / 60_000);
    const pk = pid ?? -1;
    let proc = this.procRollups.get(pk);
    if (proc === undefined) this.procRollups.set(pk, (proc = { byRemote: new Map(), remotes: 0 }));
    // Keyed by the process (owner), protocol, family, minute and remote endpoint; the path
    // (interface, direction, attribution) and the name are kept while every flow agrees.
    let r = raddr === null ? undefined : findRollup(proc.byRemote.get(raddr), minute, proto, family, comm, uid, exe, cgroupId, unit, lport, rport);
    let keep = raddr !== null;
    if (r === undefined && keep && (proc.remotes >= REMOTES_PER_PROCESS || this.endpointRollups >= this.maxEndpoints)) {
      keep = false; // no room for another endpoint of this process: summed without one
      lport = rport = null;
      name = null;
    }
    if (r === undefined && !keep) r = findRollup(proc.byRemote.get(''), minute, proto, family, comm, uid, exe, cgroupId, unit, null, null);
    if (r !== undefined) {
      if (r.interface !== iface) r.interface = null;
      if (r.direction !== direction) r.direction = null;
      if (r.attributedBy !== how) r.attributedBy = null;
      if (r.remoteName !== name) r.remoteName = null;
    } else {
      const addr = UNSPECIFIED[family];
      r = {
        id: this.ids.next(at), flow: 0, kind: RECORD_KIND.rollup, conns: 0,
        pid, comm, uid, exe, cgroupId, unit,
        proto, family, localAddr: addr, localPort: keep ? lport : null, remoteAddr: keep ? raddr! : addr, remotePort: keep ? rport : null,
        interface: iface, direction, attributedBy: how, firstMs, endMs: endAt,
        txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, remoteName: keep ? name : null, attrs: null,
      };
      const key = keep ? raddr! : '';
      const list = proc.byRemote.get(key);
      if (list === undefined) proc.byRemote.set(key, [{ minute, rec: r }]);
      else list.push({ minute, rec: r });
      if (keep) {
        proc.remotes++;
        this.endpointRollups++;
      }
    }
    r.conns += conns;
    r.txBytes += tx;
    r.rxBytes += rx;
    r.txPackets += txp;
    r.rxPackets += rxp;
    if (firstMs < r.firstMs) r.firstMs = firstMs;
    if (endAt > r.endMs!) r.endMs = endAt;
    this.stats.rolledUp += conns;
    if (endAt > this.watermark) this.watermark = endAt;
    return true;
  }

  private takeToken(now: number): boolean {
    if (now > this.refilledAt) {
      this.tokens = this.refilledAt === -Infinity ? this.opts.detailBurst : Math.min(this.opts.detailBurst, this.tokens + ((now - this.refilledAt) * this.opts.detailPerSec) / 1000);
      this.refilledAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  private record(o: FlowObservation, kind: RecordKind, conns: number, c: Counts, at: number, endMs: number | null, flow: number): FlowRecord {
    const id = this.ids.next(at);
    // Written out, not spread: one object shape (a spread of this many fields is slow).
    return {
      id, flow: flow || (kind === RECORD_KIND.rollup ? 0 : id), kind, conns,
      pid: o.pid, comm: o.comm, uid: o.uid, exe: o.exe, cgroupId: o.cgroupId, unit: o.unit ?? null,
      proto: PROTO_NUMBERS[o.proto] ?? (Number(o.proto) || 0), family: o.family === 'ipv4' ? 4 : 6,
      localAddr: o.localAddr, localPort: o.localPort, remoteAddr: o.remoteAddr, remotePort: o.remotePort,
      interface: o.interface, direction: o.direction, attributedBy: o.attributedBy,
      firstMs: o.firstMs, endMs,
      txBytes: c.txBytes, rxBytes: c.rxBytes, txPackets: c.txPackets, rxPackets: c.rxPackets,
      remoteName: o.remoteName ?? null, attrs: o.attrs ?? null,
    };
  }

  /** Appends a record of the flow in slot `s`, described by observation `o`; returns its id. */
  private emit(s: number, o: FlowObservation, kind: RecordKind, conns: number, c: Counts, at: number, endMs: number | null): number {
    if (kind === RECORD_KIND.rollup) {
      this.rollup(o, c, at, 0);
      return 0;
    }
    const r = this.record(o, kind, conns, c, at, endMs, this.slots.num[s * NUM + N_FLOW]!);
    this.out.records.push(r);
    return r.id;
  }

  /** Merges a short flow into its process's roll-up for that remote endpoint and minute.
   * The ephemeral port goes: the local one of a connection the process made, the remote one
   * of a connection it accepted (then the local port names the service). */
  private rollup(o: FlowObservation, c: Counts, at: number, conns = 1): void {
    const inbound = serviceSide(o.direction, o.attributedBy);
    const k = `${Math.floor(at / 60_000)} ${o.pid} ${o.comm} ${o.uid} ${o.exe} ${o.cgroupId} ${o.proto} ${o.remoteAddr} ${inbound ? `l${o.localPort}` : `r${o.remotePort}`} ${o.interface} ${o.direction} ${o.attributedBy} ${o.remoteName ?? ''}`;
    const r = this.rollups.get(k);
    if (!r) {
      const rec = this.record(o, RECORD_KIND.rollup, conns, c, at, o.closedMs ?? at, 0);
      if (inbound) rec.remotePort = null;
      else rec.localPort = null;
      this.rollups.set(k, rec);
      return;
    }
    r.conns += conns;
    r.txBytes += c.txBytes;
    r.rxBytes += c.rxBytes;
    r.txPackets += c.txPackets;
    r.rxPackets += c.rxPackets;
    r.firstMs = Math.min(r.firstMs, o.firstMs);
    r.endMs = Math.max(r.endMs ?? 0, o.closedMs ?? at);
  }
}

/** The latest observation, keeping owner details the slot's last one had and this one lacks
 * (close events carry no executable or cgroup; listings do). */
function mergeOwner(sl: Slots, s: number, o: FlowObservation): FlowObservation {
  if (o.exe !== null && o.cgroupId !== null && o.direction !== null && o.interface !== null) return o;
  const st = sl.strs;
  const c = s * STR;
  return withOwner(o, o.exe ?? st[c + S_EXE] ?? null, o.cgroupId ?? st[c + S_CGROUP] ?? null, o.unit ?? st[c + S_UNIT] ?? null,
    o.direction ?? st[c + S_DIR] ?? null, o.interface ?? st[c + S_IFACE] ?? null, o.attributedBy ?? st[c + S_HOW] ?? null, o.remoteName ?? st[c + S_NAME] ?? null);
}

/** `o` with these owner and path fields. Written out, not spread: a spread of this many
 * fields cost 2.7 us per listed flow. */
function withOwner(o: FlowObservation, exe: string | null, cgroupId: string | null, unit: string | null,
  direction: string | null, iface: string | null, how: string | null, remoteName: string | null): FlowObservation {
  return {
    proto: o.proto, family: o.family, localAddr: o.localAddr, localPort: o.localPort, remoteAddr: o.remoteAddr, remotePort: o.remotePort,
    interface: iface, direction, attributedBy: how, pid: o.pid, comm: o.comm, uid: o.uid, exe, cgroupId, unit,
    firstMs: o.firstMs, lastMs: o.lastMs, closedMs: o.closedMs,
    txBytes: o.txBytes, rxBytes: o.rxBytes, txPackets: o.txPackets, rxPackets: o.rxPackets,
    remoteName, attrs: o.attrs ?? null,
  };
}

/** The roll-up in `list` (one remote address's, or those without one) for this process,
 * protocol, family, minute and ports. */
function findRollup(list: ProcSlot[] | undefined, minute: number, proto: number, family: 4 | 6, comm: string | null, uid: number | null, exe: string | null,
  cgroupId: string | null, unit: string | null, lport: number | null, rport: number | null): FlowRecord | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    const x = list[i]!;
    const c = x.rec;
    if (x.minute === minute && c.localPort === lport && c.remotePort === rport && c.proto === proto && c.family === family && c.comm === comm && c.uid === uid
      && c.exe === exe && c.cgroupId === cgroupId && c.unit === unit) return c;
  }
  return undefined;
}
