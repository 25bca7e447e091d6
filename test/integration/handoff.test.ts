// SPDX-License-Identifier: Apache-2.0
// Sockets that change hands (bpf/handoff.bpf.c, deployed by the daemon as the `handoff`
// component): the real daemon runs in lab host `mon`, and each test compares the flow's
// owner with the pid that really used the socket (the process reports its own pid, or the
// server reads it) and the flow's counts with tcpdump. The records the kernel keeps
// (emon_handoffs) are read from the daemon's pins. flows.test.ts covers the plain cases
// (a socket inherited across fork, one passed over SCM_RIGHTS, each used by the receiver
// alone); here: a socket used by both, a bound datagram socket handed over, a plain client
// left alone, status, and the component's own deployment.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, OBJECT_DIR, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Capture, flowTotals, type Packet } from '../helpers/pcap.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { Deployment } from '../../daemon/src/bpf/deployment.js';
import { FLOWS, HANDOFF_COMPONENT, HANDOFF_PROBE, MAP } from '../../daemon/src/monitor/components.js';
import { readHandoffs, type HandoffRecord } from '../../daemon/src/monitor/handoff.js';
import { LAYOUT_VERSION } from '../../daemon/src/monitor/monitor.js';
import type { Flow } from '../../daemon/src/contract/flows.js';

const UDP = 17;

describe('sockets that change hands', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let capN = 0;

  before(async () => {
    requireTool('tcpdump', 'bash');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 1800, gcIntervalSec: 2 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  const capture = () => Capture.start(mon, link.a.ifname, path.join(lab.tmpdir(), `c${capN++}.pcap`));
  const flows = async (params: object) => (await daemon.call('flows.list', { limit: 100_000, ...params })).flows;
  const counts = (f: Flow) => ({ txBytes: f.txBytes, rxBytes: f.rxBytes, txPackets: f.txPackets, rxPackets: f.rxPackets });
  const oracle = (pkts: Packet[], m: Parameters<typeof flowTotals>[1]) => {
    const t = flowTotals(pkts, m);
    assert.ok(t.txPackets > 0 && t.rxPackets > 0, `the capture saw the flow ${JSON.stringify(m)}`);
    return { txBytes: t.txBytes, rxBytes: t.rxBytes, txPackets: t.txPackets, rxPackets: t.rxPackets };
  };
  const records = (): HandoffRecord[] => {
    const m = BpfMap.fromPin(path.join(daemon.pinPath, 'maps', MAP.handoffs), MAP.handoffs);
    try {
      return readHandoffs(m);
    } finally {
      m.close();
    }
  };

  async function tcpServer(host: Host, addr: string) {
    const s = host.spawn(process.execPath, [PEER, 'tcp-server', addr, '0', '0']);
    const out = jsonLines(s);
    const port = Number((await out.next((o) => o.event === 'listening')).port);
    return { pid: s.pid!, port, out };
  }

  test('status names the alternative that runs (capability socket-user)', async () => {
    const st = await daemon.call('status');
    const probe = st.probes.find((p) => p.capability === HANDOFF_PROBE.capability);
    assert.ok(probe?.active, JSON.stringify(st.probes));
    assert.equal(st.handoff.active, probe.active);
    assert.equal(st.adopted.handoff, false, 'loaded at this start');
    process.stderr.write(`handoff probe on this kernel: ${probe.active}\n`);
  });

  test('a socket used by both the connector and its child stays with the connector; the record says shared', async () => {
    const srv = await tcpServer(peer, link.b.ip4);
    // parent writes, child writes, parent writes again: used by both
    const script = `exec 3<>/dev/tcp/${link.b.ip4}/${srv.port}; echo "parent $$" >&3; ( echo "child $BASHPID" >&3 ) & wait; echo again >&3; echo $$; exec 3>&-`;
    const r = await mon.exec('bash', ['-c', script]);
    const parent = Number(r.stdout.trim());
    const served = await srv.out.next((o) => o.event === 'served');
    assert.match(String(served.data), new RegExp(`^parent ${parent}\\s+child \\d+\\s+again`));
    const f = (await flows({ port: srv.port, protocol: 'tcp' })).find((x) => x.localPort === served.remotePort);
    assert.ok(f);
    assert.equal(f.pid, parent);
    assert.equal(f.attributedBy, 'connect');
    const rec = records().find((x) => x.original.pid === parent);
    assert.ok(rec, 'the child\'s use was seen');
    assert.equal(rec.state, 'shared');
  });

  test('a bound UDP socket handed to a child that alone receives and answers: every flow of its port goes to the child', async () => {
    const fixture = path.join(OBJECT_DIR, 'fixtures/net/udp_handoff');
    const svc = mon.spawn(fixture, [link.a.ip4, '6'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = jsonLines(svc);
    const bound = await out.next((o) => o.event === 'bound');
    const port = Number(bound.port);
    const cap = await capture();
    // Three datagrams arrive while only the binder holds the socket (their flow is created
    // then, owned by the binder through its bind record); then the child takes over.
    const early = peer.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(port), '3', '300', '--expect-replies']);
    const earlyOut = jsonLines(early);
    let before: Flow[] = [];
    for (let i = 0; i < 600 && before.length === 0; i++) {
      before = await flows({ port, protocol: 'udp' }); // the flow exists once the first datagram passed the classifier
      if (before.length === 0) await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(before.length, 1, 'the early datagrams made one flow');
    assert.equal(before[0]!.pid, bound.pid, 'owned by the binder before the handoff');
    svc.stdin!.write('go\n');
    const e = await earlyOut.next((o) => o.event === 'done');
    assert.equal(e.replies, 3, 'the child answered the queued datagrams');
    const late = peer.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(port), '3', '200', '--expect-replies']);
    const l = await jsonLines(late).next((o) => o.event === 'done');
    assert.equal(l.replies, 3);
    const done = await out.next((o) => o.event === 'done');
    const child = Number(done.child);
    const served = out.lines.filter((o) => o.event === 'datagram');
    assert.equal(served.length, 6);
    assert.ok(served.every((o) => o.pid === child), 'the child alone received');
    const pkts = await cap.stop();
    const fl = await flows({ port, protocol: 'udp' });
    for (const [peerPort, name] of [[Number(e.localPort), 'queued before the handoff'], [Number(l.localPort), 'after the handoff']] as const) {
      const f = fl.find((x) => x.remotePort === peerPort);
      assert.ok(f, `flow ${name}`);
      assert.equal(f.pid, child, `the flow ${name} names the child ${child}, not the binder ${String(bound.pid)}`);
      assert.equal(f.attributedBy, 'user');
      assert.deepEqual(counts(f), oracle(pkts, { local: link.a.ip4, remote: link.b.ip4, proto: UDP, localPort: port, remotePort: peerPort }), `${name}: counts == tcpdump`);
    }
    const rec = records().find((r) => r.userPid === child);
    assert.ok(rec);
    assert.equal(rec.original.pid, bound.pid);
    assert.equal(rec.original.attributedBy, 'socket');
    assert.equal(rec.connected, false);
    assert.equal(rec.flowsPatched, 1, 'the early flow was moved at the handoff');
    const st = await daemon.call('status');
    assert.ok(st.handoff.counters.handoffs >= 1 && st.handoff.counters.flowsPatched >= 1, JSON.stringify(st.handoff));
    assert.equal(st.handoff.counters.updateFailed, 0);
    assert.ok(st.handoff.sockets >= 1);
  });

  test('a plain client is not touched: its flow keeps connect, and no handoff record', async () => {
    const srv = await tcpServer(peer, link.b.ip4);
    const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(srv.port), '20000']);
    const done = await jsonLines(c).next((o) => o.event === 'done');
    const f = (await flows({ pid: c.pid, protocol: 'tcp' })).find((x) => x.localPort === done.localPort);
    assert.ok(f);
    assert.equal(f.attributedBy, 'connect');
    assert.equal(records().filter((r) => r.original.pid === c.pid || r.userPid === c.pid).length, 0);
  });
});

