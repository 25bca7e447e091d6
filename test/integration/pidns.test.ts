// SPDX-License-Identifier: Apache-2.0
// A daemon in its own pid namespace (as in a container) reports pids as that namespace
// numbers them - the pids its users know - for flows and for exec events. Truth: the pid
// the client process reads for itself (getpid() inside the namespace).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, jsonLines, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { DAEMON_MAIN, DAEMON_NODE_ARGS, daemonOnce, PEER, TestDaemon, writeConfig } from '../helpers/daemon.js';
import { DaemonClient } from '../../client/src/rpc.js';
import type { EventNotification } from '../../daemon/src/contract/index.js';


describe('daemon in its own pid namespace', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let nodePid: number;

  before(async () => {
    requireTool('unshare', 'nsenter');
    lab = await Lab.create();
    mon = await lab.host('mon');
    peer = await lab.host('peer');
    link = await lab.link(mon, peer);
    const dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755);
    const cfg = writeConfig(dir, path.join(dir, 'ebpfmon.sock'), lab.pinPath());
    const child = mon.spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, ...DAEMON_NODE_ARGS, DAEMON_MAIN, '--config', cfg]);
    daemon = new TestDaemon(mon, child, path.join(dir, 'ebpfmon.sock'), lab.pinPath(), cfg);
    await daemon.waitReady();
    // The daemon is unshare's child: pid 1 of the new namespace.
    nodePid = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]);
    assert.notEqual(fs.readlinkSync(`/proc/${nodePid}/ns/pid`), fs.readlinkSync('/proc/self/ns/pid'), 'a separate pid namespace');
  });
  after(async () => {
    if (nodePid) {
      try {
        process.kill(nodePid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await daemon?.stop('SIGKILL');
    if (daemon) await daemonOnce(mon, daemon.configPath, ['--teardown']);
    await lab?.destroy();
  });

  test('flows and exec events carry the pid of the daemon\'s namespace', async () => {
    const srv = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const port = Number((await jsonLines(srv).next((o) => o.event === 'listening')).port);
    const sub = await DaemonClient.connect(daemon.socketPath);
    const execs: Array<{ pid: number; args: string[] }> = [];
    sub.onNotification('events.event', (p) => {
      const e = (p as EventNotification).event;
      if (e.type === 'exec') execs.push({ pid: e.pid!, args: e.args });
    });
    await sub.call('events.subscribe', { types: ['exec'] });

    // The client runs inside the daemon's pid (and network) namespace, like a process in the container.
    const client = lab.root.spawn('nsenter', [`--target=${nodePid}`, '--pid', '--net', '--', process.execPath, PEER, 'tcp-client', link.b.ip4, String(port), '3000']);
    const done = await jsonLines(client).next((o) => o.event === 'done');
    const innerPid = Number(done.pid);
    assert.notEqual(innerPid, client.pid, 'the namespace numbers it differently from the host');

    const fl = (await daemon.call('flows.list', { pid: innerPid })).flows;
    assert.equal(fl.length, 1, `the flow is found by the pid the process knows: ${JSON.stringify(fl.map((f) => [f.pid, f.localPort]))}`);
    assert.equal(fl[0]!.localPort, done.localPort);
    const t0 = Date.now();
    while (!execs.some((e) => e.pid === innerPid) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(execs.some((e) => e.pid === innerPid && e.args.includes('tcp-client')), `exec event with pid ${innerPid}: ${JSON.stringify(execs.slice(-3))}`);
    sub.close();
  });
});
