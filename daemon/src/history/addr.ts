// SPDX-License-Identifier: Apache-2.0
// Addresses as history stores them: IPv4 as a 32-bit number, IPv6 as a 128-bit one. Fixed-
// width columns cost DuckDB's appender one copy per batch where a BLOB costs a native call
// per row, and a prefix becomes a numeric range. Parsed text is cached: a machine talks to
// the same few thousand addresses over and over.
import { formatIp, parseIp } from '../net/ip.js';
import type { Cidr } from './types.js';

export interface StoredAddr {
  v4: number | null;
  v6: bigint | null;
  /** v6 as DuckDB's UHUGEINT bytes hold it, four little-endian 32-bit words (chunk.ts). */
  v6Words?: Uint32Array;
}

const cache = new Map<string, StoredAddr>();
const CACHE_MAX = 65_536;

export function toStored(text: string): StoredAddr {
  let a = cache.get(text);
  if (a) return a;
  const p = parseIp(text);
  if (!p) a = { v4: 0, v6: null };
  else if (p.family === 'ipv4') a = { v4: p.bytes.readUInt32BE(0), v6: null };
  else {
    const b = p.bytes;
    a = { v4: null, v6: (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8), v6Words: Uint32Array.of(b.readUInt32BE(12), b.readUInt32BE(8), b.readUInt32BE(4), b.readUInt32BE(0)) };
  }
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(text, a);
  return a;
}

export function fromStored(v4: unknown, v6: unknown): string {
  const b = Buffer.alloc(16);
  if (v4 !== null && v4 !== undefined) {
    b.writeUInt32BE(Number(v4), 0);
    return formatIp('ipv4', b.subarray(0, 4));
  }
  const n = BigInt(v6 as bigint);
  b.writeBigUInt64BE(n >> 64n, 0);
  b.writeBigUInt64BE(n & 0xffffffffffffffffn, 8);
  return formatIp('ipv6', b);
}

/** The first and last address of a prefix, as stored numbers. */
export function cidrRange(c: Cidr): { lo: number | bigint; hi: number | bigint } {
  if (c.family === 4) {
    const lo = c.bytes.readUInt32BE(0);
    const span = c.prefix === 0 ? 0x1_0000_0000 : 2 ** (32 - c.prefix);
    return { lo, hi: lo + span - 1 };
  }
  const lo = (c.bytes.readBigUInt64BE(0) << 64n) | c.bytes.readBigUInt64BE(8);
  return { lo, hi: lo + (1n << BigInt(128 - c.prefix)) - 1n };
}
