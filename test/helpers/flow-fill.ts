// SPDX-License-Identifier: Apache-2.0
// Synthetic flows in the real emon_flows layout (daemon/src/monitor/wire.ts: 40-byte
// FLOW_KEY, 136-byte FLOW with the owner at 80, as wire.ts says), written into a daemon's pinned map with
// BPF_MAP_UPDATE_BATCH. Every flow is an open TCP connection (sock_state ESTABLISHED,
// closed_ns 0) last seen now (CLOCK_MONOTONIC, the flows' clock), so the daemon's GC walks them all and
// deletes none. Used by bench/query, bench/footprint and the owner index's integration test. The flows written are added to
// the kernel's flowsCreated counter, as the classifier counts the flows it creates: the
// daemon's flow index trusts the table while its membership counters do not move
// (daemon/src/monitor/ownerindex.ts), so a writer that did not count would go unseen.
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { CLOCK_MONOTONIC, clockNs } from '../../daemon/src/sys/libc.js';
import path from 'node:path';
import { FLOW, FLOW_KEY, OWNER } from '../../daemon/src/monitor/wire.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';

const CHUNK = 65536;
const HOW_CONNECT = 2;
const TCP_ESTABLISHED = 1;

export interface FillSpec {
  /** Flows to insert. */
  count: number;
  /** Owners of all flows but the queried pid's: pids base, base+1, ... base+owners-1. */
  owners: number;
  ownerBase: number;
  /** The pid a query looks for, and how many flows it owns (spread evenly through the map). */
  queriedPid: number;
  queriedFlows: number;
}

/** Owner of flow i (the queried pid's flows are every (count / queriedFlows)-th one). */
export function ownerOf(spec: FillSpec, i: number): number {
  const stride = Math.floor(spec.count / spec.queriedFlows);
  if (spec.queriedFlows > 0 && i % stride === 0 && i / stride < spec.queriedFlows) return spec.queriedPid;
  return spec.ownerBase + (i % spec.owners);
}

/** Writes the key of an IPv4 TCP flow (addresses as 32-bit numbers, host order) at `at`;
 * the rest of the key must be zero. */
export function writeTcp4Key(buf: Buffer, at: number, laddr: number, lport: number, raddr: number, rport: number): void {
  const K = FLOW_KEY.fields;
  buf[at + K.family.offset] = 2; // AF_INET
  buf[at + K.proto.offset] = 6; // TCP
  buf.writeUInt16LE(lport, at + K.lport.offset);
  buf.writeUInt16LE(rport, at + K.rport.offset);
  buf.writeUInt32BE(laddr >>> 0, at + K.laddr.offset);
  buf.writeUInt32BE(raddr >>> 0, at + K.raddr.offset);
}

/** The key fillFlows writes for flow i: 10.x.y.z (unique with the local port) to 198.18.0.2:443. */
function writeFillKey(buf: Buffer, at: number, i: number): void {
  writeTcp4Key(buf, at, 0x0a000000 | (i >>> 16), i & 0xffff, 0xc6120002, 443);
}

/** The key fillFlows writes for flow i, alone. */
export function fillKeyOf(i: number): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  writeFillKey(k, 0, i);
  return k;
}

/** Writes the flows; returns how many the kernel accepted. */
export function fillFlows(mapPath: string, spec: FillSpec): number {
  const map = BpfMap.fromPin(mapPath, 'emon_flows');
  try {
    if (map.keySize !== FLOW_KEY.size || map.valueBytes !== FLOW.size) throw new Error(`emon_flows is ${map.keySize}/${map.valueBytes} bytes, expected ${FLOW_KEY.size}/${FLOW.size}`);
    const keys = Buffer.alloc(CHUNK * FLOW_KEY.size);
    const values = Buffer.alloc(CHUNK * FLOW.size);
    const count = new Uint32Array(1);
    const now = clockNs(CLOCK_MONOTONIC);
    const F = FLOW.fields;
    const O = OWNER.fields;
    const ow = F.owner.offset;
    let written = 0;
    for (let base = 0; base < spec.count; base += CHUNK) {
      const n = Math.min(CHUNK, spec.count - base);
      keys.fill(0);
      values.fill(0);
      for (let j = 0; j < n; j++) {
        const i = base + j;
        const k = j * FLOW_KEY.size;
        writeFillKey(keys, k, i);
        const v = j * FLOW.size;
        values.writeBigUInt64LE(BigInt(1000 + (i % 5000)), v + F.tx_bytes.offset);
        values.writeBigUInt64LE(BigInt(2000 + (i % 7000)), v + F.rx_bytes.offset);
        values.writeBigUInt64LE(10n, v + F.tx_packets.offset);
        values.writeBigUInt64LE(12n, v + F.rx_packets.offset);
        values.writeBigUInt64LE(now - 60_000_000_000n, v + F.first_ns.offset);
        values.writeBigUInt64LE(now, v + F.last_ns.offset);
        values.writeUInt32LE(1, v + F.ifindex.offset);
        values[v + F.tcp_flags_tx.offset] = 0x1a;
        values[v + F.tcp_flags_rx.offset] = 0x1a;
        values[v + F.sock_state.offset] = TCP_ESTABLISHED;
        values[v + F.direction.offset] = 1; // outbound
        const pid = ownerOf(spec, i);
        values.writeUInt32LE(pid, v + ow + O.tgid.offset);
        values.writeUInt32LE(pid, v + ow + O.pid.offset);
        values.writeBigUInt64LE(1n, v + ow + O.cgroup_id.offset);
        values.writeBigUInt64LE(now - 60_000_000_000n, v + ow + O.learned_ns.offset);
        values.write(`bench${pid % 100000}`, v + ow + O.comm.offset, 15, 'latin1');
        values[v + ow + O.how.offset] = HOW_CONNECT;
      }
      count[0] = n;
      const ret = L.bpf_map_update_batch(map.fd, keys, values, count, null);
      written += count[0]!;
      if (ret < 0) throw new Error(`bpf_map_update_batch: ${ret} after ${written} flows`);
    }
    countCreated(path.join(path.dirname(mapPath), MAP.stats), written);
    return written;
  } finally {
    map.close();
  }
}

/** Adds `n` to flowsCreated in the pinned per-CPU emon_stats (CPU 0's slot). */
function countCreated(statsPath: string, n: number): void {
  const stats = BpfMap.fromPin(statsPath, MAP.stats);
  try {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(MONITOR_COUNTERS.indexOf('flowsCreated'));
    const v = stats.lookup(k);
    if (!v) throw new Error('emon_stats has no flowsCreated slot');
    v.writeBigUInt64LE(v.readBigUInt64LE(0) + BigInt(n), 0);
    stats.update(k, v);
  } finally {
    stats.close();
  }
}

/** Entries in the map (one batch walk). */
export function countFlows(mapPath: string): number {
  const map = BpfMap.fromPin(mapPath, 'emon_flows');
  try {
    let n = 0;
    map.forEachChunk(({ count }) => (n += count));
    return n;
  } finally {
    map.close();
  }
}
