// SPDX-License-Identifier: Apache-2.0
// History beyond its detail budget, end to end: the real daemon with a budget of one flow a
// second (bursts of ten) and the real CLI. One client process makes 60 short connections
// across a veth pair tcpdump watches: the first are kept in detail, the rest rolled up per
// process, protocol, minute and remote endpoint (the server's address and port; no local
// port). Checked against tcpdump: the per-minute totals and the records each add up to
// every connection's bytes, each connection counts once (in detail or rolled up), `history
// --remote` finds them all, and status counts what the budget did not keep.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { HistoryQueryResult } from '../../daemon/src/contract/history.js';
import { jsonLines, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';

const COUNT = 60;

describe('history beyond its detail budget, through the daemon and ebpfmonctl', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;

  const history = async (args: string[]): Promise<HistoryQueryResult> => {
    const r = await ctl(['history', '--since', '1h', ...args, '--json'], { socket: daemon!.socketPath });
    assert.equal(r.code, 0, `ebpfmonctl history ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as HistoryQueryResult;
  };

  before(async () => {
    requireTool('tcpdump');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { history: { path: path.join(lab.tmpdir(), 'history'), detailFlowsPerSec: 1 } } });
  });
  after(async () => {
    await daemon?.stop('SIGKILL');
    await destroyMonitorLab(daemon, lab);
  });

  test('totals equal tcpdump\'s bytes; each connection once, in detail or rolled up; status counts the rolled-up', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'budget.pcap'));
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '3000']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const before = (await daemon!.call('status')).history!.records.rolledUp;
    const c = mon.spawn(process.execPath, [PEER, 'tcp-clients', link.b.ip4, String(port), '1500', '--count', String(COUNT)]);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    assert.equal(done.received, COUNT * 3000, 'every reply read to its end');
    const pid = c.pid!;
    const ports = done.localPorts as number[];
    // Wait until every connection is written: the per-minute totals count them all.
    let perMinute: HistoryQueryResult | undefined;
    for (let i = 0, t0 = Date.now(); i < 300 && Date.now() - t0 < 30_000; i++) {
      perMinute = await history(['--pid', String(pid), '--by', 'process']);
      if (perMinute.totals.connections >= COUNT && (await daemon!.call('status')).history!.records.pending === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const pkts = await cap.stop();
    const truth = { tx: 0, rx: 0, txp: 0, rxp: 0 };
    for (const lp of ports) {
      const t = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: lp, remotePort: port });
      assert.ok(t.txBytes > 1500, `tcpdump saw connection ${lp}`);
      truth.tx += t.txBytes;
      truth.rx += t.rxBytes;
      truth.txp += t.txPackets;
      truth.rxp += t.rxPackets;
    }
    const tot = (r: HistoryQueryResult) => ({ tx: r.totals.txBytes, rx: r.totals.rxBytes, txp: r.totals.txPackets, rxp: r.totals.rxPackets, conns: r.totals.connections });
    assert.equal(perMinute!.source, 'minutes');
    assert.deepEqual(tot(perMinute!), { ...truth, conns: COUNT }, 'per-minute totals: every connection with tcpdump\'s bytes');

    const flows = await history(['--pid', String(pid)]);
    assert.deepEqual(tot(flows), { ...truth, conns: COUNT }, 'the records add up to the same');
    const detail = flows.flows!.filter((f) => f.state === 'closed');
    const rolled = flows.flows!.filter((f) => f.state === 'rolled-up');
    assert.ok(detail.length >= 1 && detail.length <= 10 + 30, `the burst of ten (and a token a second) in detail: ${detail.length}`);
    assert.ok(detail.every((f) => ports.includes(f.localPort!) && f.remotePort === port), 'detail flows keep their ports');
    assert.ok(rolled.length >= 1, 'the rest rolled up');
    assert.ok(rolled.every((f) => f.localPort === null && f.remotePort === port && f.remoteAddr === link.b.ip4 && f.protocol === 'tcp' && f.pid === pid),
      `rolled up with the server's endpoint: ${JSON.stringify(rolled.map((f) => [f.remoteAddr, f.localPort, f.remotePort]))}`);
    const toServer = await history(['--pid', String(pid), '--remote', link.b.ip4]);
    assert.deepEqual(tot(toServer), { ...truth, conns: COUNT }, 'history --remote: every connection to the server, in detail or rolled up, with tcpdump\'s bytes');
    const byRemote = await history(['--pid', String(pid), '--by', 'remote']);
    assert.deepEqual(byRemote.groups!.map((g) => [g.remoteAddr, g.remotePort, g.connections, g.txBytes]), [[link.b.ip4, port, COUNT, truth.tx]], '--by remote: one endpoint, all of it');
    const rolledConns = rolled.reduce((s, f) => s + f.connections, 0);
    assert.equal(detail.length + rolledConns, COUNT, 'each connection once');
    // Status comes from the writer once a second: wait for the one sent after the write.
    let counted = 0;
    for (let i = 0, t0 = Date.now(); i < 100 && Date.now() - t0 < 10_000; i++) {
      counted = (await daemon!.call('status')).history!.records.rolledUp - before;
      if (counted >= rolledConns) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(counted, rolledConns, 'status counts what the budget did not keep');
  });
});
