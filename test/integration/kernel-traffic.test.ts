// SPDX-License-Identifier: Apache-2.0
// Traffic the kernel sends on its own behalf (neighbour discovery, MLD, a RST for a closed
// port, ICMP errors, echo replies) is labelled as the kernel's (`attributedBy: "kernel"`,
// shown as `[kernel]`), never as an unknown process. Truth: tcpdump on the interface shows
// the packets, and no process of the test's namespace sent them (the namespace has none).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, type Packet } from '../helpers/pcap.js';
import type { Flow } from '../../daemon/src/contract/flows.js';

const ICMPV6 = 58;
/** MLD (130-132, 143) and neighbour discovery (133-137). */
const ND_MLD = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);

describe('traffic the kernel sends itself', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let capN = 0;

  before(async () => {
    requireTool('tcpdump', 'ping', 'ip');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 1800 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  const flows = async (params: object = {}): Promise<Flow[]> => (await daemon.call('flows.list', { limit: 100_000, ...params })).flows;
  const capture = (ifname: string) => Capture.start(mon, ifname, path.join(lab.tmpdir(), `k${capN++}.pcap`));

  test('neighbour discovery and MLD on a fresh veth are the kernel\'s; top shows no unknown process', async () => {
    // A second link: nothing but the kernel has used it.
    const l2 = await lab.link(mon, peer);
    for (let i = 0; i < 50 && !(await daemon.call('status')).interfaces.some((x) => x.name === l2.a.ifname); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const cap = await capture(l2.a.ifname);
    // A new address with duplicate address detection: the kernel joins its solicited-node
    // group (MLD report) and probes for it (neighbour solicitation); the peer then asks for
    // the address's MAC (solicitation in, advertisement out).
    const addr = l2.a.ip6.replace(/:1$/, ':5');
    await mon.exec('ip', ['addr', 'add', `${addr}/112`, 'dev', l2.a.ifname]);
    await new Promise((r) => setTimeout(r, 2500)); // DAD waits up to a second, then one more
    await peer.exec('ping', ['-6', '-c', '1', '-W', '2', addr]);
    const pkts = (await cap.stop()).filter((p: Packet) => p.proto === ICMPV6 && p.icmpType !== null && ND_MLD.has(p.icmpType));
    const types = new Set(pkts.map((p) => p.icmpType));
    for (const t of [135, 136, 143]) assert.ok(types.has(t), `the capture shows ICMPv6 type ${t}: ${[...types].join(',')}`);

    const fl = (await flows({ interface: l2.a.ifname })).filter((f) => f.protocol === 'icmpv6' && ND_MLD.has(f.icmpType!));
    for (const t of types) assert.ok(fl.some((f) => f.icmpType === t), `a flow for ICMPv6 type ${t}`);
    for (const f of fl) {
      assert.deepEqual({ type: f.icmpType, attributedBy: f.attributedBy, comm: f.comm, pid: f.pid, uid: f.uid },
        { type: f.icmpType, attributedBy: 'kernel', comm: '[kernel]', pid: null, uid: null });
    }
    // The namespace runs no process that talks on it: per-process totals have the kernel
    // and no unknown owner.
    const procs = (await daemon.call('processes.list', {})).processes;
    assert.ok(procs.some((p) => p.comm === '[kernel]' && p.pid === null), JSON.stringify(procs));
    assert.ok(!procs.some((p) => p.comm === null), `no unknown process: ${JSON.stringify(procs)}`);
  });

  test('a RST for a closed port, an ICMP port unreachable and echo replies are the kernel\'s', async () => {
    const cap = await capture(link.a.ifname);
    const closed = 40999;
    const t = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(closed), '10']);
    assert.equal((await jsonLines(t).next((o) => o.event === 'error')).message, `connect ECONNREFUSED ${link.a.ip4}:${closed}`);
    const u = peer.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(closed), '1', '50']);
    await jsonLines(u).next((o) => o.event === 'done');
    await peer.exec('ping', ['-c', '2', '-i', '0.2', link.a.ip4]);
    const pkts = await cap.stop();
    const sent = pkts.filter((p) => p.src === link.a.ip4);
    assert.ok(sent.some((p) => p.proto === 6 && p.sport === closed), 'the capture shows the RST');
    assert.ok(sent.some((p) => p.proto === 1 && p.icmpType === 3), 'the capture shows the port unreachable');
    assert.equal(sent.filter((p) => p.proto === 1 && p.icmpType === 0).length, 2, 'the capture shows two echo replies');

    const all = await flows({ remoteAddr: link.b.ip4 });
    const rst = all.find((f) => f.protocol === 'tcp' && f.localPort === closed);
    const unreach = all.find((f) => f.protocol === 'icmp' && f.icmpType === 3);
    const echo = all.find((f) => f.protocol === 'icmp' && f.icmpType === 8);
    for (const [what, f] of [['RST', rst], ['port unreachable', unreach], ['echo', echo]] as const) {
      assert.ok(f, `a flow for the ${what}`);
      assert.deepEqual({ attributedBy: f.attributedBy, comm: f.comm, pid: f.pid }, { attributedBy: 'kernel', comm: '[kernel]', pid: null }, `${what}: ${JSON.stringify(f)}`);
    }
    assert.equal(echo!.txPackets, 2);
    assert.ok(rst!.tcpFlags.tx.includes('RST'));
  });
});
