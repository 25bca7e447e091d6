// SPDX-License-Identifier: Apache-2.0
// Per-CPU sums add every CPU's slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sumCtr, sumRuleCtr } from '../../../../../daemon/src/lb/codec/counters.js';
import { CTR } from '../../../../../daemon/src/lb/wire.js';

test('per-CPU sums add every CPU slot', () => {
  const two = Buffer.alloc(CTR.size * 2);
  two.writeBigUInt64LE(3n, 0);
  two.writeBigUInt64LE(4n, CTR.size);
  two.writeBigUInt64LE(100n, 8);
  two.writeBigUInt64LE(1n, CTR.size + 32);
  assert.deepEqual(sumCtr(two), { packets: 7, bytes: 100, rpackets: 0, rbytes: 0, flows: 1 });
  const r = Buffer.alloc(32);
  r.writeBigUInt64LE(2n, 0);
  r.writeBigUInt64LE(5n, 16);
  r.writeBigUInt64LE(200n, 24);
  assert.deepEqual(sumRuleCtr(r), { packets: 7, bytes: 200 });
});
