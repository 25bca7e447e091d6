// SPDX-License-Identifier: Apache-2.0
// The drop list's keys: LPM (prefix length first, host order) and protocol keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as D from '../../../../../daemon/src/lb/codec/drops.js';
import { LPM4, LPM6, PK } from '../../../../../daemon/src/lb/wire.js';
import { formatIp, parseIp } from '../../../../../daemon/src/net/ip.js';

test('LPM and protocol keys', () => {
  const l = D.encodeLpm(parseIp('198.18.5.0')!, 24);
  assert.equal(l.length, LPM4.size);
  assert.equal(l.readUInt32LE(0), 24);
  assert.deepEqual([...l.subarray(4)], [198, 18, 5, 0]);
  const back = D.decodeLpm(l, 0, 'ipv4');
  assert.equal(formatIp('ipv4', back.addr.bytes), '198.18.5.0');
  assert.equal(back.len, 24);
  const l6 = D.encodeLpm(parseIp('fd00:198::5:0')!, 112);
  assert.equal(l6.length, LPM6.size);
  assert.equal(formatIp('ipv6', D.decodeLpm(l6, 0, 'ipv6').addr.bytes), 'fd00:198::5:0');
  const pk = { family: 'ipv6' as const, proto: 58, kind: PK.type, value: 128 };
  const pb = D.encodeProtoKey(pk);
  assert.deepEqual([...pb], [10, 58, PK.type, 0, 128, 0, 0, 0]);
  assert.deepEqual(D.decodeProtoKey(pb), pk);
});
