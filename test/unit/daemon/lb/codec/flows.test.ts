// SPDX-License-Identifier: Apache-2.0
// The flow-table codecs decode what the data path writes: values built here at the byte
// positions lb.h gives, independently of wire.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as F from '../../../../../daemon/src/lb/codec/flows.js';
import { CONN_DSR, CONN_LONG, FLOW_KEY, NAT } from '../../../../../daemon/src/lb/wire.js';
import { formatIp, parseIp } from '../../../../../daemon/src/net/ip.js';

const a4 = parseIp('198.19.10.10')!;

test('flow key: addresses, network-order ports, protocol, family', () => {
  const k = { saddr: parseIp('198.18.1.1')!, daddr: a4, sport: 40000, dport: 8080, proto: 6 };
  const kb = F.encodeFlowKey(k);
  assert.equal(kb.length, FLOW_KEY.size);
  assert.deepEqual([...kb.subarray(16, 20)], [198, 19, 10, 10]);
  assert.deepEqual([kb.readUInt16BE(32), kb.readUInt16BE(34), kb[36], kb[37]], [40000, 8080, 6, 2]);
  assert.deepEqual(F.decodeFlowKey(kb), k);
  assert.equal(F.flowKeyProto(kb), 6);
  const k6 = { saddr: parseIp('fd00:198::1:1')!, daddr: parseIp('fd00:198::ff:10')!, sport: 1, dport: 2, proto: 17 };
  assert.deepEqual(F.decodeFlowKey(F.encodeFlowKey(k6)), k6);
});

test('conn value round-trips; nat_port in network order', () => {
  const c = { backend: 7, gen: 9, createdNs: 123n, lastNs: 456n, natPort: 61000, how: 2, flags: CONN_LONG | CONN_DSR, vip: 3 };
  const cb = F.encodeConn(c);
  assert.deepEqual([cb[32], cb[33]], [0xee, 0x48], 'nat_port in network order');
  assert.deepEqual([cb.readUInt32LE(0), cb.readBigUInt64LE(16), cb.readUInt16LE(36)], [7, 456n, 3]);
  assert.deepEqual(F.decodeConn(cb), c);
  assert.equal(F.connBackend(cb), 7);
});

test('NAT value decodes what the data path writes', () => {
  const nat = Buffer.alloc(NAT.size);
  parseIp('198.18.1.1')!.bytes.copy(nat, 0, 0, 4);
  a4.bytes.copy(nat, 16, 0, 4);
  nat.writeUInt16BE(40000, 32);
  nat.writeUInt16BE(8080, 34);
  nat.writeUInt32LE(3, 36);
  nat.writeUInt32LE(1, 40);
  nat.writeUInt32LE(1, 44);
  nat.writeBigUInt64LE(99n, 48);
  const n = F.decodeNat(nat, 0, 'ipv4');
  assert.equal(formatIp('ipv4', n.caddr.bytes), '198.18.1.1');
  assert.equal(formatIp('ipv4', n.vaddr.bytes), '198.19.10.10');
  assert.deepEqual([n.cport, n.vport, n.backend, n.vip, n.flags, n.lastNs], [40000, 8080, 3, 1, 1, 99n]);
  assert.equal(F.natBackend(nat), 3);
});
