// SPDX-License-Identifier: Apache-2.0
// Garbage collection of the two tables the kernel never evicts. emon_lb_long and emon_lb_nat
// are plain hashes on purpose (an established flow must not lose its pin or its reverse NAT
// entry to LRU pressure), so the daemon deletes what is idle:
//   - entries of backends that no longer exist;
//   - NAT entries whose backend never answered, after `embryonic` (a SYN flood must not hold
//     the NAT ports);
//   - entries idle beyond the protocol's timeout, a flow being idle when neither its forward
//     entries (conn or long-lived, refreshed by client packets) nor its replies were seen.
import type { GcResult } from './api.js';
import { decodeConn, decodeFlowKey, decodeNat, encodeFlowKey, flowKeyProto } from './codec/flows.js';
import { NAT_REPLIED } from './wire.js';
import { entries, type LbMaps } from './kernel.js';

const IPPROTO_TCP = 6;

export interface GcPolicy {
  /** Whether a backend id is in use. */
  live(id: number): boolean;
  /** CLOCK_MONOTONIC ns. */
  now: bigint;
  idle: { tcp: bigint; udp: bigint; embryonic: bigint };
}

export function collect(m: LbMaps, p: GcPolicy): GcResult {
  const { now } = p;
  const within = (last: bigint, limit: bigint) => now <= last || now - last <= limit;
  const fresh = (last: bigint, proto: number) => within(last, proto === IPPROTO_TCP ? p.idle.tcp : p.idle.udp);
  const lastSeen = (key: Buffer): bigint => {
    let last = 0n;
    for (const map of [m.conns, m.long]) {
      const v = map.lookup(key);
      if (v) {
        const l = decodeConn(v).lastNs;
        if (l > last) last = l;
      }
    }
    return last;
  };

  let longDeleted = 0;
  for (const { key, value } of entries(m.long)) {
    const c = decodeConn(value);
    const proto = flowKeyProto(key);
    if (p.live(c.backend) && (fresh(c.lastNs, proto) || fresh(lastSeen(key), proto))) continue;
    if (m.long.delete(key)) longDeleted++;
  }

  let natDeleted = 0;
  for (const { key, value } of entries(m.nat)) {
    const k = decodeFlowKey(key);
    if (!k) continue;
    const n = decodeNat(value, 0, k.saddr.family);
    let keep: boolean;
    if (!p.live(n.backend)) keep = false;
    else if (!(n.flags & NAT_REPLIED)) keep = within(n.lastNs, p.idle.embryonic);
    else keep = fresh(n.lastNs, k.proto) || fresh(lastSeen(encodeFlowKey({ saddr: n.caddr, daddr: n.vaddr, sport: n.cport, dport: n.vport, proto: k.proto })), k.proto);
    if (!keep && m.nat.delete(key)) natDeleted++;
  }
  return { longDeleted, natDeleted };
}
