// SPDX-License-Identifier: Apache-2.0
// Where the classifier finds headers. It reads them directly at the interface's link-layer
// header length (14 on Ethernet, 0 on L3 devices such as tun or WireGuard), and when they
// are not in the skb's linear area it pulls them in (bpf_skb_pull_data) and reads again, so
// such packets are counted, not reported as truncated.
// - Non-linear: test/fixtures/net/paged_send.c (AF_PACKET with a virtio header: only the
//   Ethernet header is linear). Truth: the datagrams and bytes the helper built and sent.
// - L3 device: a tun device; datagrams the test's own UDP client sent through it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { destroyMonitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { compileC, ROOT } from '../helpers/cc.js';
import type { FlowsListResult } from '../../daemon/src/contract/index.js';
import type { CounterName } from '../../daemon/src/contract/status.js';

describe('where the classifier finds headers', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let sender: string;

  before(async () => {
    requireTool('gcc');
    lab = await Lab.create();
    mon = await lab.host('mon');
    const peer = await lab.host('peer');
    // Room for datagrams over a page: af_packet only builds paged skbs from a page up.
    link = await lab.link(mon, peer, { mtu: 9000 });
    sender = compileC(path.join(ROOT, 'test/fixtures/net/paged_send.c'), lab.tmpdir());
    daemon = await startDaemon(mon);
  });
  after(() => destroyMonitorLab(daemon, lab));

  for (const family of [4, 6] as const) {
    test(`IPv${family} UDP with only the Ethernet header linear: every datagram and byte counted, none truncated`, async () => {
      const src = family === 4 ? link.a.ip4 : link.a.ip6;
      const dst = family === 4 ? link.b.ip4 : link.b.ip6;
      const sport = 20000 + family;
      const count = 25;
      const s0 = await daemon.call('status');
      const r = await mon.exec(sender, [link.a.ifname, String(family), src, dst, String(sport), '7', '6000', String(count)]);
      const sent = JSON.parse(r.stdout.trim()) as { sent: number; ipBytes: number };
      assert.equal(sent.sent, count);
      assert.equal(sent.ipBytes, (family === 4 ? 20 : 40) + 8 + 6000);

      const deadline = Date.now() + 10_000;
      let flow: FlowsListResult['flows'][number] | undefined;
      for (;;) {
        flow = (await daemon.call('flows.list', { port: sport, protocol: 'udp' })).flows.find((f) => f.localPort === sport && f.remoteAddr === dst);
        if ((flow && flow.txPackets >= count) || Date.now() > deadline) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const s1 = await daemon.call('status');
      const d = (k: CounterName) => s1.counters[k] - s0.counters[k];
      const diag = `flow ${JSON.stringify(flow)}; pulled +${d('packetsPulled')}, truncated +${d('packetsTruncated')}`;
      assert.ok(flow, `the flow was recorded: ${diag}`);
      assert.equal(flow.txPackets, count, diag);
      assert.equal(flow.txBytes, count * sent.ipBytes, diag);
      assert.equal(flow.interface, link.a.ifname);
      // The proof that the headers were not linear: each datagram needed a pull.
      assert.equal(d('packetsPulled'), count, diag);
      assert.equal(d('packetsTruncated'), 0, diag);
    });
  }

  test('an L3 device (tun: no link-layer header): datagrams sent through it counted exactly, headers read at offset 0', async () => {
    const tun = `${lab.prefix}t`;
    const net = 200 + (process.pid % 50);
    const local = `198.18.${net}.1`;
    const remote = `198.18.${net}.2`;
    await mon.exec('ip', ['tuntap', 'add', 'dev', tun, 'mode', 'tun']);
    lab.onDestroy(() => mon.exec('ip', ['link', 'del', tun], { allowFail: true }).then(() => undefined));
    await mon.exec('ip', ['addr', 'add', `${local}/24`, 'dev', tun]);
    await mon.exec('ip', ['link', 'set', tun, 'up']);
    // The daemon attaches to interfaces that appear (within 2 s).
    const deadline = Date.now() + 10_000;
    while (!(await daemon.call('status')).interfaces.some((i) => i.name === tun)) {
      assert.ok(Date.now() < deadline, `the classifier was not attached to ${tun}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const s0 = await daemon.call('status');
    // Nobody reads the tun device: the datagrams go through the egress classifier and are
    // dropped by the driver after it.
    const localPort = 30000 + (process.pid % 20000);
    const count = 12;
    const size = 700;
    const c = mon.spawn(process.execPath, [PEER, 'udp-client', remote, '9', String(count), String(size), '--local-port', String(localPort)]);
    await jsonLines(c).next((o) => o.event === 'done');

    let flow: FlowsListResult['flows'][number] | undefined;
    const until = Date.now() + 10_000;
    for (;;) {
      flow = (await daemon.call('flows.list', { port: localPort, protocol: 'udp' })).flows.find((f) => f.localPort === localPort);
      if ((flow && flow.txPackets >= count) || Date.now() > until) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const s1 = await daemon.call('status');
    const d = (k: CounterName) => s1.counters[k] - s0.counters[k];
    const diag = `flow ${JSON.stringify(flow)}; truncated +${d('packetsTruncated')}, non-IP +${d('packetsNonIp')}`;
    assert.ok(flow, `the flow was recorded: ${diag}`);
    assert.equal(flow.interface, tun);
    assert.deepEqual([flow.localAddr, flow.remoteAddr, flow.remotePort], [local, remote, 9], diag);
    assert.equal(flow.txPackets, count, diag);
    assert.equal(flow.txBytes, count * (size + 28), diag);
    assert.equal(flow.pid, c.pid, 'attributed to the sender');
    assert.equal(d('packetsTruncated'), 0, diag);
  });
});
