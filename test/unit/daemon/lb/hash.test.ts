// SPDX-License-Identifier: Apache-2.0
// The flow-hash mirror: jhash_3words vectors from the C implementation (the same code
// lb.bpf.c compiles; test/integration/lb.test.ts also checks the mirror against the kernel's
// actual decisions), and the key encoding the data path hashes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flowHash, jhash3, ringSlot } from '../../../../daemon/src/lb/hash.js';
import { encodeFlowKey } from '../../../../daemon/src/lb/codec/flows.js';
import { FLOW_SEED, RING_SIZE } from '../../../../daemon/src/lb/wire.js';
import { parseIp } from '../../../../daemon/src/net/ip.js';

// [a, b, c, initval, jhash_3words] computed by the C code in lb.bpf.c compiled with gcc.
const VECTORS: Array<[number, number, number, number, number]> = [
  [0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x1b68e557],
  [0x00000001, 0x00000002, 0x00000003, 0x00000000, 0xa46158f5],
  [0xdeadbeef, 0x12345678, 0xffffffff, 0x1b5eed01, 0x57120133],
  [0x0a0012c6, 0x0a0a13c6, 0x901f5bc3, 0x1b5eed07, 0x8013b3b7],
];

test('jhash3 matches the C implementation', () => {
  for (const [a, b, c, iv, want] of VECTORS) assert.equal(jhash3(a, b, c, iv), want);
});

test('flowHash hashes the key words as the data path loads them', () => {
  const key = encodeFlowKey({ saddr: parseIp('198.18.0.10')!, daddr: parseIp('198.19.10.10')!, sport: 50000, dport: 8080, proto: 6 });
  const a = key.readUInt32LE(0);
  const b = key.readUInt32LE(16);
  const c = (key.readUInt16LE(32) | (key.readUInt16LE(34) << 16)) >>> 0;
  assert.equal(flowHash(key), jhash3(a, b, c, FLOW_SEED + 6));
});

test('flow hashes spread evenly over the table', () => {
  const buckets = new Uint32Array(16);
  const n = 64_000;
  for (let i = 0; i < n; i++) {
    const key = encodeFlowKey({ saddr: parseIp(`198.18.${(i >> 8) & 255}.${i & 255}`)!, daddr: parseIp('198.19.10.10')!, sport: 32768 + (i % 28000), dport: 80, proto: 6 });
    const slot = ringSlot(key);
    assert.ok(slot < RING_SIZE);
    buckets[Math.floor((slot * 16) / RING_SIZE)]!++;
  }
  for (const c of buckets) assert.ok(Math.abs(c - n / 16) < (n / 16) * 0.05, `bucket ${c}`);
});

test('IPv6 keys fold all four words', () => {
  const k1 = encodeFlowKey({ saddr: parseIp('fd00:198::1:1')!, daddr: parseIp('fd00:198::ff:10')!, sport: 1, dport: 2, proto: 17 });
  const k2 = encodeFlowKey({ saddr: parseIp('fd00:198::2:1')!, daddr: parseIp('fd00:198::ff:10')!, sport: 1, dport: 2, proto: 17 });
  assert.notEqual(flowHash(k1), flowHash(k2));
});
