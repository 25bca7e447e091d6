// SPDX-License-Identifier: Apache-2.0
// Closed flows stay queryable for the configured retention, then are collected; idle UDP
// flows are collected after their idle timeout; collected flows keep counting in the
// per-process totals (so `top` and processes.list never go backwards).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';


describe('flow retention', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 3, idleTimeoutSec: 3, gcIntervalSec: 1 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  const waitUntil = async (what: string, pred: () => Promise<boolean>, ms = 15_000) => {
    const t0 = Date.now();
    while (!(await pred())) {
      if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return Date.now() - t0;
  };

  test('a closed TCP flow is queryable during its retention, then collected; its bytes stay in the process totals', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    // Keep the client process alive after its connection closes, so it can be queried by pid.
    const hold = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = jsonLines(hold);
    await out.next((o) => o.event === 'connected');
    hold.stdin!.write('send 5000\n');
    await out.next((o) => o.event === 'sent');
    hold.stdin!.write('close\n');
    await out.next((o) => o.event === 'done');

    const list = async () => (await daemon.call('flows.list', { pid: hold.pid })).flows;
    await waitUntil('the flow is closed', async () => (await list())[0]?.state === 'closed');
    const closed = (await list())[0]!;
    assert.ok(closed.closedAt, 'closedAt is set');
    assert.ok(closed.txBytes > 5000);
    const open = await daemon.call('flows.list', { pid: hold.pid, includeClosed: false });
    assert.equal(open.flows.length, 0, 'includeClosed:false hides it');

    const gone = await waitUntil('the closed flow is collected', async () => (await list()).length === 0);
    assert.ok(gone >= 1000, `kept for its retention time (${gone} ms after close was observed)`);
    const procs = await daemon.call('processes.list', {});
    const mine = procs.processes.find((p) => p.pid === hold.pid);
    assert.ok(mine, 'the process is still in the totals');
    assert.equal(mine.txBytes, closed.txBytes, 'with the collected flow\'s bytes');
    assert.equal(mine.openFlows, 0);
    const st = await daemon.call('status');
    assert.ok(st.counters.flowsDeleted! >= 1, 'the deletion is counted');
    assert.equal(st.loss.flowsEvicted, 0, 'nothing was lost to LRU eviction');
  });

  test('an idle UDP flow is collected after its idle timeout', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'udp-server', link.b.ip4, '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const c = mon.spawn(process.execPath, [PEER, 'udp-client', link.b.ip4, String(port), '3', '100']);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    const q = { port: Number(done.localPort), protocol: 'udp' as const };
    assert.equal((await daemon.call('flows.list', q)).flows.length, 1);
    await waitUntil('the idle flow is collected', async () => (await daemon.call('flows.list', q)).flows.length === 0);
  });
});
