// SPDX-License-Identifier: Apache-2.0
// Capture sessions end to end (issue 13): the real daemon in a lab host (the shipped
// classifier, its hook chain, the capture programs) and four `ebpfmonctl capture -w FILE`
// sessions at once, as a user runs them. Two processes talk through the same interface at the same time (TCP over IPv4 and IPv6,
// UDP with datagrams that fragment); tcpdump records the interface. Truths:
//   - pid session: its file holds exactly the frames tcpdump saw for that process's
//     sockets (5-tuples it reported; fragments joined by id), byte for byte; every packet's
//     comment and option 8 name the pid; the Lua plugin's ebpfmon.pid selects all of them;
//     its statistics block counts them with no drop;
//   - expression sessions: exactly what tcpdump -r with the same expression selects from
//     tcpdump's own capture.
// The files are written by the native drain; EBPFMON_CAPTURE_DRAIN=typescript runs the same
// truths on the TypeScript drain (the fallback).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, CTL_MAIN, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { readPcapRecords, type PcapRecord } from '../helpers/pcap-frames.js';
import { frameDiff, framesOf, lastIsb, pcapngBlocks, pcapngFrames, startCapture, type Tuple } from '../helpers/capture-truth.js';
import { ROOT } from '../helpers/cc.js';
import type { Lab } from '../helpers/lab.js';
const LUA = path.join(ROOT, 'packaging/wireshark/ebpfmon.lua');

/** A client that waits for "go" on stdin, then talks TCP (IPv4, IPv6) and UDP (some
 * datagrams over the MTU: IP fragments) and reports its local ports. */
const CLIENT_JS = `
const net = require('node:net'); const dgram = require('node:dgram'); const rl = require('node:readline');
const [v4, v6, tcpPort, udpPort, tag] = process.argv.slice(1);
const tcp = (host) => new Promise((res, rej) => {
  const s = net.connect(Number(tcpPort), host, () => { const p = s.localPort; s.end(Buffer.alloc(40000, tag.charCodeAt(0)), () => {}); s.on('close', () => res(p)); });
  s.on('data', () => {}); s.on('error', rej);
});
const udp = () => new Promise((res) => {
  const u = dgram.createSocket('udp4'); const sizes = [60, 900, 2500, 4000];
  u.bind(0, () => { let i = 0; const next = () => { if (i === sizes.length) { const p = u.address().port; u.close(); return res(p); } u.send(Buffer.alloc(sizes[i++], 1), Number(udpPort), v4, next); }; next(); });
});
rl.createInterface({ input: process.stdin }).once('line', async () => {
  const t4 = await tcp(v4); const t6 = await tcp(v6); const u = await udp();
  console.log(JSON.stringify({ tcp: [t4, t6], udp: u }));
  setTimeout(() => process.exit(0), 100);
});
console.log(JSON.stringify({ waiting: true }));`;

