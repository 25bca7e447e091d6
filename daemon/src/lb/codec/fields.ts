// SPDX-License-Identifier: Apache-2.0
// The pieces the LB's codecs share: address and C-string fields, and the scalar keys and
// values (__u8, __u32, __u64) of the array and counter maps. Everything goes through a
// FieldSpec (offset and width) from wire.ts, like the structs.
import { field, fieldBytes, readU64, readUint, writeU64, writeUint, type FieldSpec } from '../../bpf/layout.js';
import { AF_INET, AF_INET6, type Family, type IpAddr } from '../../net/ip.js';
import { U32, U64, U8 } from '../wire.js';

export const afOf = (family: Family): number => (family === 'ipv4' ? AF_INET : AF_INET6);
const addrLen = (family: Family): number => (family === 'ipv4' ? 4 : 16);

/** An address field: IPv4 in its first 4 bytes, the rest zero. */
export function readAddr(b: Buffer, f: FieldSpec, family: Family, base = 0): IpAddr {
  const bytes = Buffer.alloc(16);
  fieldBytes(b, f, base).copy(bytes, 0, 0, Math.min(addrLen(family), f.size));
  return { family, bytes };
}

export function writeAddr(b: Buffer, f: FieldSpec, a: IpAddr, base = 0): void {
  a.bytes.copy(fieldBytes(b, f, base), 0, 0, Math.min(addrLen(a.family), f.size));
}

/** A NUL-terminated char array field. */
export function readCString(b: Buffer, f: FieldSpec, enc: BufferEncoding, base = 0): string {
  const s = fieldBytes(b, f, base);
  const end = s.indexOf(0);
  return s.toString(enc, 0, end < 0 ? s.length : end);
}

/** Writes at most size - 1 characters (the terminator stays). */
export function writeCString(b: Buffer, f: FieldSpec, s: string, enc: BufferEncoding, base = 0): void {
  fieldBytes(b, f, base).write(s.slice(0, f.size - 1), enc);
}

// A scalar key or value is a struct of one field at offset 0.
const U8_AT = field(0, U8.size);
const U32_AT = field(0, U32.size);
const U64_AT = field(0, U64.size);

/** An array map's index (__u32 key). */
export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(U32.size);
  writeUint(b, U32_AT, n);
  return b;
}

/** A __u32 key or value (backend id, destination port, rule id). */
export function decodeU32(b: Buffer): number {
  return readUint(b, U32_AT);
}

/** emon_lb_vports value: VIPs on a destination port (at most 255). */
export function encodeU8(n: number): Buffer {
  const b = Buffer.alloc(U8.size);
  writeUint(b, U8_AT, Math.min(n, 255));
  return b;
}

export function decodeU8(b: Buffer): number {
  return readUint(b, U8_AT);
}

/** Sums one per-CPU __u64 value (all CPUs' slots back to back). */
export function sumU64(b: Buffer): number {
  let s = 0n;
  for (let off = 0; off + U64.size <= b.length; off += U64.size) s += readU64(b, U64_AT, off);
  return Number(s);
}

/** Adds `n` to the first CPU's slot of a per-CPU __u64 value (in place). */
export function addU64(b: Buffer, n: number): void {
  writeU64(b, U64_AT, readU64(b, U64_AT) + BigInt(n));
}
