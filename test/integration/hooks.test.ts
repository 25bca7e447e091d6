// SPDX-License-Identifier: Apache-2.0
// The classifier's hook chain (bpf/flows.bpf.c hooks_dispatch, EMON_HOOK_* in
// bpf/monitor/common.h) on live traffic: which packets reach which stage, with what meta.
// The stages are test/fixtures/bpf/hook_stage.bpf.c (they count what reaches them), put in
// emon_hooks and enabled per interface through the monitor domain's own functions
// (test/helpers/hook-driver.ts runs them in the lab host). Truth: the datagrams the test's
// own sender sent (its pid, count and sizes) and tcpdump on the same interface.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { jsonLines, sh, type Host, type Lab, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { BUILD, monitorLab, PEER } from '../helpers/daemon.js';
import { Capture } from '../helpers/pcap.js';
import type { Seen } from '../helpers/hook-driver.js';
import { HOOK, META_F } from '../../daemon/src/monitor/wire.js';

const UDP = 17;
const TCP = 6;

describe('the classifier hook chain', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let driver: ReturnType<typeof jsonLines>;
  let send: (o: object) => Promise<Record<string, unknown>>;
  let serverPort: number;
  let capN = 0;
  let stopDriver = async () => {};

  before(async () => {
    requireTool('tcpdump', 'ping', 'nsenter');
    ({ lab, mon, peer, link } = await monitorLab());
    const child = mon.spawn(process.execPath, [path.join(BUILD, 'test/helpers/hook-driver.js'), lab.pinPath(), `${lab.prefix}*`], { stdio: ['pipe', 'pipe', 'pipe'] });
    driver = jsonLines(child);
    await driver.next((o) => o.ready === true, 60_000);
    let n = 0;
    send = async (o) => {
      const id = ++n;
      child.stdin!.write(`${JSON.stringify({ ...o, id })}\n`);
      const reply = await driver.next((r) => r.id === id, 10_000);
      if (reply.error) throw new Error(`driver: ${String(reply.error)}`);
      return reply;
    };
    stopDriver = () => new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) return r();
      child.once('exit', () => r());
      child.stdin!.end(); // the driver tears its pins and attachments down
    });
    const srv = peer.spawn(process.execPath, [PEER, 'udp-server', link.b.ip4, '0']);
    serverPort = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    await send({ op: 'slot', slot: HOOK.l7.slot, prog: 'tc_stage_l7' });
    await send({ op: 'slot', slot: HOOK.capture.slot, prog: 'tc_stage_capture' });
  });
  after(async () => {
    await stopDriver();
    await lab?.destroy();
  });

  const seen = async () => (await send({ op: 'seen' })).seen as Seen[];
  const reset = () => send({ op: 'reset' });
  const bits = (bit: number, on: boolean) => send({ op: 'bits', target: 'all', bit, on });

  /** `count` datagrams of `size` bytes from a fresh sender in `mon`; its pid and port. */
  async function udp(count: number, size: number): Promise<{ pid: number; port: number }> {
    const c = mon.spawn(process.execPath, [PEER, 'udp-client', link.b.ip4, String(serverPort), String(count), String(size)]);
    const out = jsonLines(c);
    const done = await out.next((o) => o.event === 'done' || o.event === 'error');
    assert.equal(done.event, 'done', JSON.stringify(done));
    return { pid: c.pid!, port: Number(done.localPort) };
  }

  const ofFlow = (s: Seen[], stage: number, lport: number) => s.filter((x) => x.stage === stage && x.proto === UDP && x.lport === lport);

  test('no bit set: no stage runs', async () => {
    await reset();
    const { port } = await udp(5, 100);
    const s = await seen();
    assert.deepEqual(s.filter((x) => x.lport === port || x.rport === port), []);
  });

  test('L7 bit: the L7 stage gets every packet, with the classifier\'s key, owner and IP length; capture none', async () => {
    await bits(HOOK.l7.bit, true);
    try {
      await reset();
      const { pid, port } = await udp(7, 300);
      const s = await seen();
      const l7 = ofFlow(s, HOOK.l7.slot, port);
      assert.equal(l7.length, 1, JSON.stringify(s));
      assert.deepEqual(
        { ingress: l7[0]!.ingress, rport: l7[0]!.rport, packets: l7[0]!.packets, ipBytes: l7[0]!.ipBytes, tgid: l7[0]!.tgid, hooks: l7[0]!.hooks },
        { ingress: 0, rport: serverPort, packets: 7, ipBytes: 7 * (20 + 8 + 300), tgid: pid, hooks: HOOK.l7.bit },
      );
      assert.equal(l7[0]!.flags & (META_F.PARSED | META_F.FLOW), META_F.PARSED | META_F.FLOW);
      assert.deepEqual(ofFlow(s, HOOK.capture.slot, port), []);
    } finally {
      await bits(HOOK.l7.bit, false);
    }
  });

  test('a flow the L7 stage decided is none of its own stops at the classifier\'s byte test', async () => {
    await bits(HOOK.l7.bit, true);
    await send({ op: 'ctl', value: 1 });
    try {
      await reset();
      const { port } = await udp(6, 50);
      const l7 = ofFlow(await seen(), HOOK.l7.slot, port);
      assert.equal(l7.reduce((a, x) => a + x.packets, 0), 1, 'only the first of 6 datagrams reached the stage');
    } finally {
      await send({ op: 'ctl', value: 0 });
      await bits(HOOK.l7.bit, false);
    }
  });

  test('TCP: while a flow is undecided, only packets with payload reach the L7 stage', async () => {
    await bits(HOOK.l7.bit, true);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), `c${capN++}.pcap`), ['tcp']);
    try {
      await reset();
      const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '3000']);
      const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
      const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(port), '5000', '--expect', '3000']);
      const done = await jsonLines(c).next((o) => o.event === 'done');
      await cap.stop();
      // Packets of the connection carrying payload, as tcpdump saw them.
      const filter = `tcp port ${port} and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)`;
      const r = await sh('tcpdump', ['-r', cap.file, '-n', filter]);
      const withPayload = r.stdout.split('\n').filter(Boolean).length;
      const all = (await sh('tcpdump', ['-r', cap.file, '-n', `tcp port ${port}`])).stdout.split('\n').filter(Boolean).length;
      const l7 = (await seen()).filter((x) => x.stage === HOOK.l7.slot && x.proto === TCP && x.lport === Number(done.localPort));
      const got = l7.reduce((a, x) => a + x.packets, 0);
      assert.ok(withPayload > 0 && all > withPayload, `capture: ${withPayload} of ${all} packets carry payload`);
      assert.equal(got, withPayload, `the L7 stage saw ${got} packets; tcpdump counted ${withPayload} with payload of ${all}`);
    } finally {
      await bits(HOOK.l7.bit, false);
    }
  });

  test('capture bit: non-IP packets (ARP) reach the capture stage, unparsed, and never the L7 stage', async () => {
    await bits(HOOK.capture.bit, true);
    const cap = await Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), `c${capN++}.pcap`), ['arp']);
    try {
      await reset();
      await mon.exec('ip', ['neigh', 'flush', 'dev', link.a.ifname]);
      await mon.exec('ping', ['-c', '1', '-W', '2', link.b.ip4]);
      await cap.stop();
      const arp = (await sh('tcpdump', ['-r', cap.file, '-n'])).stdout.split('\n').filter(Boolean).length;
      const s = await seen();
      const unparsed = s.filter((x) => x.stage === HOOK.capture.slot && x.parsed === 0);
      assert.ok(arp >= 2, `tcpdump saw ${arp} ARP packets`);
      assert.equal(unparsed.reduce((a, x) => a + x.packets, 0), arp, JSON.stringify(unparsed));
      assert.ok(unparsed.every((x) => (x.flags & META_F.FLOW) === 0 && x.tgid === 0), 'no flow, no owner');
      assert.deepEqual(s.filter((x) => x.stage === HOOK.l7.slot), []);
    } finally {
      await bits(HOOK.capture.bit, false);
    }
  });

  test('both bits: the L7 stage hands the packet on to capture; an empty L7 slot falls through to capture', async () => {
    await bits(HOOK.l7.bit, true);
    await bits(HOOK.capture.bit, true);
    try {
      await reset();
      const a = await udp(4, 80);
      let s = await seen();
      assert.equal(ofFlow(s, HOOK.l7.slot, a.port)[0]?.packets, 4);
      assert.equal(ofFlow(s, HOOK.l7.slot, a.port)[0]?.hooks, HOOK.l7.bit | HOOK.capture.bit);
      assert.equal(ofFlow(s, HOOK.capture.slot, a.port)[0]?.packets, 4);
      assert.equal(ofFlow(s, HOOK.capture.slot, a.port)[0]?.hooks, HOOK.capture.bit, 'the L7 stage cleared its own bit');

      await send({ op: 'slot', slot: HOOK.l7.slot, prog: null });
      await reset();
      const b = await udp(3, 80);
      s = await seen();
      assert.deepEqual(ofFlow(s, HOOK.l7.slot, b.port), []);
      assert.equal(ofFlow(s, HOOK.capture.slot, b.port)[0]?.packets, 3);
      assert.equal(ofFlow(s, HOOK.capture.slot, b.port)[0]?.tgid, b.pid);
    } finally {
      await send({ op: 'slot', slot: HOOK.l7.slot, prog: 'tc_stage_l7' });
      await bits(HOOK.l7.bit, false);
      await bits(HOOK.capture.bit, false);
    }
  });

  test('bits set for all interfaces reach an interface attached later, and only its own are cleared', async () => {
    await bits(HOOK.capture.bit, true);
    try {
      const l2 = await lab.link(mon, peer);
      await send({ op: 'reconcile' });
      const ifindex = async (name: string) => (JSON.parse((await mon.exec('ip', ['-j', 'link', 'show', 'dev', name])).stdout) as Array<{ ifindex: number }>)[0]!.ifindex;
      const idx = await ifindex(l2.a.ifname);
      const first = await ifindex(link.a.ifname);
      assert.equal((await send({ op: 'ifbits', ifindex: idx })).hooks, HOOK.capture.bit);
      await send({ op: 'bits', target: idx, bit: HOOK.l7.bit, on: true });
      assert.equal((await send({ op: 'ifbits', ifindex: idx })).hooks, HOOK.capture.bit | HOOK.l7.bit);
      assert.equal((await send({ op: 'ifbits', ifindex: first })).hooks, HOOK.capture.bit);
      await send({ op: 'bits', target: idx, bit: HOOK.l7.bit, on: false });
      assert.equal((await send({ op: 'ifbits', ifindex: idx })).hooks, HOOK.capture.bit);
    } finally {
      await bits(HOOK.capture.bit, false);
    }
  });
});
