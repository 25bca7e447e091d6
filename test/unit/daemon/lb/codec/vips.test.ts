// SPDX-License-Identifier: Apache-2.0
// The VIP configuration codecs round-trip and write the byte orders lb.h promises
// (network order for what the data path compares with packets), checked at the byte
// positions lb.h gives (written out here, independently of wire.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as V from '../../../../../daemon/src/lb/codec/vips.js';
import { BE, HC, MODE, VIP_KEY } from '../../../../../daemon/src/lb/wire.js';
import { formatIp, parseIp } from '../../../../../daemon/src/net/ip.js';

const a4 = parseIp('198.19.10.10')!;
const a6 = parseIp('fd00:198::ff:10')!;

test('VIP key: network-order port, family, zero padding for IPv4', () => {
  const k = V.encodeVipKey({ addr: a4, port: 8080, proto: 6 });
  assert.equal(k.length, VIP_KEY.size);
  assert.deepEqual([...k.subarray(0, 4)], [198, 19, 10, 10]);
  assert.equal(k.subarray(4, 16).every((b) => b === 0), true);
  assert.deepEqual([k[16], k[17]], [0x1f, 0x90]);
  assert.equal(k[18], 6);
  assert.equal(k[19], 2);
  assert.deepEqual(V.decodeVipKey(k), { addr: a4, port: 8080, proto: 6 });
  const k6 = V.decodeVipKey(V.encodeVipKey({ addr: a6, port: 443, proto: 17 }))!;
  assert.equal(formatIp('ipv6', k6.addr.bytes), 'fd00:198::ff:10');
  assert.equal(k6.port, 443);
});

test('backend and VIP values: round-trip, byte positions, an unused slot', () => {
  const b = { addr: a6, port: 9000, flags: BE.inUse | BE.draining, vip: 3, weight: 700, egress: 12 };
  const bb = V.encodeBackend(b);
  assert.deepEqual([bb[16], bb[17], bb[18], bb[19]], [0x23, 0x28, 10, 3], 'port (network order), family, flags');
  assert.deepEqual([bb.readUInt16LE(20), bb.readUInt16LE(22), bb.readUInt32LE(24)], [3, 700, 12], 'vip slot, weight, egress');
  assert.deepEqual(V.decodeBackend(bb), b);
  assert.equal(V.decodeBackend(V.encodeBackend(null)), null, 'a zeroed slot is unused');
  const v = { slot: 5, gen: 0xfffffffe, mode: MODE.dsr, ring: 1 };
  const vb = V.encodeVip(v);
  assert.deepEqual([vb.readUInt32LE(0), vb.readUInt32LE(4), vb[8], vb[9]], [5, 0xfffffffe, 2, 1]);
  assert.deepEqual(V.decodeVip(vb), v);
});

test('VIP settings round-trip; strings are NUL-terminated within their arrays', () => {
  const vc = {
    key: { addr: a4, port: 80, proto: 6 }, ifindex: 4, ifname: 'eth9', mode: MODE.nat, hcType: HC.http, hcRise: 2, hcFall: 3,
    hcPort: 8081, hcIntervalMs: 2000, hcTimeoutMs: 1000, hcPath: '/healthz', declHash: 77n, createdNs: 5n,
  };
  const b = V.encodeVipCfg(vc);
  assert.equal(b[40], 1, 'in_use');
  assert.equal(b.toString('latin1', 24, 28), 'eth9');
  assert.equal(b.toString('utf8', 56, 64), '/healthz');
  assert.equal(b.readBigUInt64LE(120), 77n);
  assert.deepEqual(V.decodeVipCfg(b), vc);
  assert.equal(V.decodeVipCfg(V.encodeVipCfg(null)), null);
  const long = V.decodeVipCfg(V.encodeVipCfg({ ...vc, ifname: 'a-very-long-interface-name', hcPath: `/${'x'.repeat(80)}` }))!;
  assert.deepEqual([long.ifname.length, long.hcPath.length], [15, 63], 'one byte of each array stays the terminator');
});
