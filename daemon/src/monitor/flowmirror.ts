// SPDX-License-Identifier: Apache-2.0
// The flow table's per-owner totals kept in user space (issue 17): per flow, the counts it
// had when last read; per owner (pid, uid), the sums of its flows' counts, open flows and
// remote addresses. Filled by a walk of emon_flows, then kept by re-reading only the flows
// the kernel reports changed (dirty.ts): each read replaces the flow's old contribution
// with its new one, so `processes.list` and `top` cost what changed, not the table's size.
// flows.ts decides when the copy is the table (the same rules as the owner index).
//
// Written here rather than taken from a library: a Map of records and sums over them,
// specific to the flow value's bytes.
import { AF_INET, formatIpAt } from '../net/ip.js';
import { KERNEL_COMM } from '../contract/common.js';
import { cString, FLOW, FLOW_KEY, HOW_KERNEL, OWNER, ownedByProcess } from './wire.js';

/** Group of flows without a process: the kernel's, and those of no known owner. */
export const GROUP_KERNEL = -2;
export const GROUP_UNKNOWN = -1;
/** uid of a group without a process. */
const NO_UID = -1;

export interface MirrorRemote {
  addr: string;
  flows: number;
  txBytes: number;
  rxBytes: number;
}

/** Flow flags in `FlowMirror.flags`. */
const F_OWNED = 1;
const F_OPEN = 2;
/** The remote address is IPv6 (its 16 bytes as a string in `rk6`). */
const F_V6 = 4;
/** First capacity of the per-flow columns (doubled when full). */
const MIN_SLOTS = 1024;

/** The flows of one (owner, uid). */
export interface Agg {
  readonly group: number;
  readonly uid: number;
  flows: number;
  openFlows: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  /** Slot of the most recently seen owned flow (its comm and cgroup name the group), -1:
   * none; when stale, only a hint (the slot may hold another flow by now). */
  top: number;
  /** Highest last_ns of any member, when not stale. */
  lastNs: number;
  /** A member that held `top` or `lastNs` left: recomputed when read. */
  stale: boolean;
  readonly remotes: Map<number | string, MirrorRemote>;
}

/** What a query reads of one (owner, uid). */
export interface AggView {
  group: number;
  uid: number | null;
  comm: string | null;
  cgroupId: string | null;
  flows: number;
  openFlows: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  lastNs: number;
  /** last_ns of the flow `comm`/`cgroupId` came from (-1: none owned). */
  topNs: number;
  remotes: Map<number | string, MirrorRemote>;
}

function u64(v: DataView, o: number): number {
  return v.getUint32(o, true) + v.getUint32(o + 4, true) * 0x1_0000_0000;
}

const OW = FLOW.fields.owner.offset;

/**
 * The copy is held in columns (one slot per flow: typed arrays for the numbers, arrays for
 * the few shared references) rather than an object per flow: 100k flows were 100k objects
 * plus a boxed double each (last_ns), which every full garbage collection marks (issue 17,
 * `top` at 100k flows: GC was the largest cost in its profile).
 */
export class FlowMirror {
  /** Flow key -> slot. */
  private readonly slots = new Map<string, number>();
  private free: number[] = [];
  private cap = 0;
  private tx = new Float64Array(0);
  private rx = new Float64Array(0);
  private txp = new Float64Array(0);
  private rxp = new Float64Array(0);
  /** last_ns (ns; a Number is exact to the tick for 104 days of uptime, more than the stamp's resolution needs). */
  private last = new Float64Array(0);
  private flags = new Uint8Array(0);
  /** Remote IPv4 address as a number (F_V6 clear). */
  private rk4 = new Float64Array(0);
  private rk6: Array<string | undefined> = [];
  private aggOf: Array<Agg | undefined> = [];
  private comm: Array<string | null> = [];
  private cgroup: Array<string | null> = [];
  /** group -> uid -> sums. */
  private readonly aggs = new Map<number, Map<number, Agg>>();
  /** Owners whose latest flow left them: recomputed in one pass over the flows when read. */
  private readonly stale = new Set<Agg>();

  /** Moves with every change of the copy (a read, a removal, a reset): an answer built
   * from it stays right while this and its other inputs stay (flows.ts processes()). */
  version = 0;

  get size(): number {
    return this.slots.size;
  }

  reset(): void {
    this.version++;
    this.slots.clear();
    this.aggs.clear();
    this.stale.clear();
    this.free = [];
    this.rk6 = [];
    this.aggOf = [];
    this.comm = [];
    this.cgroup = [];
    this.cap = 0;
    this.grow(0);
  }

