// SPDX-License-Identifier: Apache-2.0
// emon_owner_ports (bpf/monitor/maps.bpf.h): a bit per local port, set once emon_tuples or
// emon_binds held an owner for it. The classifier looks those two tables up only for a
// marked port, so every writer of either marks the port first: the kernel's accept,
// post_bind and scan programs in the map's first OWNER_PORT_WORDS words (atomic OR), and the
// daemon in the next OWNER_PORT_WORDS, which nothing else writes (a user-space update rewrites
// a whole word: done on a kernel word it could undo a mark set meanwhile). The daemon marks
// in its /proc scan and, at every start, the ports of every entry already in both tables
// (markFromOwnerTables: entries an older build wrote before the map existed would otherwise
// go unseen). Marks are never cleared: a stale one costs the lookups it would have saved.
import type { BpfMap } from '../bpf/maps.js';
import { ENDPOINT, FLOW_KEY, OWNER_PORT_WORDS } from './wire.js';

/** Marks local ports (host order, as emon_endpoint.port and emon_flow_key.lport hold them):
 * one read and one write per word (64 ports) that gains a mark. */
export function markOwnerPorts(ports: BpfMap, list: Iterable<number>): void {
  const words = new Map<number, bigint>();
  for (const p of list) {
    const port = p & 0xffff;
    words.set(port >>> 6, (words.get(port >>> 6) ?? 0n) | (1n << BigInt(port & 63)));
  }
  const k = Buffer.alloc(4);
  const v = Buffer.alloc(8);
  for (const [i, bits] of words) {
    k.writeUInt32LE(OWNER_PORT_WORDS + i, 0);
    const old = ports.lookup(k, v) ? v.readBigUInt64LE(0) : 0n;
    if ((old & bits) === bits) continue;
    v.writeBigUInt64LE(old | bits, 0);
    ports.update(k, v);
  }
}

/** Marks the local port of every emon_tuples and emon_binds entry; returns how many distinct
 * ports that is. */
export function markFromOwnerTables(tables: { tuples: BpfMap; binds: BpfMap }, ports: BpfMap): number {
  const seen = new Set<number>();
  const collect = (map: BpfMap, size: number, at: number) =>
    map.forEachChunk(({ keys, count }) => {
      for (let i = 0; i < count; i++) seen.add(keys.readUInt16LE(i * size + at));
    });
  collect(tables.tuples, FLOW_KEY.size, FLOW_KEY.fields.lport.offset);
  collect(tables.binds, ENDPOINT.size, ENDPOINT.fields.port.offset);
  markOwnerPorts(ports, seen);
  return seen.size;
}
