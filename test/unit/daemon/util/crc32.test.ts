// SPDX-License-Identifier: Apache-2.0
// The journal's CRC-32 fallback (Node 20 before 20.15 has no zlib.crc32) against zlib's
// own CRC as every Node has it: the trailer of a gzip member (CRC-32, then the length).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { crc32, crc32Js } from '../../../../daemon/src/util/crc32.js';
import { randBytes, randInt, rng } from '../../../helpers/rand.js';

const gzipCrc = (d: Uint8Array): number => {
  const z = zlib.gzipSync(d);
  return z.readUInt32LE(z.length - 8);
};

test('crc32Js (and the crc32 in use) equal the CRC-32 in a gzip trailer, whole and chained', () => {
  assert.equal(crc32Js(Buffer.from('123456789')), 0xcbf43926); // the CRC-32 check value
  const r = rng(7);
  for (let i = 0; i < 300; i++) {
    const a = randBytes(r, randInt(r, 0, 300));
    const b = randBytes(r, randInt(r, 0, 300));
    const ab = Buffer.concat([a, b]);
    assert.equal(crc32Js(a), gzipCrc(a));
    assert.equal(crc32Js(b, crc32Js(a)), gzipCrc(ab));
    assert.equal(crc32(b, crc32(a)) >>> 0, gzipCrc(ab));
  }
});
