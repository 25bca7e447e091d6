// SPDX-License-Identifier: Apache-2.0
// The /proc socket scan's parsing, against sockets this test opens itself: what
// /proc/self/net/{tcp,tcp6,udp,udp6} says about them must decode to the addresses and
// ports Node reports, and to the keys the kernel side uses.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { parseProcAddr, parseProcNet, socketKeys, type KernelSocket } from '../../../../daemon/src/monitor/procscan.js';
import { ENDPOINT, FLOW_KEY } from '../../../../daemon/src/monitor/wire.js';

const AF_INET = 2;
const AF_INET6 = 10;
const sockets: net.Socket[] = [];
let server4: net.Server;
let server6: net.Server;
let client6: net.Socket;
let udp4: dgram.Socket;

before(async () => {
  server4 = net.createServer().listen(0, '127.0.0.1');
  server6 = net.createServer((s) => sockets.push(s)).listen(0, '::1');
  await Promise.all([server4, server6].map((s) => new Promise((r) => s.once('listening', r))));
  client6 = net.connect((server6.address() as net.AddressInfo).port, '::1');
  await new Promise((r) => client6.once('connect', r));
  udp4 = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp4.bind(0, '127.0.0.1', r));
});
after(() => {
  client6.destroy();
  for (const s of sockets) s.destroy?.();
  server4.close();
  server6.close();
  udp4.close();
});

const table = (file: string, family: number, proto: number): KernelSocket[] => parseProcNet(fs.readFileSync(`/proc/self/net/${file}`, 'utf8'), family, proto);
const ip = (a: Buffer, family: number) => (family === AF_INET ? [...a.subarray(0, 4)].join('.') : a.toString('hex'));
const LOOPBACK6 = '00000000000000000000000000000001';

test('address columns decode as the kernel wrote them (each 32-bit word in host order)', () => {
  assert.deepEqual(parseProcAddr('0100007F:0035', AF_INET), { addr: Buffer.concat([Buffer.from([127, 0, 0, 1]), Buffer.alloc(12)]), port: 53 });
  const v6 = parseProcAddr('00000000000000000000000001000000:0016', AF_INET6);
  assert.equal(v6.port, 22);
  assert.equal(v6.addr.toString('hex'), '00000000000000000000000000000001');
  assert.throws(() => parseProcAddr('0100:0035', AF_INET), /unexpected address/);
});

test('a listener, a connection and a bound UDP socket of this process, as /proc shows them', () => {
  const p4 = (server4.address() as net.AddressInfo).port;
  const listen4 = table('tcp', AF_INET, 6).find((s) => s.lport === p4)!;
  assert.ok(listen4, 'the IPv4 listener is in /proc/self/net/tcp');
  assert.equal(ip(listen4.laddr, AF_INET), '127.0.0.1');
  assert.equal(listen4.state, 0x0a);
  const ep = socketKeys(listen4).endpoint!;
  assert.equal(socketKeys(listen4).tuple, null);
  assert.equal(ep[ENDPOINT.fields.family.offset], AF_INET);
  assert.equal(ep.readUInt16LE(ENDPOINT.fields.port.offset), p4);

  const conn = table('tcp6', AF_INET6, 6).find((s) => s.lport === client6.localPort && s.rport === client6.remotePort)!;
  assert.ok(conn, 'the IPv6 connection is in /proc/self/net/tcp6');
  assert.equal(ip(conn.laddr, AF_INET6), LOOPBACK6);
  assert.equal(ip(conn.raddr, AF_INET6), LOOPBACK6);
  const k = socketKeys(conn).tuple!;
  assert.equal(k[FLOW_KEY.fields.family.offset], AF_INET6);
  assert.equal(k.readUInt16LE(FLOW_KEY.fields.lport.offset), client6.localPort);
  assert.equal(k.readUInt16LE(FLOW_KEY.fields.rport.offset), client6.remotePort);
  assert.ok(conn.inode > 0);

  const u = table('udp', AF_INET, 17).find((s) => s.lport === udp4.address().port)!;
  assert.ok(u);
  assert.ok(socketKeys(u).endpoint, 'an unconnected bound UDP socket is an endpoint');
});

test('IPv4-mapped IPv6 sockets are keyed as IPv4, like the packets they send', () => {
  const mapped = Buffer.from('00000000000000000000ffff0a000005', 'hex');
  const k = socketKeys({ family: AF_INET6, proto: 6, laddr: mapped, lport: 4000, raddr: Buffer.from('00000000000000000000ffff0a000009', 'hex'), rport: 80, state: 1, inode: 7 }).tuple!;
  assert.equal(k[FLOW_KEY.fields.family.offset], AF_INET);
  assert.deepEqual([...k.subarray(FLOW_KEY.fields.laddr.offset, FLOW_KEY.fields.laddr.offset + 16)], [10, 0, 0, 5, ...Array(12).fill(0)]);
  assert.deepEqual([...k.subarray(FLOW_KEY.fields.raddr.offset, FLOW_KEY.fields.raddr.offset + 4)], [10, 0, 0, 9]);
  // A dual-stack wildcard listener stays IPv6 (the classifier looks it up for IPv4 too).
  const any = socketKeys({ family: AF_INET6, proto: 6, laddr: Buffer.alloc(16), lport: 80, raddr: Buffer.alloc(16), rport: 0, state: 0x0a, inode: 8 }).endpoint!;
  assert.equal(any[ENDPOINT.fields.family.offset], AF_INET6);
  // Nothing to key: an unbound socket.
  assert.deepEqual(socketKeys({ family: AF_INET, proto: 17, laddr: Buffer.alloc(16), lport: 0, raddr: Buffer.alloc(16), rport: 0, state: 7, inode: 9 }), { tuple: null, endpoint: null });
});
