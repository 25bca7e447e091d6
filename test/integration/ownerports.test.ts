// SPDX-License-Identifier: Apache-2.0
// emon_owner_ports (bpf/monitor/maps.bpf.h, daemon/src/monitor/ownerports.ts): the
// classifier looks up emon_tuples and emon_binds only for a local port one of them ever held
// an owner for, so every writer of either must mark the port first. Checked through the real
// daemon: a socket bound after the start (post_bind) is marked and its inbound flow is its
// owner's; a port a TCP client got from connect() (no bind) is not marked; owners an older
// build recorded without marks are marked at the next start; an inbound SYN skips
// emon_tuples (an earlier connection's entry there would name the wrong process). (The
// start-up scan's marks are checked by socketscan.test.ts: its listener that never accepts
// is owned only through emon_binds, and with the /proc scan its connection only through
// emon_tuples.)
// Truth: the pids this test spawned, the datagrams it sent, `ss`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, OBJECT_DIR, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { ENDPOINT, FLOW_KEY, OWNER, OWNER_PORT_WORDS } from '../../daemon/src/monitor/wire.js';
import { writeTcp4Key } from '../helpers/flow-fill.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import { until } from '../helpers/wait.js';

const EMON_HOW_ACCEPT = 3;
const EMON_HOW_BIND = 4;
const EMON_HOW_PROC = 6;