describe('capture sessions: pid and expression selection against tcpdump', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;
  let dir: string;
  let client: { pid: number; tuples: Tuple[] };
  let other: { pid: number; tuples: Tuple[] };
  let tcpdumpFile: string;
  let pidPackets: number;
  const out = (n: string) => path.join(dir, n);

  before(async () => {
    requireTool('tcpdump', 'tshark', 'editcap', 'capinfos');
    ({ lab, mon, peer, link } = await monitorLab());
    dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755);
    daemon = await startDaemon(mon, { config: { interfaces: [link.a.ifname] } });
    const t0 = Date.now();
    while (!(await daemon.call('status')).interfaces.some((i) => i.name === link.a.ifname)) {
      if (Date.now() - t0 > 15_000) throw new Error('the daemon did not attach to the lab interface');
      await new Promise((r) => setTimeout(r, 100));
    }

    const tcpSrv = jsonLines(peer.spawn(process.execPath, [PEER, 'tcp-server', '::', '9000', '3000']));
    await tcpSrv.next((o) => o.event === 'listening');
    const udpSrv = jsonLines(peer.spawn(process.execPath, [PEER, 'udp-server', '0.0.0.0', '9001']));
    await udpSrv.next((o) => o.event === 'listening');

    tcpdumpFile = out('tcpdump.pcap');
    const dump = mon.spawn('tcpdump', ['-i', link.a.ifname, '-n', '-s', '0', '-B', '8192', '--immediate-mode', '-U', '-w', tcpdumpFile]);
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
      dump.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (err.includes('listening on')) { clearTimeout(t); resolve(); }
      });
    });

    const spawnClient = (tag: string) => {
      const child = mon.spawn(process.execPath, ['-e', CLIENT_JS, link.b.ip4, link.b.ip6, '9000', '9001', tag], { stdio: ['pipe', 'pipe', 'pipe'] });
      return { child, lines: jsonLines(child) };
    };
    const a = spawnClient('a');
    const b = spawnClient('b');
    await a.lines.next((o) => o.waiting === true);
    await b.lines.next((o) => o.waiting === true);

    const sock = daemon.socketPath;
    const caps = [
      await startCapture(mon, sock, ['-p', String(a.child.pid), '--stats-interval', '1', '-w', out('pid.pcapng')]),
      await startCapture(mon, sock, ['-w', out('udp.pcapng'), 'udp']),
      await startCapture(mon, sock, ['-w', out('port.pcapng'), 'tcp', 'port', '9000', 'and', 'ip6']),
      await startCapture(mon, sock, ['-w', out('hostnot.pcapng'), `host ${link.b.ip4} and not port 9000`]),
    ];

    a.child.stdin!.write('go\n');
    b.child.stdin!.write('go\n');
    const ra = (await a.lines.next((o) => Array.isArray(o.tcp), 30_000)) as { tcp: number[]; udp: number };
    const rb = (await b.lines.next((o) => Array.isArray(o.tcp), 30_000)) as { tcp: number[]; udp: number };
    const tuples = (r: { tcp: number[]; udp: number }): Tuple[] => [...r.tcp.map((p) => ({ proto: 'tcp' as const, localPort: p })), { proto: 'udp', localPort: r.udp }];
    client = { pid: a.child.pid!, tuples: tuples(ra) };
    other = { pid: b.child.pid!, tuples: tuples(rb) };
    await new Promise((r) => setTimeout(r, 500)); // last ACKs and FINs
    // A statistics block lands while the session runs (--stats-interval 1), then Ctrl-C.
    const t1 = Date.now();
    while (pcapngBlocks(out('pid.pcapng')).filter((b) => b.type === 5).length === 0 && Date.now() - t1 < 10_000) await new Promise((r) => setTimeout(r, 100));
    for (const c of caps) process.kill(c.child.pid!, 'SIGINT');
    const codes = await Promise.all(caps.map((c) => c.exit));
    assert.deepEqual(codes, [0, 0, 0, 0], caps.map((c) => c.stderr()).join('\n'));
    pidPackets = Number(/(\d+) packets? written/.exec(caps[0]!.stderr())?.[1]);
    // Ctrl-C removed the sessions' kernel state.
    const st = await daemon.call('status');
    assert.deepEqual(st.capture?.sessions, []);
    // Which drain wrote the files: the native one unless the run asks for the fallback
    // (EBPFMON_CAPTURE_DRAIN=typescript in the test's environment reaches the daemon):
    // the truths below then hold for either.
    assert.equal(st.capture?.drain?.split(' ')[0], process.env.EBPFMON_CAPTURE_DRAIN === 'typescript' ? 'typescript' : 'native', st.capture?.drain);
    const exited = new Promise((r) => dump.once('exit', r));
    process.kill(dump.pid!, 'SIGINT');
    await exited;
    process.stderr.write(`tcpdump: ${err.trim().split('\n').slice(-3).join(' / ')}; ${readPcapRecords(tcpdumpFile).records.length} records; pid session: ${pidPackets} packets\n`);
  });
  after(() => destroyMonitorLab(daemon, lab));

  const tcpdumpRecords = (): PcapRecord[] => readPcapRecords(tcpdumpFile).records;

  test('pid session: exactly the frames tcpdump saw for that process, byte for byte; none of the other process', () => {
    const want = framesOf(tcpdumpRecords(), client.tuples);
    const got = pcapngFrames(out('pid.pcapng'));
    const otherFrames = framesOf(tcpdumpRecords(), other.tuples);
    assert.ok(want.length >= 20, `tcpdump saw ${want.length} frames of the client`);
    assert.ok(otherFrames.length >= 20, `tcpdump saw ${otherFrames.length} frames of the other process`);
    const d = frameDiff(want, got);
    assert.deepEqual({ missing: d.onlyA.length, extra: d.onlyB.length }, { missing: 0, extra: 0 }, `frames: tcpdump ${want.length}, capture ${got.length}; first missing ${d.onlyA[0]?.slice(0, 120)}; first extra ${d.onlyB[0]?.slice(0, 120)}`);
    assert.equal(got.reduce((n, r) => n + r.wireLen, 0), want.reduce((n, r) => n + r.wireLen, 0), 'bytes on the wire');
    // IPv4 fragments of the 2500- and 4000-byte datagrams are in (later fragments carry no ports).
    assert.ok(got.some((r) => r.data.readUInt16BE(12) === 0x0800 && (r.data.readUInt16BE(20) & 0x1fff) !== 0), 'a later IPv4 fragment');
  });

  test('pid session: every packet says the pid in its comment (ptcpdump form) and in option 8, and its direction', () => {
    const rows = execFileSync('tshark', ['-r', out('pid.pcapng'), '-T', 'fields', '-E', 'separator=|', '-e', 'frame.comment', '-e', 'frame.packet_flags_direction', '-e', 'ip.src', '-e', 'ipv6.src'], { encoding: 'utf8' })
      .trim().split('\n');
    assert.equal(rows.length, pidPackets);
    for (const row of rows) {
      const [comment = '', dirFlag = '', src4 = '', src6 = ''] = row.split('|');
      assert.match(comment, new RegExp(`^PID: ${client.pid}\\\\nCmd: ${process.execPath.replace(/[/.]/g, '\\$&')}\\\\nArgs: `), row);
      assert.match(comment, new RegExp(`UserId: 0`), row);
      const src = src4 || src6;
      const outbound = src === link.a.ip4 || src === link.a.ip6;
      // Later fragments have an IPv4 source too; every frame here has an IP source.
      assert.ok(src, row);
      assert.equal(Number(dirFlag), outbound ? 2 : 1, `direction of ${row}`);
    }
    // Option 8 (epb_processid_threadid), as Wireshark's pcapng file dissector reads the blocks.
    const epbs = pcapngBlocks(out('pid.pcapng')).filter((b) => b.type === 6);
    assert.equal(epbs.length, rows.length);
    for (const b of epbs) {
      const o8 = b.options.filter((o) => o.code === 8);
      assert.equal(o8.length, 1, JSON.stringify(b.options.map((o) => o.code)));
      const v = Buffer.from(o8[0]!.hex, 'hex');
      assert.equal(v.length, 8);
      assert.equal(v.readUInt32LE(0), client.pid, 'option 8: pid');
      assert.ok(v.readUInt32LE(4) >= client.pid, 'option 8: a thread of the process');
    }
  });

  test('the Lua plugin: ebpfmon.pid selects exactly the pid session\'s packets, and names the command', () => {
    const sel = (filter: string) => execFileSync('tshark', ['-r', out('pid.pcapng'), '-X', `lua_script:${LUA}`, '-Y', filter, '-T', 'fields', '-e', 'ebpfmon.pid', '-e', 'ebpfmon.comm'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    const all = sel(`ebpfmon.pid == ${client.pid}`);
    assert.equal(all.length, pidPackets);
    for (const r of all) assert.equal(r, `${client.pid}\tnode`);
    assert.equal(sel(`ebpfmon.pid != ${client.pid}`).length, 0);
    assert.equal(sel('ebpfmon.comm == "node" && ebpfmon.uid == 0').length, all.length);
  });

  test('statistics blocks: matched = captured = written, nothing dropped; if_filter names the expression', () => {
    assert.ok(pidPackets >= 20, `${pidPackets} packets`);
    assert.equal(pcapngBlocks(out('pid.pcapng')).filter((b) => b.type === 6).length, pidPackets, 'the CLI counted the packets the file holds');
    const info = execFileSync('capinfos', [out('hostnot.pcapng')], { encoding: 'utf8' });
    assert.match(info, new RegExp(`Filter string = host ${link.b.ip4.replace(/\./g, '\\.')} and not port 9000`));
    assert.match(info, /Number of stat entries = [1-9]/);
    const isbs = pcapngBlocks(out('pid.pcapng')).filter((b) => b.type === 5);
    assert.ok(isbs.length >= 2, `statistics every second and at the end: ${isbs.length} blocks`);
    const last = lastIsb(out('pid.pcapng'));
    assert.deepEqual([last[4], last[6], last[7], last[8]], [pidPackets, pidPackets, 0, pidPackets]);
  });

  for (const [file, expr] of [['udp.pcapng', 'udp'], ['port.pcapng', 'tcp port 9000 and ip6'], ['hostnot.pcapng', null]] as const) {
    test(`expression session "${expr ?? 'host <peer> and not port 9000'}": what tcpdump -r selects with the same expression`, () => {
      const e = expr ?? `host ${link.b.ip4} and not port 9000`;
      const filtered = out(`${file}.truth.pcap`);
      execFileSync('tcpdump', ['-r', tcpdumpFile, '-w', filtered, e], { stdio: 'pipe' });
      const want = readPcapRecords(filtered).records;
      const got = pcapngFrames(out(file));
      assert.ok(want.length > 0, `tcpdump selected nothing for ${e}`);
      const d = frameDiff(want, got);
      assert.deepEqual({ missing: d.onlyA.length, extra: d.onlyB.length }, { missing: 0, extra: 0 }, `${e}: tcpdump ${want.length}, capture ${got.length}; missing ${d.onlyA[0]?.slice(0, 120)}; extra ${d.onlyB[0]?.slice(0, 120)}`);
    });
  }

  test('a user outside the ebpfmon group: another user\'s process is refused; their own streams with -w - into tshark -r -', async () => {
    const u = await lab.user('cap');
    // The user's process: a UDP datagram to the peer every 50 ms (the peer's UDP server from before()).
    const talker = mon.spawn('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', process.execPath, '-e',
      `const s = require('node:dgram').createSocket('udp4'); setInterval(() => s.send(Buffer.alloc(32, 7), 9001, '${link.b.ip4}'), 50); console.log('{"up":true}');`]);
    await jsonLines(talker).next((o) => o.up === true);
    try {
      const denied = await ctl(['capture', '-p', String(daemon!.pid), '-c', '1', '-w', '-'], { socket: daemon!.socketPath, user: u, host: mon });
      assert.equal(denied.code, 3, denied.stderr);
      assert.match(denied.stderr, new RegExp(`process ${daemon!.pid} belongs to uid 0: uid ${u.uid} may capture only its own processes`));
      const sh = `setpriv --reuid=${u.uid} --regid=${u.gid} --init-groups ${process.execPath} ${CTL_MAIN} --socket ${daemon!.socketPath} capture -q -p ${talker.pid} -c 5 -w - | tshark -r - -T fields -e frame.comment -e udp.dstport`;
      const r = await mon.exec('sh', ['-c', sh], { timeoutMs: 30_000 });
      const rows = r.stdout.trim().split('\n');
      assert.equal(rows.length, 5, r.stdout + r.stderr);
      for (const row of rows) {
        assert.match(row, new RegExp(`^PID: ${talker.pid}\\\\n`));
        assert.match(row, new RegExp(`UserId: ${u.uid}`));
        assert.match(row, /\t9001$/);
      }
      // Ended by its count: nothing left in the kernel.
      assert.deepEqual((await daemon!.call('status')).capture?.sessions, []);
    } finally {
      process.kill(talker.pid!, 'SIGKILL');
    }
  });

  test('bad input: a bad expression and bad flags are named; the daemon answers with contract errors', async () => {
    const bad = await ctl(['capture', '-w', '-', 'tcp prot 80'], { socket: daemon!.socketPath });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /tcp prot 80.*syntax error/);
    const flag = await ctl(['capture', '--direction', 'sideways', '-w', '-'], { socket: daemon!.socketPath });
    assert.equal(flag.code, 1);
    assert.match(flag.stderr, /--direction.*expected one of in, out/);
    await assert.rejects(daemon!.callRaw('capture.start', {}), /params\.stream/);
    await assert.rejects(daemon!.callRaw('capture.stop', { session: 42 }), /params\.session/);
    await assert.rejects(daemon!.callRaw('mirror.add', { name: 'x', to: 'not-an-ip' }), /params\.to/);
    await assert.rejects(daemon!.callRaw('capture.list', { extra: 1 }), /extra/);
  });

  test('every capture and mirror method answers odd params with a contract error, never internal; the daemon lives', async () => {
    const odd: unknown[] = [null, 1, 'x', [], {}, { name: 1 }, { session: '' }, { pids: [-1] }, { pids: 'x' }, { pids: [1.5] }, { comms: [''] }, { expression: 5 },
      { expression: 'tcp[' }, { name: 'a'.repeat(40), to: '::1' }, { name: 'z', to: '198.18.0.1', vni: -1 }, { name: 'z', to: '198.18.0.1', encap: 'ipip' },
      { user: {} }, { user: 'no-such-user-here' }, { interfaces: ['nope0'] }, { interfaces: 'x' }, { cgroup: '/no/such/cgroup' }, { cgroup: 'relative' },
      { unit: 'no-such.service' }, JSON.parse('{"snaplen": 1e309}'), { snaplen: -1 }, { count: 0 }, { durationSec: 'x' }, { direction: 'up' }, { statsIntervalSec: 1e9 },
      { pids: [0x7fffffff] }, JSON.parse('{"__proto__": {"x": 1}}')];
    const methods = ['capture.start', 'capture.stop', 'capture.list', 'mirror.add', 'mirror.remove', 'mirror.list', 'mirror.stats'];
    for (const m of methods) {
      for (const p of odd) {
        // capture.start also with the socket's acknowledgement, so that the selectors' checks run.
        const withStream = m === 'capture.start' && typeof p === 'object' && p !== null && !Array.isArray(p) ? [p, { ...(p as object), stream: true }] : [p];
        for (const q of withStream) try {
          await daemon!.callRaw(m, q);
        } catch (err) {
          assert.doesNotMatch((err as Error).message, /internal error/i, `${m} ${JSON.stringify(q)}`);
        }
      }
    }
    for (const m of (await daemon!.call('mirror.list')).mirrors) await daemon!.call('mirror.remove', { name: m.name });
    const st = await daemon!.call('status');
    assert.deepEqual(st.capture?.sessions, []);
    assert.ok(!daemon!.logs().some((l) => l.level === 60 || /internal/i.test(String(l.msg))), 'no internal error logged');
  });
});
