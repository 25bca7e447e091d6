// SPDX-License-Identifier: Apache-2.0
// The flows table in ClickHouse (docs/export.md, "Schema"). One column per FlowRecord
// field, in types every server since 18.16 knows. Avoided for the old servers, each of
// which 18.16 refuses: LowCardinality (experimental there), TTL (19.6), column CODECs
// (19.1), the IPv4/IPv6 types (19.x), DateTime64 (20.1), `ON CLUSTER` without ZooKeeper.
import type { FlowRecord } from './api-types.js';

export const COLUMNS: ReadonlyArray<readonly [keyof FlowRecord, string, string]> = [
  ['at', 'DateTime', 'when the record was made: the close, or the snapshot of an open flow'],
  ['host', 'String', 'host name'],
  ['machine_id', 'String', '/etc/machine-id'],
  ['kind', "Enum8('close' = 1, 'update' = 2)", 'close: the last record of a flow; update: an open flow\'s bytes since its previous record'],
  ['first_seen_at', 'DateTime', 'the flow\'s first packet (or connect/accept)'],
  ['duration_ms', 'UInt64', 'first to last packet (to the close for close records)'],
  ['protocol', 'String', 'tcp, udp, icmp, icmpv6, sctp, udplite, or the IP protocol number'],
  ['family', 'String', 'ipv4 or ipv6'],
  ['local_addr', 'String', ''],
  ['local_port', 'UInt16', '0 for ICMP'],
  ['remote_addr', 'String', ''],
  ['remote_port', 'UInt16', '0 for ICMP'],
  ['direction', 'String', 'outbound, inbound or unknown'],
  ['interface', 'String', 'the monitored interface that carried it ("" if none)'],
  ['pid', 'UInt32', 'owner process (0: unknown)'],
  ['comm', 'String', 'owner command ("" unknown, "[kernel]")'],
  ['uid', 'UInt32', 'owner uid (4294967295: unknown)'],
  ['unit', 'String', 'owner systemd unit ("" unknown)'],
  ['container', 'String', 'owner container ("" unknown)'],
  ['attributed_by', 'String', 'how the owner was learned'],
  ['tx_bytes', 'UInt64', 'IP-layer bytes sent since the previous record'],
  ['rx_bytes', 'UInt64', 'IP-layer bytes received since the previous record'],
  ['tx_packets', 'UInt64', ''],
  ['rx_packets', 'UInt64', ''],
  ['payload_sent', 'UInt64', 'TCP payload bytes the socket sent (close records)'],
  ['payload_received', 'UInt64', 'TCP payload bytes the socket received (close records)'],
];

export interface SchemaNames {
  database: string;
  /** The table inserted into (the Distributed one with a cluster). */
  table: string;
  /** "" for a single server. */
  cluster: string;
}

const q = (id: string) => `\`${id}\``;

/** Where rows go and where they are stored (the same table without a cluster). */
export function tableNames(n: SchemaNames): { insert: string; local: string } {
  return { insert: `${q(n.database)}.${q(n.table)}`, local: `${q(n.database)}.${q(n.cluster ? `${n.table}_local` : n.table)}` };
}

/**
 * The statements that create what is missing, in order. Daily partitions: retention on
 * 18.16 is `ALTER TABLE ... DROP PARTITION` (no TTL before 19.6). Sorted by host then
 * time (`at`): a host's rows for an hour are one contiguous range.
 */
export function createStatements(n: SchemaNames): string[] {
  const { insert, local } = tableNames(n);
  const cols = COLUMNS.map(([name, type]) => `  ${q(name)} ${type}`).join(',\n');
  const out = [
    `CREATE DATABASE IF NOT EXISTS ${q(n.database)}`,
    `CREATE TABLE IF NOT EXISTS ${local}\n(\n${cols}\n)\nENGINE = MergeTree()\nPARTITION BY toYYYYMMDD(at)\nORDER BY (host, at)`,
  ];
  // Sharded by machine: a host's rows stay on one shard, so per-host queries read one.
  if (n.cluster) out.push(`CREATE TABLE IF NOT EXISTS ${insert} AS ${local}\nENGINE = Distributed(${q(n.cluster)}, ${q(n.database)}, ${q(`${n.table}_local`)}, cityHash64(machine_id))`);
  return out;
}

/** Columns the exporter writes that an existing table lacks (an older schema). */
export function missingColumnsQuery(n: SchemaNames): string {
  const t = n.table;
  const names = COLUMNS.map(([c]) => `'${c}'`).join(', ');
  return `SELECT name FROM system.columns WHERE database = '${n.database}' AND table = '${t}' AND name IN (${names}) FORMAT TSV`;
}
