// SPDX-License-Identifier: Apache-2.0
// Scalar keys and values of the array and counter maps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as F from '../../../../../daemon/src/lb/codec/fields.js';

test('scalars: u32 keys, u8 port counts (capped), per-CPU u64 sums and user-space increments', () => {
  assert.deepEqual([...F.u32Key(0x01020304)], [4, 3, 2, 1]);
  assert.equal(F.decodeU32(F.u32Key(4095)), 4095);
  assert.deepEqual([...F.encodeU8(300)], [255]);
  assert.equal(F.decodeU8(F.encodeU8(7)), 7);
  const percpu = Buffer.alloc(16);
  percpu.writeBigUInt64LE(5n, 8);
  F.addU64(percpu, 3);
  assert.deepEqual([percpu.readBigUInt64LE(0), percpu.readBigUInt64LE(8)], [3n, 5n], 'the increment goes to the first CPU slot');
  assert.equal(F.sumU64(percpu), 8);
});
