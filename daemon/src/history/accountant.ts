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
//   into one roll-up record per process, protocol, family and minute (remote and local
//   addresses unspecified, no ports), and not tracked. The writer thread takes that path
//   straight from the packed rows (closeOverBudget): no object per flow, a cost per flow of
//   a few field reads and a lookup by pid, and rows written in proportion to the processes,
//   not to the close rate.
// - History forgets closed flows it has written once they leave the table, or when it
//   tracks more than `maxTracked` flows (oldest first); a closed flow seen later that closed
//   before the newest one forgotten (or before the last record of a previous run) is taken
//   as already written, not written twice.
import { PROTOCOL_NUMBERS } from '../contract/common.js';
import { strHash, tupleHash } from './pack.js';
import { ID_SHIFT, RECORD_KIND, type FlowObservation, type FlowRecord, type RecordKind } from './types.js';

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

interface Tracked {
  key: string;
  /** tupleHash of the key (the fast path's "is it tracked?"). */
  hash: number;
  /** Id of the flow's first record; 0 when it was rolled up. */
  flow: number;
  firstMs: number;
  /** Counts already in records; null when unknown (restored after a restart). */
  acc: Counts | null;
  finalized: boolean;
  /** The open-flow row is persisted (so a close must delete it). */
  persisted: boolean;
  /** Listings that began after history knew this flow and did not list it, in a row. */
  missed: number;
  knownSince: number;
  /** The latest observation (owner, interface...) while open; null once closed: a closed
   * flow only needs its identity and counts, and tens of thousands of them are tracked. */
  last: FlowObservation | null;
  closedMs: number | null;
}

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
  /** Open-flow state to persist: the row, or null to forget the key (the last word wins). */
  open: Map<string, OpenFlowRow | null>;
  /** Flows (ids of their first records) whose persisted open-flow row goes: replaced by a
   * row in `open`, or forgotten. The store deletes these before it writes `open`, so that a
   * first listing of 100,000 new flows deletes nothing. */
  forget: number[];
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

