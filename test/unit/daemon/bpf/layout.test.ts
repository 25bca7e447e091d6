// SPDX-License-Identifier: Apache-2.0
// Field access through a spec: the width comes from the spec, byte order from the call,
// and a field of the wrong width is refused with its size and offset named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { field, fieldBytes, readU64, readUint, readUintBE, writeU64, writeUint, writeUintBE } from '../../../../daemon/src/bpf/layout.js';

test('reads and writes take offset and width from the field', () => {
  const b = Buffer.alloc(24);
  writeUint(b, field(1, 1), 0xab);
  writeUint(b, field(2, 2), 0x1234);
  writeUint(b, field(4, 4), 0xdeadbeef);
  writeU64(b, field(8, 8), 0x0102030405060708n);
  writeUintBE(b, field(16, 2), 0x1f90);
  writeUintBE(b, field(20, 4), 0xc6120001, 0);
  assert.equal(b.toString('hex'), '00ab3412efbeadde' + '0807060504030201' + '1f900000c6120001');
  assert.deepEqual([readUint(b, field(1, 1)), readUint(b, field(2, 2)), readUint(b, field(4, 4))], [0xab, 0x1234, 0xdeadbeef]);
  assert.equal(readU64(b, field(8, 8)), 0x0102030405060708n);
  assert.deepEqual([readUintBE(b, field(16, 2)), readUintBE(b, field(20, 4))], [0x1f90, 0xc6120001]);
  assert.equal(readUint(b, field(0, 2), 16), 0x901f, 'a base offset moves the field (a struct inside a buffer)');
  assert.deepEqual([...fieldBytes(b, field(2, 2))], [0x34, 0x12]);
});

test('a field of another width is refused, naming it', () => {
  const b = Buffer.alloc(16);
  assert.throws(() => readUint(b, field(0, 8)), /8-byte field at offset 0 is not a u8, u16 or u32/);
  assert.throws(() => writeU64(b, field(4, 4), 1n), /4-byte field at offset 4 is not a u64/);
  assert.throws(() => readUintBE(b, field(2, 1)), /1-byte field at offset 2 is not a u16 or u32/);
});