describe('the handoff component under Deployment', privileged({ timeout: 120_000 }), () => {
  let lab: Lab | undefined;
  let pinPath = '';
  const logger = pino({ level: 'warn' });
  after(async () => {
    if (pinPath) Deployment.teardown(pinPath, logger);
    await lab?.destroy();
  });

  test('deploys after the monitor\'s maps exist, picks the first hook this kernel takes, pins its links, and is adopted on a second deploy', async () => {
    lab = await Lab.create();
    pinPath = lab.pinPath();
    const opts = { pinPath, objectDir: OBJECT_DIR, layoutVersion: LAYOUT_VERSION, daemonVersion: 'test', logger };
    const dep = Deployment.open(opts);
    try {
      dep.deploy(FLOWS); // creates and pins the shared maps
      const r = dep.deploy(HANDOFF_COMPONENT);
      const probe = r.probes.find((p) => p.capability === HANDOFF_PROBE.capability);
      assert.ok(probe?.active, JSON.stringify(r.probes));
      const first = HANDOFF_COMPONENT.groups[0]!.alternatives.find((a) => a.label === probe.active)!;
      for (const spec of first.attach) assert.ok(fs.existsSync(path.join(pinPath, 'links', spec.prog)), `link ${spec.prog} pinned`);
      assert.ok(fs.existsSync(path.join(pinPath, 'maps', MAP.handoffs)));
    } finally {
      dep.close();
    }
    const again = Deployment.open(opts);
    try {
      assert.equal(again.deploy(HANDOFF_COMPONENT).adopted, true);
    } finally {
      again.close();
    }
  });
});