export function flowKey(o: Pick<FlowObservation, 'proto' | 'localAddr' | 'localPort' | 'remoteAddr' | 'remotePort'>): string {
  return `${o.proto} ${o.localAddr} ${o.localPort ?? ''} ${o.remoteAddr} ${o.remotePort ?? ''}`;
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

const UNSPECIFIED = { 4: '0.0.0.0', 6: '::' } as const;

const counts = (o: Counts): Counts => ({ txBytes: o.txBytes, rxBytes: o.rxBytes, txPackets: o.txPackets, rxPackets: o.rxPackets });

export class Accountant {
  private readonly tracked = new Map<string, Tracked>();
  /** How many tracked flows have each tupleHash: a flow whose hash is absent is not tracked. */
  private readonly trackedHashes = new Map<number, number>();
  /** Roll-ups of flows beyond the budget, by pid (-1: none), summed until drain(). */
  private readonly procRollups = new Map<number, ProcSlot[]>();
  /** Closed flows still tracked, oldest close first: what maxTracked evicts. */
  private readonly finalized = new Map<string, Tracked>();
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

  constructor(private readonly ids: RecordIds, private readonly opts: AccountantOptions = DEFAULT_ACCOUNTANT_OPTIONS, watermark = -Infinity) {
    this.tokens = opts.detailBurst;
    this.watermark = watermark;
  }

  get trackedCount(): number {
    return this.tracked.size;
  }

  /** Carries on after a restart: the open flows the last run persisted. */
  restore(rows: OpenFlowRow[], now: number): void {
    for (const r of rows) {
      this.track({ key: r.key, hash: flowHash(r.last), flow: r.flow, firstMs: r.firstMs, acc: r.acc, finalized: false, persisted: true, missed: 0, knownSince: now, last: r.last, closedMs: null });
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
    for (const t of this.tracked.values()) {
      if (t.knownSince >= listingStart) continue;
      if (t.missed === -1) {
        t.missed = 0; // listed
        continue;
      }
      if (++t.missed < 2) continue;
      this.leave(t, now, now);
    }
  }

  /** A tracked flow has left the table (at `endedMs`): an open one's record ends it, a
   * closed one is remembered as written (a listing that shows it again writes nothing). */
  private leave(t: Tracked, now: number, endedMs: number): void {
    if (!t.finalized) {
      this.emit(t, t.last!, RECORD_KIND.ended, 0, { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }, now, endedMs);
      this.unpersist(t);
    } else {
      this.gone.delete(t.key);
      this.gone.set(t.key, t.firstMs);
      if (this.gone.size > this.opts.maxTracked) this.gone.delete(this.gone.keys().next().value!);
    }
    this.forget(t);
  }

  /**
   * The flow with this key (flowKey()) left the table at `goneAtMs` (an incremental
   * listing's OP.gone): an open one ends now, a closed one is forgotten (as after two full
   * listings without it). A tracked flow first seen within reuseToleranceMs of that, or
   * later, is taken for a new flow on the same tuple and kept: at worst an old one lingers
   * until the tuple's next flow or full listing ends it, never is a live one ended early.
   */
  leftTable(key: string, goneAtMs: number, now: number): void {
    const t = this.tracked.get(key);
    if (!t || t.firstMs + this.opts.reuseToleranceMs >= goneAtMs) return;
    this.leave(t, now, goneAtMs);
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
    for (const slots of this.procRollups.values()) for (const p of slots) w.records.push(p.rec);
    this.procRollups.clear();
    this.out = { records: [], open: new Map(), forget: [] };
    return w;
  }

  private track(t: Tracked): void {
    this.tracked.set(t.key, t);
    this.trackedHashes.set(t.hash, (this.trackedHashes.get(t.hash) ?? 0) + 1);
  }

  private forget(t: Tracked): void {
    if (this.tracked.get(t.key) === t) {
      this.tracked.delete(t.key);
      const n = this.trackedHashes.get(t.hash) ?? 0;
      if (n <= 1) this.trackedHashes.delete(t.hash);
      else this.trackedHashes.set(t.hash, n - 1);
    }
    this.finalized.delete(t.key);
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
    return { ...o, exe: o.exe ?? k.exe, cgroupId: o.cgroupId ?? k.cgroupId, unit: o.unit ?? k.unit };
  }

  private observe(obs: FlowObservation, final: boolean, now: number, listingStart: number | null, full = true): void {
    const o = this.enrich(obs, listingStart !== null);
    const key = flowKey(o);
    let t = this.tracked.get(key);
    if (t && Math.abs(o.firstMs - t.firstMs) > this.opts.reuseToleranceMs) {
      // The tuple was reused. The tracked flow, if still open, has ended.
      if (t.firstMs > o.firstMs) {
        this.stats.skippedStale++; // an older flow's observation arriving late
        return;
      }
      if (!t.finalized) {
        this.emit(t, t.last!, RECORD_KIND.ended, 0, { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }, now, now);
        this.unpersist(t);
      }
      this.forget(t);
      t = undefined;
    }
    // Only a full listing counts as a sighting for the absence rule (endListing).
    if (listingStart !== null && full && t) t.missed = -1;
    if (!t) {
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
        this.rollupProcess(o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, k, PROTO_NUMBERS[o.proto] ?? (Number(o.proto) || 0), o.family === 'ipv4' ? 4 : 6, o.interface, o.direction, o.attributedBy,
          at, at, o.firstMs, 1, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets);
        return;
      }
      t = { key, hash: flowHash(o), flow: 0, firstMs: o.firstMs, acc: { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }, finalized: false, persisted: false, missed: listingStart !== null && full ? -1 : 0, knownSince: now, last: o, closedMs: null };
      this.track(t);
      if (listingStart !== null) t.knownSince = listingStart - 1; // listed: known before this listing
      this.takeNew(t, o, final, now);
      return;
    }
    const cur = t.last ? (t.last = mergeOwner(t.last, o)) : o;
    if (t.acc === null) {
      t.acc = counts(o);
      return;
    }
    const d = { txBytes: o.txBytes - t.acc.txBytes, rxBytes: o.rxBytes - t.acc.rxBytes, txPackets: o.txPackets - t.acc.txPackets, rxPackets: o.rxPackets - t.acc.rxPackets };
    if (d.txBytes < 0 || d.rxBytes < 0 || d.txPackets < 0 || d.rxPackets < 0) {
      // An observation older than what is recorded (a listing that read the entry before
      // its close was handled): nothing new in it.
      this.stats.skippedStale++;
      return;
    }
    const grew = d.txBytes > 0 || d.rxBytes > 0 || d.txPackets > 0 || d.rxPackets > 0;
    if (t.finalized) {
      if (grew) this.emit(t, cur, t.flow === 0 ? RECORD_KIND.rollup : RECORD_KIND.late, 0, d, now, t.closedMs);
    } else if (final) {
      this.emit(t, cur, RECORD_KIND.closed, 0, d, o.closedMs ?? now, o.closedMs ?? now);
      this.finalize(t, now);
    } else if (grew) {
      this.emit(t, cur, RECORD_KIND.open, 0, d, now, null);
      this.persist(t, o);
    }
    t.acc = counts(o);
  }

  /** A flow history did not know: its first record counts the connection. */
  private takeNew(t: Tracked, o: FlowObservation, final: boolean, now: number): void {
    const c = counts(o);
    if (final) {
      const at = o.closedMs ?? now;
      t.flow = this.emit(t, o, RECORD_KIND.closed, 1, c, at, at); // the token was taken by observe()
      this.finalize(t, now);
    } else {
      t.flow = this.emit(t, o, RECORD_KIND.open, 1, c, now, null);
      t.acc = c;
      this.persist(t, o);
    }
    t.acc = c;
  }

  private finalize(t: Tracked, now: number): void {
    t.finalized = true;
    t.closedMs = t.last?.closedMs ?? now;
    t.last = null;
    this.unpersist(t);
    this.finalized.delete(t.key);
    this.finalized.set(t.key, t);
    if (this.tracked.size > this.opts.maxTracked) {
      for (const old of this.finalized.values()) {
        if (this.tracked.size <= this.opts.maxTracked) break;
        this.watermark = Math.max(this.watermark, old.closedMs ?? now);
        this.forget(old);
        this.stats.evicted++;
      }
    }
  }

  /** The flow's persisted open-flow row (if any) goes. */
  private unpersist(t: Tracked): void {
    if (!t.persisted) return;
    this.out.open.set(t.key, null);
    this.out.forget.push(t.flow);
    t.persisted = false;
  }

  private persist(t: Tracked, o: FlowObservation): void {
    if (t.persisted) this.out.forget.push(t.flow); // the row written before is replaced
    t.persisted = true;
    this.out.open.set(t.key, { key: t.key, flow: t.flow, firstMs: t.firstMs, acc: counts(o), last: t.last ?? o });
  }

  /**
   * The writer's fast path for a close event, fields read in place from the packed row (no
   * observation object): when the flow is not tracked (its tuple's hash is unknown) and the
   * detail budget has no token left, it joins its process's roll-up and true is returned.
   * Otherwise false, and nothing changed: the caller takes the general path (close()).
   */
  closeOverBudget(hash: number, pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    proto: number, family: 4 | 6, iface: string | null, direction: string | null, how: string | null,
    at: number, firstMs: number, tx: number, rx: number, txp: number, rxp: number, now: number): boolean {
    if (this.trackedHashes.has(hash) || this.hasToken(now)) return false;
    return this.rollupProcess(pid, comm, uid, exe, cgroupId, unit, this.owners.get(pid ?? -1), proto, family, iface, direction, how, at, at, firstMs, 1, tx, rx, txp, rxp);
  }

  /** `conns` closes the event loop summed beyond the budget (overbudget.ts): the first at
   * `at`, the last at `endAt`. */
  addRollup(pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    proto: number, family: 4 | 6, iface: string | null, direction: string | null, how: string | null,
    at: number, endAt: number, firstMs: number, conns: number, tx: number, rx: number, txp: number, rxp: number): void {
    this.rollupProcess(pid, comm, uid, exe, cgroupId, unit, this.owners.get(pid ?? -1), proto, family, iface, direction, how, at, endAt, firstMs, conns, tx, rx, txp, rxp);
  }

  /** Adds a flow beyond the budget to its process's roll-up of the minute (exe, cgroup and
   * unit borrowed from a listing of the same process, as enrich() does). Counts it, and
   * moves the watermark past it so that a listing does not write it again (the price: a
   * close the kernel failed to report, older than that, is not recovered from a listing
   * while closes come this fast). */
  private rollupProcess(pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    k: { comm: string | null; exe: string | null; cgroupId: string | null; unit: string | null } | undefined,
    proto: number, family: 4 | 6, iface: string | null, direction: string | null, how: string | null,
    at: number, endAt: number, firstMs: number, conns: number, tx: number, rx: number, txp: number, rxp: number): boolean {
    if (pid !== null && k !== undefined && k.comm === comm) {
      exe ??= k.exe;
      cgroupId ??= k.cgroupId;
      unit ??= k.unit;
    }
    const minute = Math.floor(at / 60_000);
    const pk = pid ?? -1;
    let slots = this.procRollups.get(pk);
    if (slots === undefined) this.procRollups.set(pk, (slots = []));
    let r: FlowRecord | undefined;
    for (let i = 0; i < slots.length; i++) {
      const x = slots[i]!;
      const c = x.rec;
      // Keyed by the process (owner), protocol, family and minute; the path (interface,
      // direction, attribution) is kept while every flow agrees, null once they differ.
      if (x.minute === minute && c.proto === proto && c.family === family && c.comm === comm && c.uid === uid && c.exe === exe && c.cgroupId === cgroupId && c.unit === unit) {
        r = c;
        if (c.interface !== iface) c.interface = null;
        if (c.direction !== direction) c.direction = null;
        if (c.attributedBy !== how) c.attributedBy = null;
        break;
      }
    }
    if (r === undefined) {
      const addr = UNSPECIFIED[family];
      r = {
        id: this.ids.next(at), flow: 0, kind: RECORD_KIND.rollup, conns: 0,
        pid, comm, uid, exe, cgroupId, unit,
        proto, family, localAddr: addr, localPort: null, remoteAddr: addr, remotePort: null,
        interface: iface, direction, attributedBy: how, firstMs, endMs: endAt,
        txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, remoteName: null, attrs: null,
      };
      slots.push({ minute, rec: r });
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

  /** Whether a token is there (refilled to `now`), without taking it. */
  private hasToken(now: number): boolean {
    if (now > this.refilledAt) {
      this.tokens = this.refilledAt === -Infinity ? this.opts.detailBurst : Math.min(this.opts.detailBurst, this.tokens + ((now - this.refilledAt) * this.opts.detailPerSec) / 1000);
      this.refilledAt = now;
    }
    return this.tokens >= 1;
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

  /** Appends a record of `t`, described by observation `o`; returns its id. */
  private emit(t: Tracked, o: FlowObservation, kind: RecordKind, conns: number, c: Counts, at: number, endMs: number | null): number {
    if (kind === RECORD_KIND.rollup) {
      this.rollup(o, c, at, 0);
      return 0;
    }
    const r = this.record(o, kind, conns, c, at, endMs, t.flow);
    this.out.records.push(r);
    return r.id;
  }

  /** Merges a short flow into its process's roll-up for that remote endpoint and minute.
   * The ephemeral port goes: the local one of a connection the process made, the remote one
   * of a connection it accepted (then the local port names the service). */
  private rollup(o: FlowObservation, c: Counts, at: number, conns = 1): void {
    const inbound = o.direction === 'inbound' || o.attributedBy === 'accept';
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

/** The latest observation, keeping owner details an earlier one had and this one lacks
 * (close events carry no executable or cgroup; listings do). */
function mergeOwner(prev: FlowObservation, o: FlowObservation): FlowObservation {
  if (o.exe !== null && o.cgroupId !== null && o.direction !== null && o.interface !== null) return o;
  return {
    ...o,
    exe: o.exe ?? prev.exe,
    cgroupId: o.cgroupId ?? prev.cgroupId,
    unit: o.unit ?? prev.unit ?? null,
    direction: o.direction ?? prev.direction,
    interface: o.interface ?? prev.interface,
    attributedBy: o.attributedBy ?? prev.attributedBy,
    remoteName: o.remoteName ?? prev.remoteName ?? null,
  };
}
