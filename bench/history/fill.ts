// SPDX-License-Identifier: Apache-2.0
// Millions of closed flows for the query runs, generated inside each database by one SQL
// statement per million rows (a hash of the row number gives process, remote, ports and
// sizes, with a skew towards a few processes and remotes): loading 10M flows through the
// write path would take hours on this shared box, and the write path has its own runs.
// The same formulas in both dialects: SQLite and DuckDB hold the same flows.
import { COMMS, USERS } from './gen.js';

export type Dialect = 'sqlite' | 'duckdb';

const div = (d: Dialect, a: string, b: string | number) => (d === 'duckdb' ? `((${a}) // (${b}))` : `((${a}) / (${b}))`);
const FIRST_OCTETS = [23, 34, 52, 104, 142, 151, 172, 185];
const PORTS = [443, 443, 443, 443, 80, 53, 22, 5432, 8080, 993, 123, 3478];

/** Columns of flow i of n spread over the day starting at day0 (ms). `store`: the store's
 * column types (names for interface, direction, attribution) instead of the bench's codes. */
export function flowColumns(d: Dialect, n: number, day0: number, store: boolean): Record<string, string> {
  const t = `(${day0} + ${div(d, `i * 86400000`, n)})`;
  const h1 = '((i * 2654435761) % 4294967296)';
  const h2 = '((i * 2246822519 + 3266489917) % 4294967296)';
  const h3 = '((i * 3266489917 + 668265263) % 4294967296)';
  const ridx = div(d, `(${h2} % 5000) * (${h2} % 5000)`, 5000);
  const v6 = `(${h3} % 5 = 0)`;
  const octet = `CASE ${ridx} % 8 ${FIRST_OCTETS.map((o, k) => `WHEN ${k} THEN ${o}`).join(' ')} END`;
  const tx = `(156 + ${div(d, `(${h3} % 200000) * (${h3} % 200000)`, 200000)})`;
  const rx = `(156 + ${div(d, `(${h1} % 5000000) * (${h2} % 1000)`, 1000)})`;
  return {
    id: `(${t} * 1024)`,
    flow: `(${t} * 1024)`,
    kind: '1',
    conns: '1',
    proc: `(1 + ${div(d, `(${h1} % 600) * (${h1} % 600)`, 600)})`,
    proto: `CASE WHEN ${h3} % 10 = 0 THEN 17 ELSE 6 END`,
    family: `CASE WHEN ${v6} THEN 6 ELSE 4 END`,
    laddr: `CASE WHEN ${v6} THEN unhex('fd000198000000000000000000000001') ELSE unhex('c6120001') END`,
    lport: `(32768 + ${h1} % 28232)`,
    raddr: `CASE WHEN ${v6} THEN unhex(printf('2a001450%04x%04x0000000000000000', ${div(d, ridx, 256)}, ${ridx} % 256)) ELSE unhex(printf('%02x%02x%02x%02x', ${octet}, ${div(d, ridx, 256)} % 256, ${ridx} % 256, (${ridx} * 37) % 256)) END`,
    rport: `CASE ${h2} % 12 ${PORTS.map((p, k) => `WHEN ${k} THEN ${p}`).join(' ')} END`,
    // The store: label ids (STORE_LABELS), addresses as numbers.
    iface: store ? `CASE WHEN ${h1} % 20 = 0 THEN 1 ELSE 0 END` : `CASE WHEN ${h1} % 20 = 0 THEN 2 ELSE 1 END`,
    dir: store ? '2' : '1',
    how: store ? '3' : '2',
    laddr4: `CASE WHEN ${v6} THEN NULL ELSE ${0xc6120001} END`,
    laddr6: `CASE WHEN ${v6} THEN CAST('${0xfd000198000000000000000000000001n}' AS UHUGEINT) ELSE NULL END`,
    raddr4: `CASE WHEN ${v6} THEN NULL ELSE (CAST(${octet} AS BIGINT) * 16777216 + (${div(d, ridx, 256)} % 256) * 65536 + (${ridx} % 256) * 256 + (${ridx} * 37) % 256) END`,
    raddr6: `CASE WHEN ${v6} THEN CAST('${0x2a001450n << 96n}' AS UHUGEINT) + CAST(${div(d, ridx, 256)} AS UHUGEINT) * CAST('${1n << 80n}' AS UHUGEINT) + CAST(${ridx} % 256 AS UHUGEINT) * CAST('${1n << 64n}' AS UHUGEINT) ELSE NULL END`,
    first_ms: `(${t} - ${h2} % 60000)`,
    end_ms: t,
    tx_bytes: tx,
    rx_bytes: rx,
    tx_packets: `(3 + ${div(d, tx, 1000)})`,
    rx_packets: `(3 + ${div(d, rx, 1400)})`,
    name: 'NULL',
    attrs: 'NULL',
  };
}

/** Rows i in [from, to) as a SELECT, columns in `order`. */
export function flowSelect(d: Dialect, order: string[], from: number, to: number, n: number, day0: number, store: boolean): string {
  const cols = flowColumns(d, n, day0, store);
  const list = order.map((c) => cols[c] ?? (() => { throw new Error(`no generator for column ${c}`); })()).join(', ');
  if (d === 'duckdb') return `SELECT ${list} FROM range(${from}, ${to}) t(i)`;
  return `WITH RECURSIVE s(i) AS (SELECT ${from} UNION ALL SELECT i + 1 FROM s WHERE i < ${to - 1}) SELECT ${list} FROM s`;
}

/** The store's labels table for the rows above. */
export const STORE_LABELS: Array<[number, string]> = [[0, 'eth0'], [1, 'wlan0'], [2, 'outbound'], [3, 'connect']];

/** The 600 processes the rows point to (ids 1..600). */
export function procRows(): Array<{ id: number; pid: number; comm: string; uid: number; exe: string; cgroupId: string }> {
  return Array.from({ length: 600 }, (_, k) => {
    const comm = COMMS[(k * 7) % COMMS.length]!;
    return { id: k + 1, pid: 1000 + 7 * k, comm, uid: USERS[k % USERS.length]!, exe: `/usr/bin/${comm}`, cgroupId: String(4000 + (k % 97)) };
  });
}
