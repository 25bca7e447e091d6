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

/** One flow as last read. */
interface Rec {
  agg: Agg;
  comm: string | null;
  cgroupId: string | null;
  owned: boolean;
  tx: number;
  rx: number;
  txp: number;
  rxp: number;
  /** last_ns (ns; a Number is exact to the tick for 104 days of uptime, more than the stamp's resolution needs). */
  last: number;
  open: boolean;
  /** TCP port pair (lport * 65536 + rport), -1 for other protocols. */
  ports: number;
  /** Remote address: its 4 bytes as a number (IPv4) or 16 as a string. */
  rk: number | string;
}

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
  /** The most recently seen owned flow (its comm and cgroup name the group), when not stale. */
  top: Rec | null;
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

export class FlowMirror {
  private readonly recs = new Map<string, Rec>();
  /** group -> uid -> sums. */
  private readonly aggs = new Map<number, Map<number, Agg>>();
  /** Owners whose latest flow left them: recomputed in one pass over the flows when read. */
  private readonly stale = new Set<Agg>();

  get size(): number {
    return this.recs.size;
  }

  reset(): void {
    this.recs.clear();
    this.aggs.clear();
    this.stale.clear();
  }

  /** The flow `key` as the bytes at (kv, ko) / (vv, vo) have it: replaces what was known. */
  put(key: string, kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array): void {
    const how = vv.getUint8(vo + OW + OWNER.fields.how.offset);
    const owned = ownedByProcess(how);
    const group = owned ? vv.getUint32(vo + OW + OWNER.fields.tgid.offset, true) : how === HOW_KERNEL ? GROUP_KERNEL : GROUP_UNKNOWN;
    const uid = owned ? vv.getUint32(vo + OW + OWNER.fields.uid.offset, true) : NO_UID;
    const old = this.recs.get(key);
    let agg: Agg;
    let comm: string | null;
    let cgroupId: string | null;
    let replaced: Rec | null = null;
    if (old && old.agg.group === group && old.agg.uid === uid) {
      // Same owner: the strings are the same unless the process renamed itself or moved.
      agg = old.agg;
      comm = owned ? commOf(vb, vo, old.comm) : old.comm;
      cgroupId = owned ? cgroupOf(vv, vo, old.cgroupId) : null;
      this.sub(old, false);
      replaced = old;
    } else {
      if (old) this.sub(old, true);
      agg = this.agg(group, uid);
      // The owner's strings when they match (one copy per owner, not per flow).
      const t = agg.top;
      comm = owned ? commOf(vb, vo, t ? t.comm : null) : how === HOW_KERNEL ? KERNEL_COMM : null;
      cgroupId = owned ? cgroupOf(vv, vo, t ? t.cgroupId : null) : null;
    }
    const family = kv.getUint8(ko + FLOW_KEY.fields.family.offset);
    const ra = ko + FLOW_KEY.fields.raddr.offset;
    const proto = kv.getUint8(ko + FLOW_KEY.fields.proto.offset);
    const rec: Rec = {
      agg, comm, cgroupId, owned,
      tx: u64(vv, vo + FLOW.fields.tx_bytes.offset),
      rx: u64(vv, vo + FLOW.fields.rx_bytes.offset),
      txp: u64(vv, vo + FLOW.fields.tx_packets.offset),
      rxp: u64(vv, vo + FLOW.fields.rx_packets.offset),
      last: u64(vv, vo + FLOW.fields.last_ns.offset),
      open: vv.getUint32(vo + FLOW.fields.closed_ns.offset, true) === 0 && vv.getUint32(vo + FLOW.fields.closed_ns.offset + 4, true) === 0,
      ports: proto === 6 ? kv.getUint16(ko + FLOW_KEY.fields.lport.offset, true) * 0x10000 + kv.getUint16(ko + FLOW_KEY.fields.rport.offset, true) : -1,
      rk: old ? old.rk : family === AF_INET ? kv.getUint32(ra) : Buffer.from(kb.buffer, kb.byteOffset + ra, 16).toString('latin1'),
    };
    this.recs.set(key, rec);
    // A flow's last_ns never goes back (a reopen restarts it at now): the new read takes
    // the old one's place as the owner's latest.
    if (replaced && agg.top === replaced) agg.top = rec;
    this.add(rec, () => formatIpAt(kb, ra, family));
  }

