// SPDX-License-Identifier: Apache-2.0
// The daemon as a systemd service would see it, without systemd: sd_notify messages on a
// NOTIFY_SOCKET (READY=1 once programs are attached and the socket listens, STATUS=,
// WATCHDOG=1 at the requested rate, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM),
// SIGHUP applying a new interface list without detaching anything else, and an invalid
// reload being refused with the running configuration kept.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { daemonOnce, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { NotifySocket } from '../helpers/notify.js';

describe('service integration', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let l1: LinkInfo;
  let l2: LinkInfo;
  let daemon: TestDaemon;
  let notify: NotifySocket;

  before(async () => {
    lab = await Lab.create();
    mon = await lab.host('mon');
    l1 = await lab.link(mon, await lab.host('p1'));
    l2 = await lab.link(mon, await lab.host('p2'));
    notify = new NotifySocket(path.join(lab.tmpdir(), 'notify.sock'));
    lab.onDestroy(() => notify.close());
    daemon = await startDaemon(mon, { env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '400000' } });
  });
  after(async () => {
    await daemon?.stop('SIGKILL');
    if (daemon) await daemonOnce(mon, daemon.configPath, ['--teardown']);
    await lab?.destroy();
  });

  test('READY=1 with a STATUS line once the programs are attached and the socket answers', async () => {
    await notify.waitFor((l) => l === 'READY=1');
    const st = await notify.waitFor((l) => l.startsWith('STATUS='));
    assert.match(st, /^STATUS=monitoring 2 interfaces, \d+ client\(s\); socket /);
    assert.ok(notify.lines().includes(`MAINPID=${daemon.pid}`));
    const s = await daemon.call('status');
    assert.equal(s.interfaces.length, 2, 'attached before READY');
  });

  test('WATCHDOG=1 at half the requested interval', async () => {
    const before1 = notify.lines().filter((l) => l === 'WATCHDOG=1').length;
    await new Promise((r) => setTimeout(r, 1100));
    const n = notify.lines().filter((l) => l === 'WATCHDOG=1').length - before1;
    assert.ok(n >= 3 && n <= 8, `${n} pings in 1.1 s for WatchdogSec=0.4 s`);
  });

  test('SIGHUP applies a new interface list, detaching only what no longer matches', async () => {
    const cfg = JSON.parse(fs.readFileSync(daemon.configPath, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(daemon.configPath, JSON.stringify({ ...cfg, interfaces: [l1.a.ifname], logLevel: 'debug' }));
    const progsBefore = (await daemon.call('programs.list')).programs.map((p) => p.id).sort();
    process.kill(daemon.pid, 'SIGHUP');
    await notify.waitFor((l) => l === 'RELOADING=1');
    const t0 = Date.now();
    let s = await daemon.call('status');
    while (s.interfaces.length !== 1 && Date.now() - t0 < 5000) {
      await new Promise((r) => setTimeout(r, 50));
      s = await daemon.call('status');
    }
    assert.deepEqual(s.interfaces.map((i) => i.name), [l1.a.ifname]);
    const tc2 = await mon.exec('tc', ['filter', 'show', 'dev', l2.a.ifname, 'ingress']);
    assert.equal(tc2.stdout.trim(), '', 'the dropped interface has no filter');
    const tc1 = await mon.exec('tc', ['filter', 'show', 'dev', l1.a.ifname, 'ingress']);
    assert.match(tc1.stdout, /handle 0xeb9f tc_ingress/, 'the kept interface still has its filter');
    const progsAfter = (await daemon.call('programs.list')).programs.map((p) => p.id).sort();
    assert.deepEqual(progsAfter, progsBefore, 'no program was reloaded');
    assert.ok(daemon.logs().some((l) => l.msg === 'configuration reloaded'));
  });

  test('an invalid reload is refused and the running configuration kept', async () => {
    const good = fs.readFileSync(daemon.configPath, 'utf8');
    fs.writeFileSync(daemon.configPath, '{"interfaces": 42}');
    process.kill(daemon.pid, 'SIGHUP');
    const t0 = Date.now();
    while (!daemon.logs().some((l) => String(l.msg).startsWith('reload refused')) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    const refused = daemon.logs().find((l) => String(l.msg).startsWith('reload refused'));
    assert.ok(refused, 'a log line says the reload was refused');
    assert.match(String(refused.msg), /interfaces: must be an array of interface names/);
    const s = await daemon.call('status');
    assert.deepEqual(s.interfaces.map((i) => i.name), [l1.a.ifname], 'still running the last good configuration');
    fs.writeFileSync(daemon.configPath, good);
  });

  test('SIGTERM: STOPPING=1, the socket goes away, programs stay pinned and attached', async () => {
    const code = await daemon.stop('SIGTERM');
    assert.equal(code, 0);
    assert.ok(notify.lines().includes('STOPPING=1'));
    assert.ok(!fs.existsSync(daemon.socketPath), 'socket removed');
    assert.ok(fs.existsSync(path.join(daemon.pinPath, 'links')), 'pins kept');
    const tc1 = await mon.exec('tc', ['filter', 'show', 'dev', l1.a.ifname, 'egress']);
    assert.match(tc1.stdout, /handle 0xeb9f tc_egress/, 'classifier still attached');
  });
});
