// SPDX-License-Identifier: Apache-2.0
// The pinned lifecycle (foundation issue): programs keep counting while no process holds
// them, a new daemon adopts them without reloading or reattaching, and --teardown leaves
// no program on any hook and no pin. Oracles: the bytes the test's own UDP sender put on
// the wire (28 bytes of IPv4+UDP header per datagram), `tc filter show` and `bpftool`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type Lab, jsonLines, sh, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { daemonOnce, monitorLab, OBJECT_DIR, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import type { FlowsListResult } from '../../daemon/src/contract/index.js';
import { probeMisses } from '../../daemon/src/monitor/monitor.js';
import { PROG } from '../../daemon/src/monitor/components.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { progInfo } from '../../daemon/src/bpf/info.js';


async function udpBurst(host: Host, dst: string, port: number, localPort: number, count: number, size: number): Promise<void> {
  const c = host.spawn(process.execPath, [PEER, 'udp-client', dst, String(port), String(count), String(size), '--local-port', String(localPort)]);
  const out = jsonLines(c);
  await out.next((o) => o.event === 'done');
}

async function ourTcFilters(host: Host, ifname: string, dir: 'ingress' | 'egress'): Promise<string[]> {
  const r = await host.exec('tc', ['filter', 'show', 'dev', ifname, dir]);
  return r.stdout.split('\n').filter((l) => l.includes('handle 0xeb9f'));
}