  /** The flow is gone (deleted, evicted): its contribution leaves its owner's sums. */
  remove(key: string): void {
    const r = this.recs.get(key);
    if (!r) return;
    this.recs.delete(key);
    this.sub(r, true);
  }

  has(key: string): boolean {
    return this.recs.has(key);
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
          comm: top ? top.comm : a.group === GROUP_KERNEL ? KERNEL_COMM : null,
          cgroupId: top ? top.cgroupId : null,
          flows: a.flows, openFlows: a.openFlows, txBytes: a.txBytes, rxBytes: a.rxBytes, txPackets: a.txPackets, rxPackets: a.rxPackets,
          lastNs: a.lastNs, topNs: top ? top.last : -1, remotes: a.remotes,
        };
      }
    }
  }

  /** Every TCP flow: its key, port pair (lport * 65536 + rport), owner group and uid (nothing allocated per flow). */
  forEachTcpFlow(fn: (key: string, ports: number, group: number, uid: number | null) => void): void {
    for (const [k, r] of this.recs) if (r.ports >= 0) fn(k, r.ports, r.agg.group, r.agg.uid === NO_UID ? null : r.agg.uid);
  }

  private agg(group: number, uid: number): Agg {
    let byUid = this.aggs.get(group);
    if (!byUid) this.aggs.set(group, (byUid = new Map()));
    let a = byUid.get(uid);
    if (!a) {
      a = { group, uid, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, top: null, lastNs: 0, stale: false, remotes: new Map() };
      byUid.set(uid, a);
    }
    return a;
  }

  private add(r: Rec, addr: () => string): void {
    const a = r.agg;
    a.flows++;
    if (r.open) a.openFlows++;
    a.txBytes += r.tx;
    a.rxBytes += r.rx;
    a.txPackets += r.txp;
    a.rxPackets += r.rxp;
    if (!a.stale) {
      if (r.last > a.lastNs) a.lastNs = r.last;
      // Strictly later, as the walk's rule; among equals the holder stays.
      if (r.owned && (a.top === null || r.last > a.top.last)) a.top = r;
    }
    const m = a.remotes.get(r.rk);
    if (m) {
      m.flows++;
      m.txBytes += r.tx;
      m.rxBytes += r.rx;
    } else a.remotes.set(r.rk, { addr: addr(), flows: 1, txBytes: r.tx, rxBytes: r.rx });
  }

  /** Takes `r` out of its owner's sums (`leave`: the flow leaves the owner). */
  private sub(r: Rec, leave: boolean): void {
    const a = r.agg;
    a.flows--;
    if (r.open) a.openFlows--;
    a.txBytes -= r.tx;
    a.rxBytes -= r.rx;
    a.txPackets -= r.txp;
    a.rxPackets -= r.rxp;
    // Leaving: the latest may have to be found again (a replacement keeps its place, see put()).
    if (leave && (a.top === r || r.last >= a.lastNs)) {
      a.stale = true;
      this.stale.add(a);
    }
    const m = a.remotes.get(r.rk);
    if (m) {
      m.flows--;
      m.txBytes -= r.tx;
      m.rxBytes -= r.rx;
      if (m.flows === 0) a.remotes.delete(r.rk);
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
      a.top = null;
      a.lastNs = 0;
    }
    for (const r of this.recs.values()) {
      const a = r.agg;
      if (!a.stale) continue;
      if (r.last > a.lastNs) a.lastNs = r.last;
      if (r.owned && (a.top === null || r.last > a.top.last)) a.top = r;
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
