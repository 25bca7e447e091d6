// SPDX-License-Identifier: Apache-2.0
// Encoders and decoders round-trip, and write the byte orders lb.h promises
// (network order for what the data path compares with packets).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as D from '../../../../daemon/src/lb/decoder.js';
import { formatIp, parseIp } from '../../../../daemon/src/net/ip.js';

const a4 = parseIp('198.19.10.10')!;
const a6 = parseIp('fd00:198::ff:10')!;

test('VIP key: network-order port, family, zero padding for IPv4', () => {
  const k = D.encodeVipKey({ addr: a4, port: 8080, proto: 6 });
  assert.equal(k.length, D.VIP_KEY.size);
  assert.deepEqual([...k.subarray(0, 4)], [198, 19, 10, 10]);
  assert.equal(k.subarray(4, 16).every((b) => b === 0), true);
  assert.deepEqual([k[16], k[17]], [0x1f, 0x90]);
  assert.equal(k[18], 6);
  assert.equal(k[19], 2);
  assert.deepEqual(D.decodeVipKey(k), { addr: a4, port: 8080, proto: 6 });
  const k6 = D.decodeVipKey(D.encodeVipKey({ addr: a6, port: 443, proto: 17 }))!;
  assert.equal(formatIp('ipv6', k6.addr.bytes), 'fd00:198::ff:10');
  assert.equal(k6.port, 443);
});

test('backend, vip, conn, config, vipcfg round-trip', () => {
  const b = { addr: a6, port: 9000, flags: D.BE.inUse | D.BE.draining, vip: 3, weight: 700, egress: 12 };
  assert.deepEqual(D.decodeBackend(D.encodeBackend(b)), b);
  assert.equal(D.decodeBackend(D.encodeBackend(null)), null, 'a zeroed slot is unused');
  const v = { slot: 5, gen: 0xfffffffe, mode: D.MODE.dsr, ring: 1 };
  assert.deepEqual(D.decodeVip(D.encodeVip(v)), v);
  const c = { backend: 7, gen: 9, createdNs: 123n, lastNs: 456n, natPort: 61000, how: 2, flags: D.CONN_LONG | D.CONN_DSR, vip: 3 };
  const cb = D.encodeConn(c);
  assert.deepEqual([cb[32], cb[33]], [0xee, 0x48], 'nat_port in network order');
  assert.deepEqual(D.decodeConn(cb), c);
  const cfg = { promoteNs: 30_000_000_000n, natPortMin: 61000, natPortMax: 65535, flags: D.CFG.drop4, layout: D.LB_LAYOUT_VERSION, nhGen: 7 };
  assert.deepEqual(D.decodeConfig(D.encodeConfig(cfg)), cfg);
  const vc = {
    key: { addr: a4, port: 80, proto: 6 }, ifindex: 4, ifname: 'eth9', mode: D.MODE.nat, hcType: D.HC.http, hcRise: 2, hcFall: 3,
    hcPort: 8081, hcIntervalMs: 2000, hcTimeoutMs: 1000, hcPath: '/healthz', declHash: 77n, createdNs: 5n,
  };
  assert.deepEqual(D.decodeVipCfg(D.encodeVipCfg(vc)), vc);
  assert.equal(D.decodeVipCfg(D.encodeVipCfg(null)), null);
});

test('flow key and NAT value decode what the data path writes', () => {
  const k = { saddr: parseIp('198.18.1.1')!, daddr: a4, sport: 40000, dport: 8080, proto: 6 };
  const kb = D.encodeFlowKey(k);
  assert.equal(kb.length, 40);
  assert.deepEqual(D.decodeFlowKey(kb), k);
  const nat = Buffer.alloc(D.NAT.size);
  parseIp('198.18.1.1')!.bytes.copy(nat, 0, 0, 4);
  a4.bytes.copy(nat, 16, 0, 4);
  nat.writeUInt16BE(40000, 32);
  nat.writeUInt16BE(8080, 34);
  nat.writeUInt32LE(3, 36);
  nat.writeUInt32LE(1, 40);
  nat.writeBigUInt64LE(99n, 48);
  const n = D.decodeNat(nat, 0, 'ipv4');
  assert.equal(formatIp('ipv4', n.caddr.bytes), '198.18.1.1');
  assert.deepEqual([n.cport, n.vport, n.backend, n.vip, n.lastNs], [40000, 8080, 3, 1, 99n]);
});

test('per-CPU sums add every CPU slot', () => {
  const two = Buffer.alloc(D.CTR.size * 2);
  two.writeBigUInt64LE(3n, 0);
  two.writeBigUInt64LE(4n, D.CTR.size);
  two.writeBigUInt64LE(100n, 8);
  two.writeBigUInt64LE(1n, D.CTR.size + 32);
  assert.deepEqual(D.sumCtr(two), { packets: 7, bytes: 100, rpackets: 0, rbytes: 0, flows: 1 });
  const r = Buffer.alloc(32);
  r.writeBigUInt64LE(2n, 0);
  r.writeBigUInt64LE(5n, 16);
  r.writeBigUInt64LE(200n, 24);
  assert.deepEqual(D.sumRuleCtr(r), { packets: 7, bytes: 200 });
});

test('LPM and protocol keys', () => {
  const l = D.encodeLpm(parseIp('198.18.5.0')!, 24);
  assert.equal(l.length, D.LPM4.size);
  assert.equal(l.readUInt32LE(0), 24);
  const back = D.decodeLpm(l, 0, 'ipv4');
  assert.equal(formatIp('ipv4', back.addr.bytes), '198.18.5.0');
  const l6 = D.encodeLpm(parseIp('fd00:198::5:0')!, 112);
  assert.equal(l6.length, D.LPM6.size);
  const pk = { family: 'ipv6' as const, proto: 58, kind: D.PK.type, value: 128 };
  assert.deepEqual(D.decodeProtoKey(D.encodeProtoKey(pk)), pk);
});