  /** The flow `key` as the bytes at (kv, ko) / (vv, vo) have it: replaces what was known. */
  put(key: string, kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array): void {
    this.version++;
    const how = vv.getUint8(vo + OW + OWNER.fields.how.offset);
    const owned = ownedByProcess(how);
    const group = owned ? vv.getUint32(vo + OW + OWNER.fields.tgid.offset, true) : how === HOW_KERNEL ? GROUP_KERNEL : GROUP_UNKNOWN;
    const uid = owned ? vv.getUint32(vo + OW + OWNER.fields.uid.offset, true) : NO_UID;
    let s = this.slots.get(key);
    let agg: Agg;
    let comm: string | null;
    let cgroupId: string | null;
    if (s !== undefined && this.aggOf[s]!.group === group && this.aggOf[s]!.uid === uid) {
      // Same owner: the strings are the same unless the process renamed itself or moved.
      // The slot stays, so does its place as the owner's latest (a flow's last_ns never
      // goes back; a reopen restarts it at now).
      agg = this.aggOf[s]!;
      comm = owned ? commOf(vb, vo, this.comm[s] ?? null) : this.comm[s] ?? null;
      cgroupId = owned ? cgroupOf(vv, vo, this.cgroup[s] ?? null) : null;
      this.sub(s, false);
    } else {
      if (s !== undefined) this.sub(s, true);
      agg = this.agg(group, uid);
      // The owner's strings when they match (one copy per owner, not per flow).
      const t = agg.top;
      comm = owned ? commOf(vb, vo, t >= 0 ? this.comm[t] ?? null : null) : how === HOW_KERNEL ? KERNEL_COMM : null;
      cgroupId = owned ? cgroupOf(vv, vo, t >= 0 ? this.cgroup[t] ?? null : null) : null;
    }
    const family = kv.getUint8(ko + FLOW_KEY.fields.family.offset);
    const ra = ko + FLOW_KEY.fields.raddr.offset;
    if (s === undefined) {
      s = this.alloc();
      this.slots.set(key, s);
      // The key's remote address, kept with the slot while the key is.
      if (family === AF_INET) {
        this.rk4[s] = kv.getUint32(ra);
        this.rk6[s] = undefined;
      } else this.rk6[s] = Buffer.from(kb.buffer, kb.byteOffset + ra, 16).toString('latin1');
    }
    this.aggOf[s] = agg;
    this.comm[s] = comm;
    this.cgroup[s] = cgroupId;
    this.tx[s] = u64(vv, vo + FLOW.fields.tx_bytes.offset);
    this.rx[s] = u64(vv, vo + FLOW.fields.rx_bytes.offset);
    this.txp[s] = u64(vv, vo + FLOW.fields.tx_packets.offset);
    this.rxp[s] = u64(vv, vo + FLOW.fields.rx_packets.offset);
    this.last[s] = u64(vv, vo + FLOW.fields.last_ns.offset);
    const open = vv.getUint32(vo + FLOW.fields.closed_ns.offset, true) === 0 && vv.getUint32(vo + FLOW.fields.closed_ns.offset + 4, true) === 0;
    this.flags[s] = (owned ? F_OWNED : 0) | (open ? F_OPEN : 0) | (this.rk6[s] !== undefined ? F_V6 : 0);
    this.add(s, () => formatIpAt(kb, ra, family));
  }