describe('local ports marked for the owner lookups (emon_owner_ports)', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;

  const pinned = (name: string) => BpfMap.fromPin(path.join(daemon.pinPath, 'maps', name), name);
  const ip4 = (a: string) => Buffer.from(a.split('.').map(Number)).readUInt32BE(0);
  /** An owner as the kernel's hooks record it. */
  const ownerValue = (tgid: number, how: number) => {
    const v = Buffer.alloc(OWNER.size);
    writeUint(v, OWNER.fields.tgid, tgid);
    writeUint(v, OWNER.fields.pid, tgid);
    writeUint(v, OWNER.fields.how, how);
    return v;
  };
  /** The ports marked now (the kernel's words and the daemon's). */
  function marked(): Set<number> {
    const m = pinned(MAP.ownerPorts);
    try {
      const out = new Set<number>();
      m.forEachChunk(({ keys, values, count }) => {
        for (let i = 0; i < count; i++) {
          const word = keys.readUInt32LE(i * 4) % OWNER_PORT_WORDS;
          const bits = values.readBigUInt64LE(i * 8);
          for (let b = 0; b < 64; b++) if ((bits >> BigInt(b)) & 1n) out.add(word * 64 + b);
        }
      });
      return out;
    } finally {
      m.close();
    }
  }
  /** Clears a port's marks in both halves (as a build before emon_owner_ports left them). */
  function unmark(m: BpfMap, port: number): void {
    for (const i of [port >>> 6, OWNER_PORT_WORDS + (port >>> 6)]) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      const v = m.lookup(k)!;
      v.writeBigUInt64LE(v.readBigUInt64LE(0) & ~(1n << BigInt(port & 63)));
      m.update(k, v);
    }
  }
  const flows = async (params: object): Promise<Flow[]> => (await daemon.call('flows.list', { limit: 100_000, ...params })).flows;
  /** The first flow `params` lists that `pick` accepts, once there is one. */
  async function flowOnce(what: string, params: object, pick: (f: Flow) => boolean): Promise<Flow> {
    let f: Flow | undefined;
    await until(what, async () => (f = (await flows(params)).find(pick)) !== undefined, 10_000, 100);
    return f!;
  }

  before(async () => {
    requireTool('ss');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { history: { enabled: false } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  test('a UDP server bound after the start: its port is marked, and datagrams from a new peer are its own (attributedBy bind)', async () => {
    const before = marked();
    const srv = mon.spawn(process.execPath, [PEER, 'udp-server', link.a.ip4, '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const ss = await mon.exec('ss', ['-unpaH', 'sport', '=', `:${port}`]);
    assert.match(ss.stdout, new RegExp(`pid=${srv.pid}\\b`), 'ss names the server');
    const after = marked();
    assert.ok(after.has(port), `port ${port} marked`);
    assert.deepEqual([...after].filter((p) => !before.has(p)), [port], 'the server bound one socket: one new mark');

    const client = peer.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(port), '3', '200']);
    const done = await jsonLines(client).next((o) => o.event === 'done');
    const f = await flowOnce('the server\'s flow', { pid: srv.pid }, (x) => x.localPort === port && x.remotePort === Number(done.localPort));
    assert.equal(f.pid, srv.pid);
    assert.equal(f.attributedBy, 'bind');
    assert.equal(f.direction, 'inbound');
    assert.equal(f.rxPackets, 3, 'the three datagrams the peer sent');
  });

  test('a TCP client\'s port from connect() (no bind) is not marked, and its flow is still its own', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const sport = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const before = marked();
    const client = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(sport), '1000']);
    const done = await jsonLines(client).next((o) => o.event === 'done');
    const lport = Number(done.localPort);
    const f = await flowOnce('the client\'s flow', { pid: client.pid }, (x) => x.localPort === lport);
    assert.equal(f.pid, client.pid);
    const after = marked();
    assert.deepEqual([...after].filter((p) => !before.has(p)), [], 'connect() marks nothing');
  });

  test('owners recorded without a mark (by an older build) are marked at the next start, and their port\'s new flows find the owner', async () => {
    // A listener's endpoint (emon_binds) on one port, a connected UDP socket's tuple
    // (emon_tuples, as the start-up scan records it) on another, as an older build would have
    // left them: no marks.
    const bindPort = 47_123;
    const tuplePort = 47_124;
    const peerPort = 47_125;
    const [bindTgid, tupleTgid] = [3_999_123, 3_999_124];
    await daemon.stop('SIGKILL');
    const binds = pinned(MAP.binds);
    const tuples = pinned(MAP.tuples);
    const ports = pinned(MAP.ownerPorts);
    try {
      const ep = Buffer.alloc(ENDPOINT.size);
      writeUint(ep, ENDPOINT.fields.family, 2);
      writeUint(ep, ENDPOINT.fields.proto, 6);
      writeUint(ep, ENDPOINT.fields.port, bindPort);
      binds.update(ep, ownerValue(bindTgid, EMON_HOW_BIND));
      const k = Buffer.alloc(FLOW_KEY.size);
      writeTcp4Key(k, 0, ip4(link.a.ip4), tuplePort, ip4(link.b.ip4), peerPort);
      k[FLOW_KEY.fields.proto.offset] = 17; // UDP
      tuples.update(k, ownerValue(tupleTgid, EMON_HOW_PROC));
      for (const p of [bindPort, tuplePort]) unmark(ports, p);
    } finally {
      binds.close();
      tuples.close();
      ports.close();
    }
    assert.ok(!marked().has(bindPort) && !marked().has(tuplePort), 'not marked while the daemon is down');
    daemon = await restartDaemon(daemon);
    await until('the marks', () => marked().has(bindPort) && marked().has(tuplePort), 10_000, 100);

    // A SYN to the endpoint's port and a datagram to the tuple's (nothing listens: the
    // kernel answers with a reset, a port unreachable) each create a flow whose owner is the
    // one recorded for it.
    const syn = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(bindPort), '0']);
    await jsonLines(syn).next((o) => o.event === 'error' || o.event === 'done');
    const udp = peer.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(tuplePort), '2', '100', '--local-port', String(peerPort)]);
    await jsonLines(udp).next((o) => o.event === 'done');
    for (const [port, tgid, by] of [[bindPort, bindTgid, 'bind'], [tuplePort, tupleTgid, 'proc']] as const) {
      const f = await flowOnce(`the flow to port ${port}`, { pid: tgid }, (x) => x.localPort === port);
      assert.equal(f.attributedBy, by);
      assert.equal(f.direction, 'inbound');
    }
  });

  test('an inbound SYN on a tuple an earlier connection left in emon_tuples is the listener\'s, not the earlier acceptor\'s', async () => {
    // The listener never accepts, so only the lookup at the SYN names the flow's owner.
    const lis = mon.spawn(path.join(OBJECT_DIR, 'fixtures/net/listen_hold'), [link.a.ip4], { stdio: ['pipe', 'pipe', 'pipe'] });
    const port = Number((await jsonLines(lis).next((o) => o.event === 'listening')).port);
    const ss = await mon.exec('ss', ['-tlnpH', 'sport', '=', `:${port}`]);
    assert.match(ss.stdout, new RegExp(`pid=${lis.pid}\\b`), 'ss names the listener');
    const peerPort = 47_126;
    const earlier = 3_999_126;
    const tuples = pinned(MAP.tuples);
    try {
      const k = Buffer.alloc(FLOW_KEY.size);
      writeTcp4Key(k, 0, ip4(link.a.ip4), port, ip4(link.b.ip4), peerPort);
      tuples.update(k, ownerValue(earlier, EMON_HOW_ACCEPT)); // what accept() wrote for an earlier connection on this tuple
    } finally {
      tuples.close();
    }
    const c = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(port), '100', '--local-port', String(peerPort)]);
    await jsonLines(c).next((o) => o.event === 'connected' || o.event === 'error');
    const f = await flowOnce('the connection\'s flow', {}, (x) => x.localPort === port && x.remotePort === peerPort);
    assert.deepEqual({ pid: f.pid, attributedBy: f.attributedBy }, { pid: lis.pid, attributedBy: 'bind' }, `the listener's flow: ${JSON.stringify(f)}`);
    c.kill('SIGKILL');
    lis.stdin!.end();
  });
});
