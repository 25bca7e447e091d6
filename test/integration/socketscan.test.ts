// SPDX-License-Identifier: Apache-2.0
// Sockets that predate the daemon, attributed at start by each scan alternative in turn
// (probes.disable switches off the ones before it, as a verifier that refuses them would),
// against the truth of the pids this test spawned and `ss -p`.
//
// Hosts: `mon` runs the daemon and the processes whose sockets are scanned, `peer` serves
// and connects. Before every start the deployment is torn down, so no hook ever saw the
// sockets: only the scan can name their owners.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { hostOnlyTest, privileged, requireTool } from '../helpers/privileged.js';
import { daemonOnce, destroyMonitorLab, monitorLab, OBJECT_DIR, PEER, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import { SCAN, SCAN_COMPONENT } from '../../daemon/src/monitor/components.js';

const ALTERNATIVES = SCAN_COMPONENT.groups[0]!.alternatives.map((a) => ({ id: a.id, label: a.label }));

describe('start-up socket scan', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon | undefined;
  /** Built with the BPF objects (bpf/Makefile): the second-kernel guest has no compiler. */
  const listenHold = path.join(OBJECT_DIR, 'fixtures/net/listen_hold');

  before(async () => {
    requireTool('ss');
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { flows: { closedRetentionSec: 1800 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  const flows = async (params: object): Promise<Flow[]> => (await daemon!.call('flows.list', { limit: 100_000, ...params })).flows;

  /** The pid `ss -p` names for a local port (the independent view). */
  async function ssPid(proto: 'tcp' | 'udp', port: number, state: 'all' | 'listening' = 'all'): Promise<number> {
    const r = await mon.exec('ss', [proto === 'tcp' ? '-tnpH' : '-unpH', state === 'listening' ? '-l' : '-a', 'sport', '=', `:${port}`]);
    const m = /pid=(\d+)/.exec(r.stdout);
    assert.ok(m, `ss shows a process for ${proto} port ${port}: ${r.stdout}`);
    return Number(m[1]);
  }

  for (const [i, alt] of ALTERNATIVES.entries()) {
    // The last alternative reads /proc in user space: no kernel program, the same code on
    // every kernel; the second-kernel guest runs the three that load programs.
    const register = alt.id === 'proc' ? hostOnlyTest : test;
    register(`alternative ${i + 1} (${alt.id}: ${alt.label}): a TCP connection, a listener that never accepts and a connected UDP socket, all opened before the daemon`, async () => {
      // A fresh deployment: nothing in the kernel while the sockets are made.
      const prev = daemon!;
      await prev.stop('SIGKILL');
      assert.equal((await daemonOnce(mon, prev.configPath, ['--teardown'])).code, 0);
      daemon = undefined;

      const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
      const srvPort = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
      const usrv = peer.spawn(process.execPath, [PEER, 'udp-server', link.b.ip4, '0']);
      const usrvPort = Number((await jsonLines(usrv).next((o) => o.event === 'listening')).port);

      const tcp = mon.spawn(process.execPath, [PEER, 'tcp-hold', link.b.ip4, String(srvPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
      const tcpOut = jsonLines(tcp);
      const tcpPort = Number((await tcpOut.next((o) => o.event === 'connected')).localPort);
      const udp = mon.spawn(process.execPath, [PEER, 'udp-hold', link.b.ip4, String(usrvPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
      const udpOut = jsonLines(udp);
      const udpPort = Number((await udpOut.next((o) => o.event === 'connected')).localPort);
      const lis = mon.spawn(listenHold, [link.a.ip4], { stdio: ['pipe', 'pipe', 'pipe'] });
      const lisPort = Number((await jsonLines(lis).next((o) => o.event === 'listening')).port);

      // ss agrees on who holds each socket.
      assert.equal(await ssPid('tcp', tcpPort), tcp.pid);
      assert.equal(await ssPid('udp', udpPort), udp.pid);
      assert.equal(await ssPid('tcp', lisPort, 'listening'), lis.pid);

      const disable = ALTERNATIVES.slice(0, i).map((a) => `socket-scan/${a.id}`);
      daemon = await startDaemon(mon, {
        pinPath: prev.pinPath, socketDir: path.dirname(prev.socketPath),
        config: { flows: { closedRetentionSec: 1800 }, probes: { disable } },
      });
      const st = await daemon.call('status');
      const probe = st.probes.find((p) => p.capability === 'socket-scan')!;
      for (const d of ALTERNATIVES.slice(0, i)) {
        assert.ok(probe.inactive.some((x) => x.label === d.label && /disabled by configuration/.test(x.reason)), `${d.id} reported as disabled: ${JSON.stringify(probe)}`);
      }
      if (probe.active !== alt.label) {
        // Only a verifier may refuse an alternative this test asked for; then it says so.
        const refused = probe.inactive.find((x) => x.label === alt.label);
        assert.ok(refused && /EACCES|EPERM|EINVAL|verifier|R\d/.test(refused.reason), `${alt.id} is neither active nor refused by the kernel: ${JSON.stringify(probe)}`);
        assert.notEqual(alt.label, SCAN.proc, 'the /proc scan can never be refused');
        process.stdout.write(`# ${alt.id} refused by this kernel (${refused.reason.slice(0, 160)}); ${probe.active} ran instead\n`);
      }
      assert.equal(st.socketScan.method, probe.active);
      assert.equal(st.socketScan.state, 'done');
      assert.ok(st.socketScan.sockets >= 3, `the scan recorded the three sockets: ${JSON.stringify(st.socketScan)}`);

      // Traffic after the start: each flow names the process that held the socket.
      tcp.stdin!.write('send 3000\n');
      await tcpOut.next((o) => o.event === 'sent');
      udp.stdin!.write('send 200\n');
      await udpOut.next((o) => o.event === 'sent');
      const c = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(lisPort), '0', '--hold', '300']);
      await jsonLines(c).next((o) => o.event === 'connected' || o.event === 'done');

      let byPort: Map<string, Flow> = new Map();
      for (let t = 0; t < 50; t++) {
        byPort = new Map((await flows({})).map((f) => [`${f.protocol}:${f.localPort}`, f]));
        if (byPort.has(`tcp:${tcpPort}`) && byPort.has(`udp:${udpPort}`) && byPort.has(`tcp:${lisPort}`)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const want = [['tcp', tcpPort, tcp.pid, 'connection'], ['udp', udpPort, udp.pid, 'connected UDP socket'], ['tcp', lisPort, lis.pid, 'listener']] as const;
      for (const [proto, port, pid, what] of want) {
        const f = byPort.get(`${proto}:${port}`);
        assert.ok(f, `a flow for the ${what} (${proto} port ${port})`);
        assert.deepEqual({ pid: f.pid, attributedBy: f.attributedBy }, { pid, attributedBy: 'proc' }, `the ${what}'s flow: ${JSON.stringify(f)}`);
      }
      assert.equal(byPort.get(`tcp:${tcpPort}`)!.comm, 'node');
      assert.equal(byPort.get(`tcp:${lisPort}`)!.comm, 'listen_hold');

      tcp.stdin!.write('close\n');
      udp.stdin!.write('close\n');
      lis.stdin!.end();
      await tcpOut.next((o) => o.event === 'done');
      await udpOut.next((o) => o.event === 'done');
    });
  }
});
