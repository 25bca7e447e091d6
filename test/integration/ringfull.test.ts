// SPDX-License-Identifier: Apache-2.0
// When the event ring is full, a TCP close cannot be reported - but the flow must still be
// marked closed, so that a new connection on the same 4-tuple (from another process) is a
// new flow with its own owner, not the old one's. The ring is filled by stopping the
// daemon (nobody consumes) and running processes (exec/exit events).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';


describe('full event ring', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;

  before(async () => {
    ({ lab, mon, peer, link } = await monitorLab());
    daemon = await startDaemon(mon, { config: { maps: { ringBufferBytes: 4096 } } });
  });
  after(() => destroyMonitorLab(daemon, lab));

  test('a reused 4-tuple is a new flow with its new owner even when the close event was lost', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '100', '--close-first']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const before1 = (await daemon.call('status')).counters.ringbufFull!;
    await daemon.stop('SIGKILL');
    // Fill the 4 KiB ring: each exec record is ~600 bytes.
    await mon.exec('bash', ['-c', 'for i in $(seq 1 40); do /bin/true; done']);

    const localPort = 45000 + (process.pid % 10000);
    const connect = async () => {
      const c = mon.spawn(process.execPath, [PEER, 'tcp-client', link.b.ip4, String(port), '10', '--local-port', String(localPort), '--expect', '100']);
      const done = await jsonLines(c).next((o) => o.event === 'done' || o.event === 'error');
      assert.equal(done.event, 'done', JSON.stringify(done));
      await new Promise((r) => c.once('exit', r));
      return c.pid!;
    };
    const first = await connect();
    await new Promise((r) => setTimeout(r, 300)); // let the client socket reach CLOSE
    const second = await connect();

    daemon = await restartDaemon(daemon);
    const st = await daemon.call('status');
    assert.ok(st.counters.ringbufFull! > before1, 'the ring was full: events were lost (and counted)');
    const fl = (await daemon.call('flows.list', { port: localPort, protocol: 'tcp' })).flows.filter((f) => f.localPort === localPort);
    assert.equal(fl.length, 1, JSON.stringify(fl));
    assert.equal(fl[0]!.pid, second, `the flow belongs to the second connection's process ${second}, not the first ${first}`);
    assert.ok(st.counters.flowsReopened! >= 1, 'the flow was restarted for the new connection');
  });
});
