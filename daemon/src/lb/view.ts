// SPDX-License-Identifier: Apache-2.0
// The read side of the load balancer, straight from the maps: `lb stats` (per-CPU counters
// summed, table fill and evictions) and `lb flows` (the conn and long-lived tables joined
// with the NAT table, so each flow shows its balancer-side tuple).
import { hostPort } from '../net/ip.js';
import { LB_COUNTERS, LB_DROP_REASONS, type LbCounterName, type LbDropReason, type LbTraffic as Counters, type LbFlow, type LbFlows, type LbStats } from '../contract/lb.js';
import { sumCtr } from './codec/counters.js';
import { sumU64, u32Key } from './codec/fields.js';
import { decodeConn, decodeFlowKey, decodeNat, encodeFlowKey } from './codec/flows.js';
import { CONN_LONG, HOW_NAME, type LbMode } from './wire.js';
import { countEntries, entries, type LbKernelMap, type LbMaps } from './kernel.js';
import { PROTO_NAME, vipText } from './validate.js';

const IPPROTO_TCP = 6;

function u64At(m: LbKernelMap, i: number): number {
  const v = m.lookup(u32Key(i));
  return v ? sumU64(v) : 0;
}

function ctrAt(m: LbKernelMap, i: number): Counters {
  const v = m.lookup(u32Key(i));
  const c = v ? sumCtr(v) : { packets: 0, bytes: 0, rpackets: 0, rbytes: 0, flows: 0 };
  return { packets: c.packets, bytes: c.bytes, replyPackets: c.rpackets, replyBytes: c.rbytes, flows: c.flows };
}

export interface StatsVip {
  text: string;
  slot: number;
  backends: Array<{ text: string; id: number }>;
}

export function readStats(m: LbMaps, vips: StatsVip[]): LbStats {
  const counters = Object.fromEntries(LB_COUNTERS.map((n, i) => [n, u64At(m.stats, i)])) as Record<LbCounterName, number>;
  const drops = Object.fromEntries(LB_DROP_REASONS.map((n, i) => [n, u64At(m.drops, i)])) as Record<LbDropReason, number>;
  const conns = countEntries(m.conns);
  return {
    counters,
    drops,
    tables: {
      conns: {
        entries: conns, capacity: m.conns.maxEntries, inserted: counters.connNew, deleted: counters.connDeleted,
        // Every insert is counted and every user-space delete too: what else left was evicted.
        evicted: Math.max(0, counters.connNew - counters.connDeleted - conns),
      },
      long: { entries: countEntries(m.long), capacity: m.long.maxEntries },
      nat: { entries: countEntries(m.nat), capacity: m.nat.maxEntries },
    },
    vips: vips.map((v) => ({
      vip: v.text,
      ...ctrAt(m.vstats, v.slot),
      backends: v.backends.map((b) => ({ backend: b.text, ...ctrAt(m.bstats, b.id) })),
    })),
  };
}

export interface FlowsQuery {
  /** The VIP a flow's destination names, if it is one to show. */
  vip(text: string): { text: string; mode: LbMode } | undefined;
  backend(id: number): string | undefined;
  /** CLOCK_MONOTONIC ns. */
  now: bigint;
  limit: number;
}

export function readFlows(m: LbMaps, q: FlowsQuery): LbFlows {
  // The balancer side of each nat-mode flow, by its client key.
  const natOf = new Map<string, string>();
  for (const { key, value } of entries(m.nat)) {
    const k = decodeFlowKey(key);
    if (!k) continue;
    const n = decodeNat(value, 0, k.saddr.family);
    const ck = encodeFlowKey({ saddr: n.caddr, daddr: n.vaddr, sport: n.cport, dport: n.vport, proto: k.proto }).toString('hex');
    natOf.set(ck, hostPort(k.daddr, k.dport));
  }
  const rows = new Map<string, { key: Buffer; value: Buffer; longLived: boolean }>();
  for (const e of entries(m.conns)) rows.set(e.key.toString('hex'), { ...e, longLived: false });
  for (const e of entries(m.long)) {
    const have = rows.get(e.key.toString('hex'));
    if (have) have.longLived = true;
    else rows.set(e.key.toString('hex'), { ...e, longLived: true });
  }
  const out: LbFlow[] = [];
  for (const [hex, r] of rows) {
    const k = decodeFlowKey(r.key);
    if (!k) continue;
    const v = q.vip(vipText(k.daddr, k.dport, PROTO_NAME[k.proto] ?? String(k.proto)));
    if (!v) continue;
    const c = decodeConn(r.value);
    const backend = q.backend(c.backend) ?? `#${c.backend}`;
    const natSide = natOf.get(hex) ?? null;
    out.push({
      protocol: k.proto === IPPROTO_TCP ? 'tcp' : 'udp',
      client: hostPort(k.saddr, k.sport),
      vip: v.text,
      backend,
      backendId: c.backend,
      mode: v.mode,
      how: HOW_NAME[c.how] ?? 'maglev',
      tableGeneration: c.gen,
      ageMs: Number((q.now - c.createdNs) / 1_000_000n),
      idleMs: Number((q.now > c.lastNs ? q.now - c.lastNs : 0n) / 1_000_000n),
      longLived: r.longLived || (c.flags & CONN_LONG) !== 0,
      nat: natSide ? { balancer: natSide } : null,
      onBackend: { local: backend, remote: v.mode === 'nat' && natSide ? natSide : hostPort(k.saddr, k.sport) },
    });
  }
  // Most recently active first: a limit keeps the flows an operator is asking about.
  out.sort((a, b) => a.idleMs - b.idleMs || b.ageMs - a.ageMs);
  return { flows: out.slice(0, q.limit), truncated: out.length > q.limit };
}
