// SPDX-License-Identifier: Apache-2.0
// History fed from the real daemon, as it is today: a stand-in for the in-daemon wiring
// (history-agent.ts) takes the daemon's close events and flow listings over JSON-RPC, like
// the CLI. Clients the test runs talk across a veth pair that tcpdump watches; in between
// the daemon and the agent are restarted cleanly, then killed with SIGKILL. History must
// then hold every client's flow with the bytes tcpdump counted (a long one that spans both
// restarts included), the per-minute totals must add up to the same, and an unprivileged
// user's scope must show that user's flow only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { jsonLines, type Host, type Lab, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { BUILD, destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, type Packet } from '../helpers/pcap.js';
import { HistoryWriter } from '../../daemon/src/history/writer.js';
import { parseHistoryQuery } from '../../daemon/src/history/query.js';
import type { HistoryScope } from '../../daemon/src/history/types.js';

const AGENT = path.join(BUILD, 'test/integration/history-agent.js');
const LIST_MS = 1000;

describe('history from the real daemon, across a restart and a kill -9', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;
  let agent: ChildProcess | undefined;
  let histDir: string;
  let user: TestUser;

  const startAgent = async (): Promise<ChildProcess> => {
    const a = lab.root.spawn(process.execPath, [AGENT, daemon!.socketPath, histDir, String(LIST_MS)]);
    const lines = jsonLines(a);
    await lines.next((o) => o.event === 'ready', 30_000);
    (a as ChildProcess & { lines?: typeof lines }).lines = lines;
    return a;
  };
  /** Waits until the agent has listed the flow table `n` more times. */
  const listings = async (a: ChildProcess, n: number): Promise<void> => {
    const lines = (a as ChildProcess & { lines?: ReturnType<typeof jsonLines> }).lines!;
    const seen = lines.lines.filter((l) => l.event === 'listed').length;
    await lines.next(() => lines.lines.filter((l) => l.event === 'listed').length >= seen + n, 30_000);
  };
  const stopAgent = async (a: ChildProcess, signal: NodeJS.Signals): Promise<void> => {
    const exited = new Promise((r) => a.once('exit', r));
    process.kill(a.pid!, signal);
    await exited;
  };

  before(async () => {
    requireTool('tcpdump', 'setpriv');
    ({ lab, mon, peer, link } = await monitorLab());
    histDir = lab.tmpdir();
    user = await lab.user('hist');
    daemon = await startDaemon(mon);
  });
  after(async () => {
    if (agent && agent.exitCode === null && agent.signalCode === null) await stopAgent(agent, 'SIGKILL');
    await destroyMonitorLab(daemon, lab);
  });

  test('every client flow with the bytes tcpdump counted; per-minute totals add up; scoped by user', async () => {
    agent = await startAgent();
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'history.pcap'));
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '7000']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    // The long flow's server replies nothing (tcp-hold does not read, so a reply would
    // keep its close waiting).
    const srv0 = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const port0 = Number((await jsonLines(srv0).next((o) => o.event === 'listening')).port);
    const clients: Array<{ name: string; pid: number; localPort: number; uid: number; port: number }> = [];
    const shortFlow = async (name: string, bytes: number, as?: TestUser) => {
      const args = [PEER, 'tcp-client', link.b.ip4, String(port), String(bytes), '--expect', '7000'];
      const c = as
        ? mon.spawn('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--init-groups', process.execPath, ...args])
        : mon.spawn(process.execPath, args);
      const done = await jsonLines(c).next((o) => o.event === 'done');
      await new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)));
      clients.push({ name, pid: Number(done.pid), localPort: Number(done.localPort), uid: as?.uid ?? 0, port });
    };
    // A long flow: it grows while listings record what it gained, across both restarts.
    const hold = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(port0)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const holdOut = jsonLines(hold);
    const holdPort = Number((await holdOut.next((o) => o.event === 'connected')).localPort);
    let holdSent = 0;
    const send = async (n: number) => {
      hold.stdin!.write(`send ${n}\n`);
      holdSent += n;
      await holdOut.next((o) => o.event === 'sent' && o.total === holdSent);
    };

    await shortFlow('before the restart', 21_000);
    await send(5000);
    await listings(agent, 2);
    await send(6000);
    await listings(agent, 2);

    // A clean restart of both: the agent writes what is pending on SIGTERM.
    await stopAgent(agent, 'SIGTERM');
    await daemon!.stop();
    await send(3000); // counted by the pinned programs while nobody reads
    daemon = await restartDaemon(daemon!);
    agent = await startAgent();
    await shortFlow('after the restart', 33_000);
    await send(7000);
    await listings(agent, 2);

    // A crash: history dies first, a flow closes that no one records (its close event
    // reaches no subscriber), then the daemon dies too. After the restart the flow comes
    // back from the kernel's flow table (closed flows stay listed for a minute).
    await stopAgent(agent, 'SIGKILL');
    await shortFlow('while history was down', 44_000);
    await daemon!.stop('SIGKILL');
    daemon = await restartDaemon(daemon!);
    agent = await startAgent();
    await send(2000);
    hold.stdin!.write('close\n');
    await holdOut.next((o) => o.event === 'done');
    clients.push({ name: 'long-lived', pid: hold.pid!, localPort: holdPort, uid: 0, port: port0 });
    await shortFlow('an unprivileged user', 12_345, user);
    await listings(agent, 3);
    await stopAgent(agent, 'SIGTERM');
    agent = undefined;
    const pkts: Packet[] = await cap.stop();

    const w = new HistoryWriter({ dir: histDir, maxBytes: 1 << 30, retentionDays: 30, units: false });
    await w.open();
    try {
      const window = { since: Date.now() - 3_600_000, until: Date.now() + 60_000, limit: 1000 };
      let sumTx = 0;
      let sumRx = 0;
      for (const c of clients) {
        const truth = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: c.localPort, remotePort: c.port });
        assert.ok(truth.txBytes > 0, `${c.name}: tcpdump saw it`);
        const r = await w.query({ ...window, pid: c.pid }, 'all');
        const mine = r.flows!.filter((f) => f.localPort === c.localPort && f.remotePort === c.port);
        assert.equal(mine.length, 1, `${c.name}: one flow, recorded once (${JSON.stringify(r.flows)})`);
        const f = mine[0]!;
        assert.deepEqual(
          { tx: f.txBytes, rx: f.rxBytes, txp: f.txPackets, rxp: f.rxPackets },
          { tx: truth.txBytes, rx: truth.rxBytes, txp: truth.txPackets, rxp: truth.rxPackets },
          `${c.name}: history's bytes are tcpdump's`,
        );
        assert.equal(f.state, 'closed', c.name);
        assert.equal(f.uid, c.uid, c.name);
        const perMinute = await w.query({ ...window, pid: c.pid, by: 'process' }, 'all');
        assert.equal(perMinute.source, 'minutes');
        assert.equal(perMinute.groups!.length, 1, `${c.name}: one process, not split by what each record knew of it`);
        assert.deepEqual([perMinute.totals.txBytes, perMinute.totals.rxBytes, perMinute.totals.connections], [truth.txBytes, truth.rxBytes, 1], `${c.name}: per-minute totals add up`);
        sumTx += truth.txBytes;
        sumRx += truth.rxBytes;
      }
      // The long flow was recorded in pieces (listings, then its close), which add up.
      const long = clients.find((c) => c.name === 'long-lived')!;
      const hourly = await w.query({ ...window, pid: long.pid, by: 'hour' }, 'all');
      assert.equal(hourly.totals.connections, 1);
      const toPeer = parseHistoryQuery({ remote: `${link.b.ip4}/32` }, Date.now(), () => null).remote!;
      const byRemote = await w.query({ ...window, remote: toPeer, by: 'remote' }, 'all');
      const toServers = byRemote.groups!.filter((g) => g.remotePort === port || g.remotePort === port0);
      assert.deepEqual(
        [toServers.reduce((s, g) => s + g.txBytes, 0), toServers.reduce((s, g) => s + g.rxBytes, 0), toServers.reduce((s, g) => s + g.connections, 0)],
        [sumTx, sumRx, clients.length],
        'everything sent to the servers, per remote',
      );
      // Scope: the unprivileged user sees their flow and nothing else.
      const scope: HistoryScope = { uid: user.uid };
      const theirs = await w.query(window, scope);
      assert.deepEqual(theirs.flows!.map((f) => [f.pid, f.uid]), [[clients.find((c) => c.uid === user.uid)!.pid, user.uid]]);
      const all = await w.query({ ...window, remote: toPeer }, 'all');
      assert.equal(all.matched, clients.length);
      assert.equal(w.status().movedAside.length, 0);
    } finally {
      await w.close();
    }
  });
});
