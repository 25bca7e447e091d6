// SPDX-License-Identifier: Apache-2.0
// The data path's flow hash (bpf/lb/conn.bpf.h: flow_hash), mirrored so that user space can
// predict and explain a Maglev decision: which table slot a flow lands on, and which
// backend that slot would give it under another table. The BPF program loads the key's
// words in the host's byte order (little-endian on x86-64 and arm64), so the mirror reads
// the encoded key little-endian.
import { field, readUint, type FieldSpec } from '../bpf/layout.js';
import { FLOW_KEY, FLOW_SEED, RING_SIZE } from './wire.js';

const rol32 = (w: number, s: number): number => ((w << s) | (w >>> (32 - s))) >>> 0;

/** Bob Jenkins' jhash_3words, as the kernel's <linux/jhash.h> and lb.bpf.c. */
export function jhash3(a: number, b: number, c: number, initval: number): number {
  const iv = (initval + 0xdeadbeef + (3 << 2)) >>> 0;
  a = (a + iv) >>> 0;
  b = (b + iv) >>> 0;
  c = (c + iv) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol32(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol32(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol32(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol32(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol32(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol32(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol32(b, 24)) >>> 0;
  return c;
}

const WORDS = [0, 4, 8, 12].map((o) => field(o, 4));

/** XOR of an address field's four 32-bit words. */
function fold(key: Buffer, addr: FieldSpec): number {
  return WORDS.reduce((x, w) => x ^ readUint(key, w, addr.offset), 0) >>> 0;
}

/** flow_hash() over an encoded emon_lb_flow_key. */
export function flowHash(key: Buffer, seed = FLOW_SEED): number {
  if (key.length < FLOW_KEY.size) throw new RangeError(`flow key must be ${FLOW_KEY.size} bytes`);
  const F = FLOW_KEY.fields;
  // The two network-order ports as the data path loads them: one host-order word, sport low.
  const ports = (readUint(key, F.sport) | (readUint(key, F.dport) << 16)) >>> 0;
  return jhash3(fold(key, F.saddr), fold(key, F.daddr), ports, (seed + readUint(key, F.proto)) >>> 0);
}

/** The Maglev table slot a flow uses. */
export function ringSlot(key: Buffer, size = RING_SIZE): number {
  return flowHash(key) % size;
}
