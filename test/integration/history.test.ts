// SPDX-License-Identifier: Apache-2.0
// History end to end: the real daemon (history on, its store in the lab's directory) and
// the real CLI (`ebpfmonctl history --json`). Clients the test spawns talk across a veth
// pair that tcpdump watches; in between, the daemon is restarted cleanly, then killed with
// SIGKILL, and a flow closes while it is dead. History must then hold every client's flow
// once, with the bytes tcpdump counted (a long one that spans both restarts included), the
// per-minute totals must add up to the same, and an unprivileged user must see only the
// flow of the process it ran. Then the disk under history fills up (a tmpfs the test
// mounts) and, later, its file is damaged: both show in status, live monitoring goes on,
// and recording resumes by itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { HistoryFlow, HistoryQueryResult } from '../../daemon/src/contract/history.js';
import { jsonLines, sh, type Host, type Lab, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, type Packet } from '../helpers/pcap.js';

interface Client {
  name: string;
  pid: number;
  localPort: number;
  uid: number;
  port: number;
}

describe('history through the daemon and ebpfmonctl, across a restart and a kill -9', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;
  let user: TestUser;
  let histDir: string;
  let mounted = false;

  /** `ebpfmonctl history ... --json` (as root unless `as`). */
  const history = async (args: string[], as?: TestUser): Promise<HistoryQueryResult> => {
    const r = await ctl(['history', '--since', '1h', ...args, '--json'], { socket: daemon!.socketPath, ...(as ? { user: as } : {}) });
    assert.equal(r.code, 0, `ebpfmonctl history ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as HistoryQueryResult;
  };
  const status = async () => (await daemon!.call('status')).history!;
  const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
    for (let i = 0, t0 = Date.now(); i < 600 && Date.now() - t0 < 60_000; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`never: ${what} (${JSON.stringify(await status())})`);
  };
  const flowOf = (r: HistoryQueryResult, c: Client): HistoryFlow[] => r.flows!.filter((f) => f.localPort === c.localPort && f.remotePort === c.port);
  /** Waits until history has written the client's closed flow (what a kill -9 then keeps).
   * While history reopens its file (after a full disk) it answers NotAvailable: not yet. */
  const recorded = async (c: Client): Promise<void> => {
    let last = '';
    for (let i = 0, t0 = Date.now(); i < 200 && Date.now() - t0 < 60_000; i++) {
      const r = await ctl(['history', '--since', '1h', '--pid', String(c.pid), '--json'], { socket: daemon!.socketPath });
      last = r.stderr;
      if (r.code === 0 && flowOf(JSON.parse(r.stdout) as HistoryQueryResult, c).some((f) => f.state === 'closed')) {
        const s = await daemon!.call('status');
        if (s.history!.records.pending === 0) return;
      } else if (r.code !== 0) {
        assert.equal(r.code, 4, `only the daemon's NotAvailable while it reopens: ${r.stderr}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    }
    assert.fail(`${c.name}: never recorded (${last})`);
  };

  before(async () => {
    requireTool('tcpdump', 'setpriv', 'strace');
    ({ lab, mon, peer, link } = await monitorLab());
    user = await lab.user('hist');
    // History on a small filesystem of its own, so that the test can fill it.
    histDir = path.join(lab.tmpdir(), 'history');
    fs.mkdirSync(histDir);
    await sh('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', histDir]);
    mounted = true;
    daemon = await startDaemon(mon, { config: { history: { path: histDir, snapshotIntervalSec: 1, memoryLimitMB: 100 } } });
  });
  after(async () => {
    await daemon?.stop('SIGKILL');
    if (mounted) await sh('umount', [histDir], { allowFail: true });
    await destroyMonitorLab(daemon, lab);
  });

  let port = 0;
  const clients: Client[] = [];
  /** A client that sends `bytes` to the peer's server and reads its 7000-byte reply. */
  const shortFlow = async (name: string, bytes: number, as?: TestUser): Promise<Client> => {
    const args = [PEER, 'tcp-client', link.b.ip4, String(port), String(bytes), '--expect', '7000'];
    const c = as
      ? mon.spawn('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--init-groups', process.execPath, ...args])
      : mon.spawn(process.execPath, args);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    await new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)));
    const client = { name, pid: Number(done.pid), localPort: Number(done.localPort), uid: as?.uid ?? 0, port };
    clients.push(client);
    return client;
  };

  test('every client flow with the bytes tcpdump counted; per-minute totals add up; scoped by user', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'history.pcap'));
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '7000']);
    port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    // The long flow's server replies nothing (tcp-hold does not read, so a reply would
    // keep its close waiting).
    const srv0 = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const port0 = Number((await jsonLines(srv0).next((o) => o.event === 'listening')).port);
    // A long flow: recorded in pieces (each listing records what it gained), across both restarts.
    const hold = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(port0)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const holdOut = jsonLines(hold);
    const holdPort = Number((await holdOut.next((o) => o.event === 'connected')).localPort);
    let holdSent = 0;
    const send = async (n: number) => {
      hold.stdin!.write(`send ${n}\n`);
      holdSent += n;
      await holdOut.next((o) => o.event === 'sent' && o.total === holdSent);
    };

    await recorded(await shortFlow('before the restart', 21_000));
    await send(5000);

    // A clean restart: the daemon writes what is pending on SIGTERM.
    await daemon!.stop();
    await send(3000); // counted by the pinned programs while no daemon runs
    daemon = await restartDaemon(daemon!);
    await recorded(await shortFlow('after the restart', 33_000));
    await send(7000);

    // A crash, once the flow is written; then a flow that closes while the daemon is dead
    // (its close event waits in the pinned ring buffer, its counts in the flow table).
    await daemon!.stop('SIGKILL');
    await shortFlow('while the daemon was dead', 44_000);
    daemon = await restartDaemon(daemon!);
    await send(2000);
    hold.stdin!.write('close\n');
    await holdOut.next((o) => o.event === 'done');
    const long: Client = { name: 'long-lived', pid: hold.pid!, localPort: holdPort, uid: 0, port: port0 };
    clients.push(long);
    const theirs = await shortFlow('an unprivileged user', 12_345, user);
    for (const c of [clients[2]!, long, theirs]) await recorded(c);
    const pkts: Packet[] = await cap.stop();

    let sumTx = 0;
    let sumRx = 0;
    for (const c of clients) {
      const truth = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: c.localPort, remotePort: c.port });
      assert.ok(truth.txBytes > 0, `${c.name}: tcpdump saw it`);
      const mine = flowOf(await history(['--pid', String(c.pid)]), c);
      assert.equal(mine.length, 1, `${c.name}: one flow, recorded once (${JSON.stringify(mine)})`);
      const f = mine[0]!;
      assert.deepEqual(
        { tx: f.txBytes, rx: f.rxBytes, txp: f.txPackets, rxp: f.rxPackets },
        { tx: truth.txBytes, rx: truth.rxBytes, txp: truth.txPackets, rxp: truth.rxPackets },
        `${c.name}: history's bytes are tcpdump's`,
      );
      assert.equal(f.state, 'closed', c.name);
      assert.equal(f.uid, c.uid, c.name);
      const perMinute = await history(['--pid', String(c.pid), '--by', 'process']);
      assert.equal(perMinute.source, 'minutes');
      assert.equal(perMinute.groups!.length, 1, `${c.name}: one process`);
      assert.deepEqual([perMinute.totals.txBytes, perMinute.totals.rxBytes, perMinute.totals.connections], [truth.txBytes, truth.rxBytes, 1], `${c.name}: per-minute totals add up`);
      sumTx += truth.txBytes;
      sumRx += truth.rxBytes;
    }
    assert.ok(holdSent > 0 && sumTx > 0);

    // Everything sent to the servers, per remote endpoint.
    const byRemote = await history(['--remote', `${link.b.ip4}/32`, '--by', 'remote']);
    const toServers = byRemote.groups!.filter((g) => g.remotePort === port || g.remotePort === port0);
    assert.deepEqual(
      [toServers.reduce((s, g) => s + g.txBytes, 0), toServers.reduce((s, g) => s + g.rxBytes, 0), toServers.reduce((s, g) => s + g.connections, 0)],
      [sumTx, sumRx, clients.length],
      'everything sent to the servers, per remote',
    );

    // Scope: the unprivileged user sees the flow of the process it ran and nothing else;
    // asking for root's is refused, not narrowed.
    const asUser = await history([], user);
    assert.deepEqual(asUser.flows!.map((f) => [f.pid, f.uid, f.localPort]), [[theirs.pid, user.uid, theirs.localPort]]);
    const denied = await ctl(['history', '--user', '0', '--json'], { socket: daemon!.socketPath, user });
    assert.equal(denied.code, 3, 'exit code PERMISSION');
    assert.match(denied.stderr, /may only see its own/);
    const st = await status();
    assert.equal(st.state, 'ok');
    assert.equal(st.records.dropped, 0);
    assert.deepEqual(st.movedAside, []);
  });

  test('history.journalSync (default): a flow\'s batch reaches the disk (strace sees fdatasync on the journal file)', async () => {
    assert.ok(port > 0, 'the first test started the server');
    const j0 = (await status()).journal!;
    assert.equal(j0.sync, true, 'on by default');
    // The kernel's account of the daemon's flushes: strace on every thread of the daemon.
    const out = path.join(lab.tmpdir(), 'strace.out');
    const tracer = mon.spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=fdatasync,fsync', '-o', out, '-p', String(daemon!.pid)]);
    try {
      // Attached once every thread of the daemon (the writer's among them) shows strace as
      // its tracer: strace attaches them one by one.
      const traced = (): boolean => fs.readdirSync(`/proc/${daemon!.pid}/task`).every((t) => {
        try {
          return /TracerPid:\s+[1-9]/.test(fs.readFileSync(`/proc/${daemon!.pid}/task/${t}/status`, 'utf8'));
        } catch {
          return true; // a thread that ended meanwhile
        }
      });
      await until('strace attached to every thread', async () => traced());
      const c = await shortFlow('journal sync', 3333);
      await recorded(c);
    } finally {
      tracer.kill('SIGINT');
      await new Promise((r) => (tracer.exitCode !== null || tracer.signalCode !== null ? r(null) : tracer.once('exit', r)));
    }
    const lines = fs.readFileSync(out, 'utf8').split('\n');
    const journal = lines.filter((l) => /fdatasync\(\d+<[^>]*\/journal-\d{16}\.bin>\) = 0/.test(l));
    assert.ok(journal.length >= 1, `fdatasync on a journal file:\n${lines.slice(0, 40).join('\n')}`);
    for (const l of journal) assert.ok(l.includes(`<${histDir}/journal-`), `in the history directory: ${l}`);
    // The writer thread reports its status every second.
    await until(`status counted them (${j0.syncs} before, strace ${journal.length})`, async () => (await status()).journal!.syncs - j0.syncs >= journal.length);
  });

  test('history.memoryLimitMB reaches DuckDB (its own memory_limit, as it prints it); status reports its memory', async () => {
    await until('the engine reported', async () => (await status()).engineMemory !== undefined);
    const m = (await status()).engineMemory!;
    // DuckDB prints 100 MB (10^6 bytes) in MiB, cut to one decimal.
    assert.equal(m.limit, `${(Math.floor((100e6 / 2 ** 20) * 10) / 10).toFixed(1)} MiB`);
    assert.ok(Number.isInteger(m.usedBytes) && m.usedBytes >= 0 && m.usedBytes < 100e6, `within its limit: ${m.usedBytes}`);
  });

  test('a full disk, then a damaged file: status says so, live monitoring goes on, recording resumes', async () => {
    assert.ok(port > 0, 'the first test started the server');
    // The disk fills up: the next flow's record waits in memory, status says disk-full.
    const ballast = path.join(histDir, 'ballast');
    await sh('dd', ['if=/dev/zero', `of=${ballast}`, 'bs=1M', 'count=100'], { allowFail: true }); // stops at ENOSPC
    const full = await shortFlow('while the disk was full', 5555);
    await until('status reports the full disk', async () => {
      const st = await status();
      return st.state === 'degraded' && st.lastError?.code === 'disk-full';
    });
    const live = await ctl(['flows', '--pid', String(full.pid), '--json'], { socket: daemon!.socketPath });
    assert.equal(live.code, 0, live.stderr);
    const liveFlow = (JSON.parse(live.stdout) as Array<{ localPort: number; txBytes: number; rxBytes: number }>).find((f) => f.localPort === full.localPort);
    assert.ok(liveFlow && liveFlow.txBytes > 5555, 'live monitoring goes on');
    fs.rmSync(ballast);
    await recorded(full);
    const [f] = flowOf(await history(['--pid', String(full.pid)]), full);
    assert.deepEqual([f!.txBytes, f!.rxBytes], [liveFlow.txBytes, liveFlow.rxBytes], 'written once there was room, with the counts the monitor had');
    assert.equal((await status()).state, 'ok');

    // A damaged file: found at start, moved aside, a new one started; the daemon serves on.
    await daemon!.stop();
    const fd = fs.openSync(path.join(histDir, 'history.duckdb'), 'r+');
    fs.writeSync(fd, Buffer.alloc(8192, 0xa5), 0, 8192, 0);
    fs.closeSync(fd);
    daemon = await restartDaemon(daemon!);
    await until('status reports the damaged file', async () => (await status()).movedAside.length === 1);
    const st = await status();
    assert.equal(st.lastError?.code, 'corrupt');
    assert.match(st.movedAside[0]!.path, /history\.duckdb\.corrupt-/);
    assert.ok(fs.existsSync(st.movedAside[0]!.path), 'the damaged file is kept for inspection');
    await recorded(await shortFlow('after the damage', 4444));
  });

  test('SIGHUP: new retention limits apply at once; a history key that needs a restart is named in the log', async () => {
    const cfg = JSON.parse(fs.readFileSync(daemon!.configPath, 'utf8')) as { history: Record<string, unknown> };
    const maxBytes = 32 << 20;
    fs.writeFileSync(daemon!.configPath, JSON.stringify({ ...cfg, history: { ...cfg.history, retentionDays: 7, maxBytes, detailFlowsPerSec: 500 } }));
    process.kill(daemon!.pid, 'SIGHUP');
    await until('status shows the new limits', async () => {
      const st = await status();
      return st.retentionDays === 7 && st.maxBytes === maxBytes;
    });
    const t0 = Date.now();
    const warned = () => daemon!.logs().find((l) => String(l.msg).startsWith('reload: '));
    while (!warned() && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
    assert.match(String(warned()?.msg), /^reload: history\.detailFlowsPerSec changed and take effect at the next start/, 'the key that waits is named');
    assert.doesNotMatch(String(warned()?.msg), /retentionDays|maxBytes/, 'the applied ones are not');
    fs.writeFileSync(daemon!.configPath, JSON.stringify(cfg));
  });
});