describe('pinned lifecycle', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let progIds: number[] = [];
  let linkIds: number[] = [];

  before(async () => {
    requireTool('tc', 'bpftool', 'nsenter');
    ({ lab, mon, peer, link } = await monitorLab());
  });
  after(async () => {
    await daemon?.stop('SIGKILL');
    await lab?.destroy();
  });

  test('counters keep counting while no daemon runs; a restart adopts without reloading or reattaching', async () => {
    daemon = await startDaemon(mon);
    const s1 = await daemon.call('status');
    assert.deepEqual(s1.adopted, { flows: false, sockets: false, procs: false, scan: false, handoff: false, flowread: false });
    const progs1 = await daemon.call('programs.list');
    progIds = progs1.programs.map((p) => p.id).sort();
    linkIds = progs1.links.map((l) => l.id).sort();
    assert.ok(progIds.length >= 10, `programs: ${JSON.stringify(progs1.programs.map((p) => p.name))}`);
    // TCP state changes through tp_btf (a classic tracepoint program is skipped while another
    // BPF program runs on the CPU), a primary and its backup; bpftool agrees on the programs
    // and their skipped runs (statechange.test.ts makes the kernel skip some).
    assert.equal(s1.probes.find((p) => p.capability === 'tcp-state')?.active, 'tp_btf/inet_sock_set_state', JSON.stringify(s1.probes));
    assert.ok(!progs1.programs.some((p) => p.name === 'handle_inet_sock_set_state'), JSON.stringify(progs1.programs.map((p) => p.name)));
    for (const name of [PROG.stateChange, PROG.stateChangeBackup]) {
      const prog = progs1.programs.find((p) => p.name === name);
      assert.ok(prog, `${name} loaded: ${JSON.stringify(progs1.programs.map((p) => p.name))}`);
      assert.deepEqual(prog.hooks, ['tp_btf/inet_sock_set_state']);
      const tool = JSON.parse((await sh('bpftool', ['prog', 'show', 'id', String(prog.id), '--json'])).stdout) as { type: string; recursion_misses?: number };
      assert.equal(tool.type, 'tracing');
      assert.equal(prog.recursionMisses, tool.recursion_misses ?? 0);
    }
    assert.equal(s1.loss.probeMisses, probeMisses(progs1.programs, s1.counters.stateChangesRescued!));
    // What the verifier walked for the classifier: the same as this test's own load of the
    // object the daemon runs (the kernel's count for the same program on the same kernel).
    const clsObject = s1.flowIndex.mode === 'dirty-ring' ? 'flows.bpf.o' : 'flows_walk.bpf.o';
    const cls = BpfObject.open(path.join(OBJECT_DIR, clsObject));
    try {
      const r = cls.tryLoad();
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      for (const name of [PROG.tcIngress, PROG.tcEgress]) {
        const p = progs1.programs.find((x) => x.name === name);
        assert.equal(p?.verifiedInsns, progInfo(cls.progFd(name)).verifiedInsns, `${name} (${clsObject}): ${JSON.stringify(p)}`);
      }
    } finally {
      cls.close();
    }

    const server = peer.spawn(process.execPath, [PEER, 'udp-server', link.b.ip4, '0']);
    const port = Number((await jsonLines(server).next((o) => o.event === 'listening')).port);
    const localPort = 40000 + (process.pid % 20000);
    const wire = (n: number, size: number) => n * (size + 28);

    await udpBurst(mon, link.b.ip4, port, localPort, 10, 300);
    const before1 = await daemon.call('flows.list', { port: localPort, protocol: 'udp' });
    assert.equal(before1.flows.length, 1);
    assert.equal(before1.flows[0]!.txBytes, wire(10, 300));

    // No process holds the programs now: kill -9 leaves only the pins.
    await daemon.stop('SIGKILL');
    await udpBurst(mon, link.b.ip4, port, localPort, 20, 300);

    daemon = await restartDaemon(daemon);
    const s2 = await daemon.call('status');
    assert.deepEqual(s2.adopted, { flows: true, sockets: true, procs: true, scan: true, handoff: true, flowread: true });
    const progs2 = await daemon.call('programs.list');
    assert.deepEqual(progs2.programs.map((p) => p.id).sort(), progIds, 'same program ids: nothing was reloaded');
    assert.deepEqual(progs2.links.map((l) => l.id).sort(), linkIds, 'same link ids: nothing was reattached');
    for (const dir of ['ingress', 'egress'] as const) {
      assert.equal((await ourTcFilters(mon, link.a.ifname, dir)).length, 1, `exactly one ebpfmon filter on ${dir}`);
    }
    const after1 = await daemon.call('flows.list', { port: localPort, protocol: 'udp' });
    assert.equal(after1.flows.length, 1);
    assert.equal(after1.flows[0]!.txBytes, wire(30, 300), 'bytes sent while no daemon ran were counted');
    assert.equal(after1.flows[0]!.txPackets, 30);
    // Not reset: the same first-seen time. Each daemon measures the clock offset itself (to
    // well under a millisecond, daemon/src/sys/clock.ts), so the printed ms may differ by one;
    // a reset flow would start at the second burst, long after the first.
    const firstMs = (r: FlowsListResult) => Date.parse(r.flows[0]!.firstSeenAt);
    assert.ok(Math.abs(firstMs(after1) - firstMs(before1)) <= 1, `the flow was not reset: ${before1.flows[0]!.firstSeenAt} then ${after1.flows[0]!.firstSeenAt}`);
  });

  test('--teardown leaves no program on any hook and no pin', async () => {
    assert.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: a clean stop');
    assert.ok(fs.existsSync(daemon.pinPath), 'a clean stop leaves the pins');
    assert.equal((await ourTcFilters(mon, link.a.ifname, 'ingress')).length, 1, 'a clean stop leaves the classifier attached');

    const r = await daemonOnce(mon, daemon.configPath, ['--teardown']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed 2 classifier filter\(s\)/);
    assert.ok(!fs.existsSync(daemon.pinPath), 'pin directory removed');
    for (const dir of ['ingress', 'egress'] as const) {
      const all = await mon.exec('tc', ['filter', 'show', 'dev', link.a.ifname, dir]);
      assert.equal(all.stdout.trim(), '', `no filter left on ${dir}`);
    }
    // Programs are freed once nothing holds them (RCU may take a moment).
    const deadline = Date.now() + 5000;
    let alive: number[] = [];
    do {
      alive = [];
      for (const id of progIds) if ((await sh('bpftool', ['prog', 'show', 'id', String(id)], { allowFail: true })).code === 0) alive.push(id);
      if (alive.length) await new Promise((res) => setTimeout(res, 200));
    } while (alive.length && Date.now() < deadline);
    assert.deepEqual(alive, [], 'no program left in the kernel');
    const links = JSON.parse((await sh('bpftool', ['-j', 'link', 'show'])).stdout || '[]') as Array<{ id: number }>;
    assert.deepEqual(links.filter((l) => linkIds.includes(l.id)), [], 'no link left');
  });
});
