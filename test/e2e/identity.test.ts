// SPDX-License-Identifier: Apache-2.0
// Identity end to end: the real daemon (lab host `mon`), the real ebpfmonctl, and cgroups the
// test creates named the way systemd, docker and a desktop launcher name theirs. Each client
// is a process the test spawned and moved into its cgroup before it ran (its pid is the
// truth for the owner, the directory the test made for the cgroup), and tcpdump on the link
// is the truth for bytes: `flows --container/--unit/--cgroup/--app` find exactly those
// flows, `top --by unit|container|app` totals equal what the capture saw for the group's
// processes, `events --unit/--container` follow exactly those processes' connections (the
// pids the test spawned; a process outside the filter never shows), and `identity PID` names what the test built. The daemon also serves D-Bus on a private system-like bus (with the
// real bus policy): GetFlows, GetProcessTotals and GetIdentity answer what the CLI does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { jsonLines, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, CTL_MAIN, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, type Packet } from '../helpers/pcap.js';
import { TestCgroups } from '../helpers/cgroups.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import type { GroupTotals, IdentityResult } from '../../daemon/src/contract/identity.js';
import { Agent, errorOf, manager, ok, plain, REPO, startPrivateBus, v } from '../helpers/dbus.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';

const TCP = 6;

/** Polls `cond` (output a process writes as it goes) for up to 15 s. */
async function waitFor(cond: () => boolean, show: () => string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 15_000) assert.fail(`not seen in 15 s: ${show().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const DOCKER = Buffer.from('e2e-docker-container-id-for-ebpfmon').toString('hex').padEnd(64, '0').slice(0, 64);
const UNIT = 'emon-e2e-web.service';
const APP_SCOPE = 'app-gnome-org.example.E2eEditor-4711.scope';

describe('identity through the daemon and ebpfmonctl', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let cgs: TestCgroups;
  let serverPort = 0;
  let agent: Agent;
  const cg = { docker: '', unit: '', app: '' };

  before(async () => {
    requireTool('tcpdump', 'sh', 'sleep', 'dbus-daemon');
    ({ lab, mon, peer, link } = await monitorLab());
    cgs = await TestCgroups.create();
    cg.docker = cgs.mkdir(`system.slice/docker-${DOCKER}.scope`);
    cg.unit = cgs.mkdir(`system.slice/${UNIT}`);
    cg.app = cgs.mkdir(`user.slice/user-1000.slice/user@1000.service/app.slice/${APP_SCOPE}`);
    const bus = await startPrivateBus({ policies: [path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf')], lab });
    daemon = await startDaemon(mon, { config: { dbus: { enabled: true, address: bus.address }, flows: { gcIntervalSec: 2, closedRetentionSec: 1800 } } });
    agent = await Agent.start(lab, bus.address, null);
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '3000']);
    serverPort = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
  });
  after(async () => {
    await destroyMonitorLab(daemon, lab);
    await cgs?.destroy();
  });

  const run = async (args: string[]) => {
    const r = await ctl(args, { socket: daemon.socketPath });
    assert.equal(r.code, 0, `ebpfmonctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const flowsOf = async (...args: string[]) => JSON.parse(await run(['flows', ...args, '--json'])) as Flow[];

  /** Starts `argv` in `mon`, moved into `cgPath` before it runs (a shell waits for the move, then execs it: same pid). */
  function startIn(cgPath: string, argv: string[]) {
    const child = mon.spawn('sh', ['-c', 'read go; exec "$@"', 'sh', ...argv], { stdio: ['pipe', 'pipe', 'inherit'] });
    cgs.move(child.pid!, cgPath);
    child.stdin!.write('go\n');
    return child;
  }
  /** A client in `cgPath` sending `n` bytes to the peer's server (which answers 3000). */
  async function clientIn(cgPath: string, n: number) {
    const c = startIn(cgPath, [process.execPath, PEER, 'tcp-client', link.b.ip4, String(serverPort), String(n), '--expect', '3000']);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    assert.equal(done.pid, c.pid, 'the client is the process the test spawned and moved');
    return { pid: c.pid!, localPort: Number(done.localPort) };
  }
  const truth = (pkts: Packet[], localPort: number) => {
    const t = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: TCP, localPort, remotePort: serverPort });
    assert.ok(t.txPackets > 0 && t.rxPackets > 0, `the capture saw port ${localPort}`);
    return t;
  };

  test('flows --container/--unit/--cgroup/--app find exactly the flows of the processes placed there, named and counted as tcpdump saw', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'id1.pcap'));
    const d = await clientIn(cg.docker, 11_000);
    const u = await clientIn(cg.unit, 22_000);
    const a = await clientIn(cg.app, 33_000);
    const pkts = await cap.stop();

    const byContainer = await flowsOf('--container', DOCKER.slice(0, 12));
    assert.deepEqual(byContainer.map((f) => [f.pid, f.localPort]), [[d.pid, d.localPort]], 'the docker-named cgroup\'s flow and nothing else');
    const f = byContainer[0]!;
    assert.deepEqual(f.container, { runtime: 'docker', id: DOCKER });
    assert.deepEqual([f.cgroupPath, f.unit, f.slice, f.app], [cg.docker, `docker-${DOCKER}.scope`, 'system.slice', null]);
    const t = truth(pkts, d.localPort);
    assert.deepEqual([f.txBytes, f.rxBytes, f.txPackets, f.rxPackets], [t.txBytes, t.rxBytes, t.txPackets, t.rxPackets], 'counts == tcpdump');
    assert.deepEqual((await flowsOf('--cgroup', cg.docker)).map((x) => x.pid), [d.pid]);

    const byUnit = await flowsOf('--unit', UNIT);
    assert.deepEqual(byUnit.map((x) => [x.pid, x.localPort, x.unit, x.container]), [[u.pid, u.localPort, UNIT, null]]);
    assert.deepEqual((await flowsOf('--unit', 'emon-e2e-*')).map((x) => x.pid), [u.pid], 'a prefix pattern');

    const byApp = await flowsOf('--app', 'org.example.E2eEditor');
    assert.deepEqual(byApp.map((x) => [x.pid, x.unit, x.userUnit, x.slice]), [[a.pid, 'user@1000.service', APP_SCOPE, 'user-1000.slice']]);
    assert.deepEqual(byApp[0]!.app, { kind: 'desktop', id: 'org.example.E2eEditor' });
    assert.deepEqual((await flowsOf('--unit', APP_SCOPE)).map((x) => x.pid), [a.pid], 'a user unit by its name');

    // an ancestor selects all three; filters combine (AND)
    const all = await flowsOf('--cgroup', cgs.top);
    assert.deepEqual(all.map((x) => x.pid ?? 0).sort((x, y) => x - y), [d.pid, u.pid, a.pid].sort((x, y) => x - y));
    assert.deepEqual(await flowsOf('--unit', UNIT, '--container', DOCKER.slice(0, 12)), []);

    // the human table grows identity columns
    const table = await run(['flows', '--cgroup', cgs.top]);
    assert.match(table.split('\n')[0]!, /\bUNIT\b.*\bCONTAINER\b/);
    assert.match(table, /docker:/);
  });

  test('top --by unit|container|app: each group\'s totals equal what tcpdump saw for its processes', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'id2.pcap'));
    const before = JSON.parse(await run(['top', '--by', 'unit', '--count', '1', '--json', '--cgroup', cg.unit])) as GroupTotals[];
    const u1 = await clientIn(cg.unit, 5_000);
    const u2 = await clientIn(cg.unit, 7_000);
    const pkts = await cap.stop();
    const rows = JSON.parse(await run(['top', '--by', 'unit', '--count', '1', '--json'])) as GroupTotals[];
    const row = rows.find((r) => r.key === UNIT);
    assert.ok(row, JSON.stringify(rows.map((r) => r.key)));
    assert.equal(row.label, UNIT);
    assert.ok([u1.pid, u2.pid].every((p) => row.pids.includes(p)), `${JSON.stringify(row.pids)} has both clients`);
    // totals before these two (the first test's client) plus what the capture saw of the two
    const prev = before.find((r) => r.key === UNIT) ?? { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, flows: 0 };
    const seen = [u1, u2].map((c) => truth(pkts, c.localPort));
    const sum = (k: 'txBytes' | 'rxBytes' | 'txPackets' | 'rxPackets') => prev[k] + seen.reduce((s, x) => s + x[k], 0);
    assert.deepEqual([row.txBytes, row.rxBytes, row.txPackets, row.rxPackets, row.flows], [sum('txBytes'), sum('rxBytes'), sum('txPackets'), sum('rxPackets'), prev.flows + 2]);
    // and the sum of the unit's flows as flows.list reports them
    const fl = await flowsOf('--unit', UNIT);
    assert.equal(fl.reduce((s, x) => s + x.txBytes, 0), row.txBytes);
    assert.equal(fl.reduce((s, x) => s + x.rxBytes, 0), row.rxBytes);

    const containers = JSON.parse(await run(['top', '--by', 'container', '--count', '1', '--json'])) as GroupTotals[];
    const c = containers.find((r) => r.key === `docker:${DOCKER}`);
    assert.ok(c);
    assert.equal(c.label, `docker:${DOCKER.slice(0, 12)}`);
    const cf = await flowsOf('--container', DOCKER);
    assert.deepEqual([c.pids, c.txBytes], [cf.map((x) => x.pid), cf.reduce((s, x) => s + x.txBytes, 0)]);
    const apps = JSON.parse(await run(['top', '--by', 'app', '--count', '1', '--json'])) as GroupTotals[];
    assert.ok(apps.find((r) => r.key === 'desktop:org.example.E2eEditor'), JSON.stringify(apps.map((r) => r.key)));
    const human = await run(['top', '--by', 'unit', '--count', '1']);
    assert.match(human, new RegExp(`^${UNIT.replace(/\./g, '\\.')}\\s+${row.pids.length}\\s`, 'm'), human);
  });

  /** `ebpfmonctl events ARGS` (the real CLI), once it has subscribed: its stdout as JSON lines and as text. */
  async function followEvents(args: string[]) {
    const child = spawn(process.execPath, [CTL_MAIN, '--socket', daemon.socketPath, 'events', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EBPFMONCTL_ANNOUNCE: '1' },
    });
    lab.track(child);
    let err = '';
    let text = '';
    const subscribed = new Promise<void>((resolve, reject) => {
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (err.includes('subscribed')) resolve();
      });
      child.once('exit', (c) => reject(new Error(`ebpfmonctl events exited (${c}): ${err}`)));
    });
    const lines = jsonLines(child);
    child.stdout!.on('data', (d: string) => (text += d));
    await subscribed;
    return {
      lines,
      text: () => text,
      stop: async () => {
        process.kill(child.pid!, 'SIGINT');
        return new Promise((r) => child.once('exit', r));
      },
    };
  }

  test('events --unit/--container: the connect and close of the process placed there, with its identity; processes outside the filter never show', async () => {
    const byUnit = await followEvents(['--json', '--type', 'connect,close', '--unit', UNIT]);
    const byContainer = await followEvents(['--type', 'connect,close', '--container', DOCKER.slice(0, 16)]);
    const other = await clientIn(cg.docker, 1000); // first: its events come before the unit's, and --unit must not show them
    const mine = await clientIn(cg.unit, 2000);
    const connect = await byUnit.lines.next((o) => o.type === 'connect' && o.pid === mine.pid);
    const close = await byUnit.lines.next((o) => o.type === 'close' && o.pid === mine.pid);
    for (const e of [connect, close]) {
      assert.equal(e.localPort, mine.localPort, 'the connection the client made');
      assert.deepEqual([e.unit, e.userUnit, e.slice, e.cgroupPath, e.container, e.app], [UNIT, null, 'system.slice', cg.unit, null, null]);
      assert.match(String(e.cgroupId), /^[1-9]\d*$/);
      // geo is on (the default): rows carry where the remote address is
      assert.deepEqual((e.remoteGeo as { label: string }).label, 'benchmarking', '198.18.0.0/15');
    }
    // The docker-named client connected and closed before it: the kernel and the daemon
    // saw it (the container subscriber shows it), the unit subscriber did not.
    await waitFor(() => new RegExp(`close +\\S+\\[${other.pid}\\]`).test(byContainer.text()), () => byContainer.text());
    assert.ok(byUnit.lines.lines.every((o) => o.pid !== other.pid), 'the docker client is filtered out');
    assert.ok(byUnit.lines.lines.every((o) => o.unit === UNIT), JSON.stringify(byUnit.lines.lines.map((o) => o.unit)));
    const lines = byContainer.text().split('\n').filter((l) => l.includes(`[${other.pid}]`));
    assert.ok(lines.some((l) => / connect /.test(l) && l.includes(`{docker-${DOCKER}.scope, docker:${DOCKER.slice(0, 12)}}`)), lines.join('\n'));
    assert.ok(!byContainer.text().includes(`[${mine.pid}]`), 'the unit\'s client is not in the container');
    assert.equal(await byUnit.stop(), 0);
    assert.equal(await byContainer.stop(), 0);
    // A bad filter is refused naming the flag's parameter, by the CLI and by the daemon.
    const bad = await ctl(['events', '--cgroup', 'system.slice'], { socket: daemon.socketPath });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--cgroup/);
    const badUnit = await ctl(['events', '--unit', 'a/b.service'], { socket: daemon.socketPath });
    assert.notEqual(badUnit.code, 0);
    assert.match(badUnit.stderr, /params\.unit/);
  });

  test('identity PID names the cgroup, user unit and app the test built, and the process tree', async () => {
    const sleeper = startIn(cg.app, ['sleep', '300']);
    // the move happened before exec: wait until the process runs sleep
    const r = await (async () => {
      for (let i = 0; i < 200; i++) {
        const out = JSON.parse(await run(['identity', String(sleeper.pid), '--json'])) as IdentityResult;
        if (out.tree[0]?.comm === 'sleep') return out;
        await new Promise((res) => setTimeout(res, 25));
      }
      assert.fail('sleep never ran');
    })();
    assert.deepEqual([r.pid, r.cgroupPath, r.unit, r.userUnit, r.slice, r.container], [sleeper.pid, cg.app, 'user@1000.service', APP_SCOPE, 'user-1000.slice', null]);
    assert.deepEqual(r.app, { kind: 'desktop', id: 'org.example.E2eEditor' });
    assert.deepEqual(r.tree, [{ pid: sleeper.pid, comm: 'sleep' }], 'its parent (this test) is in another cgroup');
    const human = await run(['identity', String(sleeper.pid)]);
    assert.match(human, new RegExp(`user unit\\s+${APP_SCOPE.replace(/\./g, '\\.')}`));
    const bad = await ctl(['identity', '--cgroup-id', '0x1'], { socket: daemon.socketPath });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /cgroup id/);
    sleeper.kill('SIGKILL');
  });

  test('D-Bus: GetFlows by container, GetProcessTotals by unit and GetIdentity answer what the CLI does', async () => {
    const sleeper = startIn(cg.docker, ['sleep', '300']);
    const c = await clientIn(cg.docker, 4000);
    const cli = await flowsOf('--container', DOCKER.slice(0, 12));
    assert.ok(cli.some((f) => f.pid === c.pid), 'the CLI sees the new client');
    const key = (f: Flow) => `${f.pid}:${f.localPort}:${f.txBytes}:${f.rxBytes}:${f.unit ?? ''}`;
    const bus = plain(ok(await agent.call(manager('GetFlows', 'a{sv}', [{ container: v('s', DOCKER.slice(0, 12)) }]))))[0] as Flow[];
    assert.deepEqual(bus.map(key).sort(), cli.map(key).sort());
    assert.ok(bus.every((f) => f.container?.runtime === 'docker' && f.container.id === DOCKER && f.cgroupPath === cg.docker));

    const [procs, groups] = plain(ok(await agent.call(manager('GetProcessTotals', 'a{sv}', [{ by: v('s', 'unit'), unit: v('s', UNIT) }])))) as [Array<{ pid: number; unit: string }>, GroupTotals[]];
    const cliRows = JSON.parse(await run(['top', '--by', 'unit', '--count', '1', '--json', '--unit', UNIT])) as GroupTotals[];
    assert.deepEqual(groups.map((g) => [g.key, [...g.pids].sort(), g.txBytes, g.rxBytes]), cliRows.map((g) => [g.key, [...g.pids].sort(), g.txBytes, g.rxBytes]));
    assert.ok(procs.length >= 1 && procs.every((p) => p.unit === UNIT), JSON.stringify(procs));

    let id: IdentityResult | undefined;
    for (let i = 0; i < 200 && id?.tree[0]?.comm !== 'sleep'; i++) {
      if (i) await new Promise((res) => setTimeout(res, 25));
      id = plain(ok(await agent.call(manager('GetIdentity', 'a{sv}', [{ pid: v('u', sleeper.pid!) }]))))[0] as IdentityResult;
    }
    assert.deepEqual([id?.pid, id?.cgroupPath, id?.unit, id?.container?.id], [sleeper.pid, cg.docker, `docker-${DOCKER}.scope`, DOCKER]);
    assert.equal(errorOf(await agent.call(manager('GetFlows', 'a{sv}', [{ cgroup: v('s', 'relative/path') }]))), ERRORS.InvalidParams.dbus);
    assert.equal(errorOf(await agent.call(manager('GetProcessTotals', 'a{sv}', [{ by: v('s', 'pod') }]))), ERRORS.InvalidParams.dbus);
    sleeper.kill('SIGKILL');
  });
});
