// SPDX-License-Identifier: Apache-2.0
// emon_lb_config and emon_lb_ifaddr codecs, checked at lb.h's byte positions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as S from '../../../../../daemon/src/lb/codec/settings.js';
import { CFG, LB_LAYOUT_VERSION } from '../../../../../daemon/src/lb/wire.js';
import { parseIp } from '../../../../../daemon/src/net/ip.js';

test('settings round-trip at their byte positions', () => {
  const cfg = { promoteNs: 30_000_000_000n, natPortMin: 61000, natPortMax: 65535, flags: CFG.drop4, layout: LB_LAYOUT_VERSION, nhGen: 7 };
  const b = S.encodeConfig(cfg);
  assert.deepEqual([b.readBigUInt64LE(0), b.readUInt16LE(8), b.readUInt16LE(10), b.readUInt32LE(12), b.readUInt32LE(16), b.readUInt32LE(20)],
    [30_000_000_000n, 61000, 65535, CFG.drop4, LB_LAYOUT_VERSION, 7]);
  assert.deepEqual(S.decodeConfig(b), cfg);
});

test('interface key and address', () => {
  const k = S.encodeIfKey(3, 'ipv6');
  assert.deepEqual([...k], [3, 0, 0, 0, 10, 0, 0, 0]);
  assert.deepEqual(S.decodeIfKey(k), { ifindex: 3, family: 'ipv6' });
  const a = S.encodeAddr(parseIp('198.18.3.1')!);
  assert.deepEqual([...a], [198, 18, 3, 1, ...new Array(12).fill(0)]);
});