  /** The flow is gone (deleted, evicted): its contribution leaves its owner's sums. */
  remove(key: string): void {
    const s = this.slots.get(key);
    if (s === undefined) return;
    this.version++;
    this.slots.delete(key);
    this.sub(s, true);
    this.aggOf[s] = undefined;
    this.comm[s] = null;
    this.cgroup[s] = null;
    this.rk6[s] = undefined;
    this.free.push(s);
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** The owner group and uid (null: none) of flow `key`, when kept. */
  ownerOf(key: string): { group: number; uid: number | null } | undefined {
    const s = this.slots.get(key);
    if (s === undefined) return undefined;
    const a = this.aggOf[s]!;
    return { group: a.group, uid: a.uid === NO_UID ? null : a.uid };
  }

  /** Every (owner, uid) with at least one flow. */
  *views(uid?: number): Generator<AggView> {
    if (this.stale.size) this.recompute();
    for (const byUid of this.aggs.values()) {
      for (const a of byUid.values()) {
        if (uid !== undefined && a.uid !== uid) continue;
        const top = a.top;
        yield {
          group: a.group, uid: a.uid === NO_UID ? null : a.uid,
          comm: top >= 0 ? this.comm[top] ?? null : a.group === GROUP_KERNEL ? KERNEL_COMM : null,
          cgroupId: top >= 0 ? this.cgroup[top] ?? null : null,
          flows: a.flows, openFlows: a.openFlows, txBytes: a.txBytes, rxBytes: a.rxBytes, txPackets: a.txPackets, rxPackets: a.rxPackets,
          lastNs: a.lastNs, topNs: top >= 0 ? this.last[top]! : -1, remotes: a.remotes,
        };
      }
    }
  }

  private alloc(): number {
    const s = this.free.pop();
    if (s !== undefined) return s;
    const n = this.slots.size;
    if (n >= this.cap) this.grow(Math.max(MIN_SLOTS, this.cap * 2));
    return n;
  }

  /** Typed columns of `cap` slots, the slots in use copied. The arrays of references grow
   * by appending (slots are handed out in order), so they stay packed. */
  private grow(cap: number): void {
    const n = Math.min(cap, this.cap);
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, n));
      return b;
    };
    this.tx = f64(this.tx);
    this.rx = f64(this.rx);
    this.txp = f64(this.txp);
    this.rxp = f64(this.rxp);
    this.last = f64(this.last);
    this.rk4 = f64(this.rk4);
    const fl = new Uint8Array(cap);
    fl.set(this.flags.subarray(0, n));
    this.flags = fl;
    this.cap = cap;
  }

  private agg(group: number, uid: number): Agg {
    let byUid = this.aggs.get(group);
    if (!byUid) this.aggs.set(group, (byUid = new Map()));
    let a = byUid.get(uid);
    if (!a) {
      a = { group, uid, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, top: -1, lastNs: 0, stale: false, remotes: new Map() };
      byUid.set(uid, a);
    }
    return a;
  }

  private rkOf(s: number): number | string {
    return this.flags[s]! & F_V6 ? this.rk6[s]! : this.rk4[s]!;
  }

  private add(s: number, addr: () => string): void {
    const a = this.aggOf[s]!;
    const tx = this.tx[s]!;
    const rx = this.rx[s]!;
    const last = this.last[s]!;
    a.flows++;
    if (this.flags[s]! & F_OPEN) a.openFlows++;
    a.txBytes += tx;
    a.rxBytes += rx;
    a.txPackets += this.txp[s]!;
    a.rxPackets += this.rxp[s]!;
    if (!a.stale) {
      if (last > a.lastNs) a.lastNs = last;
      // Strictly later, as the walk's rule; among equals the holder stays.
      if (this.flags[s]! & F_OWNED && (a.top < 0 || last > this.last[a.top]!)) a.top = s;
    }
    const rk = this.rkOf(s);
    const m = a.remotes.get(rk);
    if (m) {
      m.flows++;
      m.txBytes += tx;
      m.rxBytes += rx;
    } else a.remotes.set(rk, { addr: addr(), flows: 1, txBytes: tx, rxBytes: rx });
  }

  /** Takes slot `s` out of its owner's sums (`leave`: the flow leaves the owner). */
  private sub(s: number, leave: boolean): void {
    const a = this.aggOf[s]!;
    const tx = this.tx[s]!;
    const rx = this.rx[s]!;
    a.flows--;
    if (this.flags[s]! & F_OPEN) a.openFlows--;
    a.txBytes -= tx;
    a.rxBytes -= rx;
    a.txPackets -= this.txp[s]!;
    a.rxPackets -= this.rxp[s]!;
    // Leaving: the latest may have to be found again (a replacement keeps its slot, see put()).
    if (leave && (a.top === s || this.last[s]! >= a.lastNs)) {
      a.stale = true;
      this.stale.add(a);
    }
    const rk = this.rkOf(s);
    const m = a.remotes.get(rk);
    if (m) {
      m.flows--;
      m.txBytes -= tx;
      m.rxBytes -= rx;
      if (m.flows === 0) a.remotes.delete(rk);
    }
    if (!leave || a.flows > 0) return;
    const byUid = this.aggs.get(a.group)!;
    byUid.delete(a.uid);
    if (byUid.size === 0) this.aggs.delete(a.group);
    this.stale.delete(a);
  }

  /**
   * The latest flow and last_ns of the owners whose latest flow left them, in one pass over
   * every flow: rare (the latest flow of an owner is seldom the one collected or moved), and
   * cheaper in memory than a member set per owner.
   */
  private recompute(): void {
    for (const a of this.stale) {
      a.top = -1;
      a.lastNs = 0;
    }
    for (const s of this.slots.values()) {
      const a = this.aggOf[s]!;
      if (!a.stale) continue;
      const last = this.last[s]!;
      if (last > a.lastNs) a.lastNs = last;
      if (this.flags[s]! & F_OWNED && (a.top < 0 || last > this.last[a.top]!)) a.top = s;
    }
    for (const a of this.stale) a.stale = false;
    this.stale.clear();
  }
}

/** The comm in the value, reusing `prev` when the bytes spell it (no string built per read). */
function commOf(vb: Uint8Array, vo: number, prev: string | null): string {
  const o = vo + OW + OWNER.fields.comm.offset;
  if (prev !== null && prev.length < 16) {
    let same = vb[o + prev.length] === 0;
    for (let i = 0; same && i < prev.length; i++) same = vb[o + i] === prev.charCodeAt(i);
    if (same) return prev;
  }
  return cString(vb, o, 16);
}

function cgroupOf(vv: DataView, vo: number, prev: string | null): string {
  const id = vv.getBigUint64(vo + OW + OWNER.fields.cgroup_id.offset, true);
  return prev !== null && BigInt(prev) === id ? prev : id.toString();
}
