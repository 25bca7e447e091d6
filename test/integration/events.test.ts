// SPDX-License-Identifier: Apache-2.0
// Events through the ring buffer, checked against the processes the test itself ran:
// exec (pid, parent, arguments), connect, accept, close with the flow's final counts
// (equal to tcpdump's), exit with the exit code. And interfaces that appear after start
// get the classifier; interfaces that disappear are forgotten.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Lab, jsonLines, sh, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals } from '../helpers/pcap.js';
import { DaemonClient } from '../../client/src/rpc.js';
import type { MonitorEvent } from '../../daemon/src/contract/events.js';
import type { EventNotification } from '../../daemon/src/contract/index.js';


async function subscribe(d: TestDaemon, params: object): Promise<{ events: MonitorEvent[]; client: DaemonClient; waitFor(pred: (e: MonitorEvent) => boolean, ms?: number): Promise<MonitorEvent> }> {
  const client = await DaemonClient.connect(d.socketPath);
  const events: MonitorEvent[] = [];
  const waiters: Array<[(e: MonitorEvent) => boolean, (e: MonitorEvent) => void]> = [];
  client.onNotification('events.event', (p) => {
    const e = (p as EventNotification).event;
    events.push(e);
    for (const w of [...waiters]) if (w[0](e)) {
      waiters.splice(waiters.indexOf(w), 1);
      w[1](e);
    }
  });
  await client.call('events.subscribe', params);
  return {
    events,
    client,
    waitFor(pred, ms = 15_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`event not seen; got ${JSON.stringify(events.slice(-5))}`)), ms);
        waiters.push([pred, (e) => { clearTimeout(t); resolve(e); }]);
      });
    },
  };
}

describe('events and interfaces', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon);
  });
  after(() => destroyMonitorLab(daemon, lab));

  test('exec, connect, close (with final counts equal to tcpdump) and exit of a process the test ran', async () => {
    const sub = await subscribe(daemon, {});
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '7000']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), 'ev.pcap'));
    const client = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(port), '21000', '--expect', '7000']);
    const pid = client.pid!;
    const done = await jsonLines(client).next((o) => o.event === 'done');
    await new Promise((r) => client.once('exit', r));
    const pkts = await cap.stop();

    const exec = await sub.waitFor((e) => e.type === 'exec' && e.pid === pid && e.filename.endsWith('node'));
    assert.equal(exec.type, 'exec');
    if (exec.type === 'exec') {
      assert.deepEqual(exec.args.slice(1, 4), [PEER, 'tcp-client', link.b.ip4]);
      assert.equal(exec.uid, 0);
    }
    const connect = await sub.waitFor((e) => e.type === 'connect' && e.pid === pid);
    if (connect.type === 'connect') {
      assert.deepEqual([connect.localPort, connect.remoteAddr, connect.remotePort], [done.localPort, link.b.ip4, port]);
      assert.equal(connect.attributedBy, 'connect');
    }
    const close = await sub.waitFor((e) => e.type === 'close' && e.pid === pid);
    const oracle = flowTotals(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: 6, localPort: Number(done.localPort), remotePort: port });
    if (close.type === 'close') {
      assert.equal(close.flowSeen, true, JSON.stringify(close));
      assert.equal(close.interface, link.a.ifname);
      // The close event fires when the socket reaches CLOSE; packets after that (none for
      // an active close that ends in TIME_WAIT) would not be in it. tcpdump is the truth.
      assert.deepEqual(
        { tx: close.txBytes, rx: close.rxBytes, txp: close.txPackets, rxp: close.rxPackets },
        { tx: oracle.txBytes, rx: oracle.rxBytes, txp: oracle.txPackets, rxp: oracle.rxPackets },
      );
      assert.equal(close.payloadBytesSent, 21000);
      assert.equal(close.payloadBytesReceived, 7000);
      assert.ok(close.durationMs !== null && close.durationMs > 0);
    }
    const exit = await sub.waitFor((e) => e.type === 'exit' && e.pid === pid);
    if (exit.type === 'exit') assert.equal(exit.exitCode, 0);
    // order as it happened
    const order = sub.events.filter((e) => e.pid === pid && ['exec', 'connect', 'close', 'exit'].includes(e.type)).map((e) => e.type);
    assert.deepEqual(order.filter((t, i) => order.indexOf(t) === i), ['exec', 'connect', 'close', 'exit']);
    sub.client.close();
  });

  test('accept events name the accepting process; subscriptions filter by type and pid', async () => {
    const srv = mon.spawn(process.execPath, [PEER, 'tcp-server', link.a.ip4, '0', '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const sub = await subscribe(daemon, { types: ['accept'], pid: srv.pid });
    const client = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(port), '100']);
    const done = await jsonLines(client).next((o) => o.event === 'done');
    const acc = await sub.waitFor((e) => e.type === 'accept');
    if (acc.type === 'accept') {
      assert.equal(acc.pid, srv.pid);
      assert.equal(acc.localPort, port);
      assert.equal(acc.remotePort, done.localPort);
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(sub.events.every((e) => e.type === 'accept' && e.pid === srv.pid), 'only what the filter asked for');
    sub.client.close();
  });

  test('an interface that appears after start gets the classifier; one that disappears is forgotten', async () => {
    const other = await lab.host('late');
    const late = await lab.link(mon, other);
    const deadline = Date.now() + 5000;
    let s = await daemon.call('status');
    while (!s.interfaces.some((i) => i.name === late.a.ifname) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      s = await daemon.call('status');
    }
    assert.ok(s.interfaces.some((i) => i.name === late.a.ifname), 'attached within 5 s (promised: 2 s)');
    const tc = await mon.exec('tc', ['filter', 'show', 'dev', late.a.ifname, 'egress']);
    assert.match(tc.stdout, /handle 0xeb9f tc_egress/);
    // and it counts
    await mon.exec('ping', ['-c', '2', '-i', '0.2', late.b.ip4]);
    const fl = await daemon.call('flows.list', { interface: late.a.ifname, protocol: 'icmp' });
    assert.ok(fl.flows.some((f) => f.remoteAddr === late.b.ip4 && f.txPackets === 2));

    await sh('ip', ['-n', mon.netns!, 'link', 'del', late.a.ifname]); // the namespace's name carries EMON_LAB_NETNS_PREFIX
    const deadline2 = Date.now() + 5000;
    do {
      await new Promise((r) => setTimeout(r, 100));
      s = await daemon.call('status');
    } while (s.interfaces.some((i) => i.name === late.a.ifname) && Date.now() < deadline2);
    assert.ok(!s.interfaces.some((i) => i.name === late.a.ifname), 'forgotten');
    assert.ok(s.interfaces.some((i) => i.name === link.a.ifname), 'the other interface stays');
  });
});
