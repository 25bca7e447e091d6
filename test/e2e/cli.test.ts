// SPDX-License-Identifier: Apache-2.0
// ebpfmonctl end to end, as real unprivileged users against the real daemon: a user
// gets its own flows with exact byte counts (tcpdump is the truth), never another uid's
// (a member of the daemon's group sees all), follows events, and gets the promised exit
// codes. The daemon learns who calls from SO_PEERCRED; nothing here is faked.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { type Lab, jsonLines, type Host, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { ctl, CTL_MAIN, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';
import type { Flow } from '../../daemon/src/contract/flows.js';


describe('ebpfmonctl as unprivileged users', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let serverPort: number;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    const group = await lab.group('see');
    alice = await lab.user('alice');
    bob = await lab.user('bob');
    carol = await lab.user('carol', [group]);
    daemon = await startDaemon(mon, { config: { access: { group, adminGroup: `${group}adm` } } });
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '3000']);
    serverPort = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
  });
  after(() => destroyMonitorLab(daemon, lab));

  const as = (u: TestUser) => ({ uid: u.uid, gid: u.gid });
  async function connectAs(u: TestUser, bytes: number) {
    const c = mon.spawn('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', process.execPath, PEER, 'tcp-client', link.b.ip4, String(serverPort), String(bytes), '--expect', '3000']);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    return { pid: c.pid!, localPort: Number(done.localPort) };
  }

  test('flows --pid N --json returns the user\'s own flow with exact byte counts', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'cli.pcap'));
    const a = await connectAs(alice, 40_000);
    const pkts = await cap.stop();
    const r = await ctl(['flows', '--pid', String(a.pid), '--json'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(r.code, 0, r.stderr);
    const flows = JSON.parse(r.stdout) as Flow[];
    assert.equal(flows.length, 1);
    const f = flows[0]!;
    for (const k of ['protocol', 'family', 'localAddr', 'localPort', 'remoteAddr', 'remotePort', 'direction', 'interface', 'pid', 'comm', 'uid', 'state', 'txBytes', 'rxBytes', 'txPackets', 'rxPackets', 'firstSeenAt', 'lastSeenAt', 'attributedBy']) {
      assert.ok(k in f, `--json flow has ${k}`);
    }
    assert.deepEqual([f.pid, f.uid, f.comm, f.localPort], [a.pid, alice.uid, 'node', a.localPort]);
    const o = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: a.localPort, remotePort: serverPort });
    assert.deepEqual([f.txBytes, f.rxBytes, f.txPackets, f.rxPackets], [o.txBytes, o.rxBytes, o.txPackets, o.rxPackets]);
  });

  test('a user never sees another uid\'s flows; a member of the daemon\'s group sees them', async () => {
    const b = await connectAs(bob, 1000);
    const aliceView = await ctl(['flows', '--pid', String(b.pid), '--json'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(aliceView.code, 0);
    assert.deepEqual(JSON.parse(aliceView.stdout), [], 'alice does not see bob\'s flow');
    const aliceAll = JSON.parse((await ctl(['flows', '--json'], { socket: daemon.socketPath, user: as(alice) })).stdout) as Flow[];
    assert.ok(aliceAll.length > 0 && aliceAll.every((f) => f.uid === alice.uid), 'everything alice sees is hers');
    const denied = await ctl(['flows', '--uid', String(bob.uid)], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(denied.code, 3, 'exit code 3: permission denied');
    assert.match(denied.stderr, /may only see its own flows/);
    const carolView = JSON.parse((await ctl(['flows', '--pid', String(b.pid), '--json'], { socket: daemon.socketPath, user: as(carol) })).stdout) as Flow[];
    assert.equal(carolView.length, 1, 'carol (group member) sees bob\'s flow');
    assert.equal(carolView[0]!.uid, bob.uid);
  });

  test('events --json shows the connect and close of a connection made after it started', async () => {
    const child = spawn('setpriv', [`--reuid=${alice.uid}`, `--regid=${alice.gid}`, '--init-groups', process.execPath, CTL_MAIN, '--socket', daemon.socketPath, 'events', '--json', '--type', 'connect,close'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EBPFMONCTL_ANNOUNCE: '1' },
    });
    lab.track(child);
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const lines = jsonLines(child);
    const t0 = Date.now();
    while (!err.includes('subscribed') && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    const b = await connectAs(bob, 500); // not alice's: must not appear
    const a = await connectAs(alice, 2000);
    const connect = await lines.next((o) => o.type === 'connect' && o.pid === a.pid);
    const close = await lines.next((o) => o.type === 'close' && o.pid === a.pid);
    assert.equal(connect.localPort, a.localPort);
    assert.equal(close.payloadBytesSent, 2000);
    assert.ok(lines.lines.every((o) => o.pid !== b.pid), 'bob\'s events are not shown to alice');
    process.kill(child.pid!, 'SIGINT');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, 'interrupting events exits 0');
  });

  test('human output: flows, status, programs and top print tables', async () => {
    const flows = await ctl(['flows', '--comm', 'node'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(flows.code, 0, flows.stderr);
    assert.match(flows.stdout.split('\n')[0]!, /^PROTO\s+LOCAL\s+DIR\s+REMOTE\s+WHERE\s+PID\s+COMM\s+USER\s+BY\s+STATE\s+SENT\s+RECV\s+IF$/);
    assert.match(flows.stdout, new RegExp(`${alice.name}\\s+connect`));
    // WHERE: the lab's addresses are in 198.18.0.0/15, the range RFC 2544 keeps for benchmarking.
    assert.match(flows.stdout, new RegExp(`${link.b.ip4.replaceAll('.', '\\.')}:\\d+\\s+benchmarking\\s`));
    const status = await ctl(['status'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /active\s+classifier\s+tc clsact/);
    assert.match(status.stdout, new RegExp(link.a.ifname));
    const progs = await ctl(['programs', '--json'], { socket: daemon.socketPath, user: as(alice) });
    const p = JSON.parse(progs.stdout) as { programs: Array<{ name: string; hooks: string[] }> };
    assert.ok(p.programs.find((x) => x.name === 'tc_ingress')?.hooks.includes(`tc ingress ${link.a.ifname}`));
    const top = await ctl(['top', '--count', '2', '--interval', '1', '--json'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(top.code, 0, top.stderr);
    const frames = top.stdout.trim().split('\n').map((l) => JSON.parse(l) as Array<{ uid: number; txBytes: number }>);
    assert.equal(frames.length, 2);
    assert.ok(frames[1]!.length > 0 && frames[1]!.every((r) => r.uid === alice.uid));
  });

  test('status: the daemon\'s own memory and CPU, as the kernel counts them for its pid', async () => {
    const proc = () => {
      const st = fs.readFileSync(`/proc/${daemon.pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const rss = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))![1]) * 1024;
      return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, rss }; // utime + stime in 10 ms ticks
    };
    const a = proc();
    const r = await ctl(['status', '--json'], { socket: daemon.socketPath, user: as(alice) });
    const b = proc();
    assert.equal(r.code, 0, r.stderr);
    const res = (JSON.parse(r.stdout) as { resources: { rssBytes: number; cpuMs: number; cpuPercent: number | null; cpuWindowMs: number; heapUsedBytes: number; heapTotalBytes: number } }).resources;
    // Between the kernel's figures read before and after the call: /proc's are in 10 ms
    // ticks, split and rounded per thread, getrusage's exact (50 ms or 2% of slack).
    const slack = Math.max(50, 0.02 * b.cpuMs);
    assert.ok(res.cpuMs >= a.cpuMs - slack && res.cpuMs <= b.cpuMs + slack, `cpuMs ${res.cpuMs}, /proc ${a.cpuMs}..${b.cpuMs}`);
    assert.ok(res.rssBytes >= Math.min(a.rss, b.rss) * 0.9 && res.rssBytes <= Math.max(a.rss, b.rss) * 1.1, `rssBytes ${res.rssBytes}, /proc ${a.rss}..${b.rss}`);
    assert.ok(res.cpuWindowMs > 0 && res.cpuWindowMs <= 60_000 && res.cpuPercent !== null && res.cpuPercent >= 0);
    assert.ok(res.heapUsedBytes > 0 && res.heapUsedBytes <= res.heapTotalBytes);
    const text = await ctl(['status'], { socket: daemon.socketPath, user: as(alice) });
    assert.match(text.stdout, /^resources: RSS \d+(\.\d+)? MiB \(heap .*; CPU \d+\.\d\d% of a core over the last \d+s, \d+\.\d s of CPU since the start$/m);
  });

  test('exit codes: 1 usage, 2 daemon unreachable (naming the socket), 3 permission denied', async () => {
    const usage = await ctl(['flows', '--pid', 'abc'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /--pid.*abc.*integer/);
    const dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755); // reachable by alice: the socket is simply not there
    const gone = path.join(dir, 'nobody.sock');
    const unreachable = await ctl(['status'], { socket: gone, user: as(alice) });
    assert.equal(unreachable.code, 2);
    assert.match(unreachable.stderr, new RegExp(`cannot reach the ebpfmon daemon at ${gone.replace(/[.]/g, '\\.')}.*systemctl start ebpfmon`));
    // `ui` runs its server from the compiled module tree beside the bundled client: its
    // errors are the client's all the same (a message and an exit code, no stack).
    const ui = await ctl(['ui'], { socket: gone, user: as(alice) });
    assert.equal(ui.code, 2, ui.stderr);
    assert.match(ui.stderr, /^ebpfmonctl: cannot reach the ebpfmon daemon at .*\n$/);
    const badAddr = await ctl(['flows', '--remote', 'not-an-ip'], { socket: daemon.socketPath, user: as(alice) });
    assert.equal(badAddr.code, 1, 'a value the daemon refuses is a usage error too');
    assert.match(badAddr.stderr, /params\.remoteAddr/);
  });
});
