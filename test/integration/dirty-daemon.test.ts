// SPDX-License-Identifier: Apache-2.0
// The dirty-flow ring through the real daemon, the real programs and the real CLI (issue
// 17): real TCP connections from separate processes (short ones that close, one that stays
// open and sends between refreshes); after each round, `ebpfmonctl top --json` (per-owner
// totals kept from the changed flows) must equal the per-pid sums of `ebpfmonctl flows
// --json` (a walk of the table), and at the end the byte and packet counts tcpdump saw.
// `status` must say the ring runs and that top's answers were refreshes, not walks. A flow
// made and closed between two refreshes is pushed once, not once for its creation and again
// for its close (its stamp already at or after the epoch: bpf/monitor/helpers.bpf.h
// dirty_mark), and top still equals the walk and counts those flows closed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import type { StatusResult } from '../../daemon/src/contract/status.js';
import { tcpAcked } from '../helpers/wait.js';

interface Row { pid: number | null; flows: number; openFlows: number; txBytes: number; rxBytes: number; txPackets: number; rxPackets: number }

describe('dirty-flow ring: top equals the walk and tcpdump (real daemon)', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let port: number;
  /** A server that answers nothing (the long-lived client reads nothing: it must see the FIN alone). */
  let quietPort: number;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { history: { enabled: false } } });
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '1500']);
    port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const quiet = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    quietPort = Number((await jsonLines(quiet).next((o) => o.event === 'listening')).port);
  });
  after(() => destroyMonitorLab(daemon, lab));

  const json = async <T>(args: string[]): Promise<T> => {
    const r = await ctl(args, { socket: daemon.socketPath });
    assert.equal(r.code, 0, r.stderr);
    // top prints one JSON array per refresh, one per line; the others one document.
    return JSON.parse(args[0] === 'top' ? r.stdout.trim().split('\n').at(-1)! : r.stdout) as T;
  };
  /** Per-pid sums of the flows a walk of the table lists. */
  const walkTotals = async (pids: number[]): Promise<Map<number, Row>> => {
    const flows = await json<Flow[]>(['flows', '--json', '--limit', '100000']);
    const m = new Map<number, Row>();
    for (const f of flows) {
      if (f.pid === null || !pids.includes(f.pid)) continue;
      const r = m.get(f.pid) ?? { pid: f.pid, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 };
      r.flows++;
      if (f.state !== 'closed') r.openFlows++;
      r.txBytes += f.txBytes;
      r.rxBytes += f.rxBytes;
      r.txPackets += f.txPackets;
      r.rxPackets += f.rxPackets;
      m.set(f.pid, r);
    }
    return m;
  };
  const topTotals = async (pids: number[]): Promise<Map<number, Row>> => {
    const rows = await json<Row[]>(['top', '--count', '1', '--json']);
    const pick = ({ pid, flows, openFlows, txBytes, rxBytes, txPackets, rxPackets }: Row): Row => ({ pid, flows, openFlows, txBytes, rxBytes, txPackets, rxPackets });
    return new Map(rows.filter((r) => r.pid !== null && pids.includes(r.pid)).map((r) => [r.pid!, pick(r)]));
  };
  const acked = (lport: number, sent: number) => tcpAcked(mon, lport, sent);

  test('rounds of new, closed and long-lived flows', async () => {
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'dirty.pcap'));
    const hold = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(quietPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const holdOut = jsonLines(hold);
    const holdPort = Number((await holdOut.next((o) => o.event === 'connected')).localPort);
    const shorts: Array<{ pid: number; localPort: number }> = [];
    let holdSent = 0;
    for (let round = 0; round < 4; round++) {
      const n = 700 * (round + 1);
      hold.stdin!.write(`send ${n}\n`);
      holdSent += n;
      await holdOut.next((o) => o.event === 'sent' && o.total === holdSent);
      await acked(holdPort, holdSent);
      for (let j = 0; j < 3; j++) {
        const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(port), String(1000 + 300 * j), '--expect', '1500']);
        const done = await jsonLines(c).next((o) => o.event === 'done');
        shorts.push({ pid: c.pid!, localPort: Number(done.localPort) });
      }
      const pids = [hold.pid!, ...shorts.map((s) => s.pid)];
      // top first: any flow it answered from a stale copy differs from the walk after it.
      const top = await topTotals(pids);
      const walk = await walkTotals(pids);
      assert.deepEqual([...top.entries()].sort(), [...walk.entries()].sort(), `round ${round}`);
      assert.equal(top.get(hold.pid!)?.openFlows, 1, `round ${round}: the long-lived flow is open`);
    }
    hold.stdin!.write('close\n');
    await holdOut.next((o) => o.event === 'done');
    const pkts = await cap.stop();
    const pids = [hold.pid!, ...shorts.map((s) => s.pid)];
    // The close reached the flows (a record pushed by the socket probe): openFlows 0 everywhere.
    let top = await topTotals(pids);
    for (let i = 0; i < 100 && top.get(hold.pid!)?.openFlows !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      top = await topTotals(pids);
    }
    for (const [pid, lport, rport] of [[hold.pid!, holdPort, quietPort], ...shorts.map((s) => [s.pid, s.localPort, port])] as Array<[number, number, number]>) {
      const o = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: lport, remotePort: rport });
      const r = top.get(pid);
      assert.ok(r, `pid ${pid} in top`);
      assert.deepEqual([r.flows, r.openFlows, r.txBytes, r.rxBytes, r.txPackets, r.rxPackets], [1, 0, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets], `pid ${pid} (port ${lport}) against tcpdump`);
    }
    const st = await json<StatusResult>(['status', '--json']);
    assert.equal(st.flowIndex.mode, 'dirty-ring', JSON.stringify(st.flowIndex));
    assert.equal(st.counters.dirtyRingFull, 0);
    // top's answers came from refreshes; the table was walked only to fill the copy.
    assert.ok(st.flowIndex.refreshes >= 5 && st.flowIndex.fullWalks <= 2, JSON.stringify(st.flowIndex));
  });

  test('a flow made and closed between two refreshes is pushed once', async () => {
    const N = 60;
    await topTotals([]); // a refresh: the ring drained, a new epoch begun
    const before = (await json<StatusResult>(['status', '--json'])).flowIndex.dirtyRecords;
    const c = mon.spawn(process.execPath, [PEER, 'tcp-clients', link.b.ip4, String(port), '200', '--count', String(N)]);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    const ports = done.localPorts as number[];
    assert.equal(ports.length, N);
    const top = await topTotals([c.pid!]); // drains the ring before it reads
    const after = (await json<StatusResult>(['status', '--json'])).flowIndex.dirtyRecords;
    // One push per connection (its creation); its close and its packets add none. The
    // collector's refresh may fall inside the burst once: a flow open across it pushes again.
    assert.ok(after - before >= N && after - before <= N + N / 4, `${after - before} records for ${N} connections made and closed`);
    assert.deepEqual(top.get(c.pid!), (await walkTotals([c.pid!])).get(c.pid!));
    assert.deepEqual([top.get(c.pid!)?.flows, top.get(c.pid!)?.openFlows], [N, 0], 'every close reached the kept totals');
  });
});
