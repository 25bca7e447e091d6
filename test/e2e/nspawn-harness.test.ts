// SPDX-License-Identifier: Apache-2.0
// The nspawn harness (test/e2e/nspawn/) proven with a stand-in service, before the real
// daemon and .deb exist: a real systemd 252 and system bus boot in systemd-nspawn, a
// Type=notify unit goes active on READY=1 and shows its STATUS=, the watchdog restarts it
// when it stops pinging, an unprivileged user reaches the system bus (busctl, dbus-next)
// and is denied privileged calls, a confined service loads BPF programs (and cannot
// without CAP_BPF), and destroy() leaves nothing behind. Each check compares with a truth
// the container itself gives (systemd's MainPID, the bus's GetConnectionUnixUser, the
// kernel's answer to bpf()).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privileged, requireTool } from '../helpers/privileged.js';
import { defaultLog, HarnessError, pidAlive, run } from './nspawn/command.js';
import { Container } from './nspawn/container.js';
import { hierarchies } from './nspawn/cgroups.js';
import { PhaseTimer } from './nspawn/phases.js';
import { ensureRootfs, type RootfsImage } from './nspawn/rootfs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The project inside the container: not under /tmp or /home, which the confined units'
 * PrivateTmp= and ProtectHome= would hide (a checkout in /tmp failed that way). */
const CT_ROOT = '/srv/ebpfmon-src';
const js = (f: string) => path.join(CT_ROOT, 'build/js/test/e2e/nspawn', f);
const BPF_OBJECT = path.join(CT_ROOT, 'build/bpf/procs.bpf.o');
const UNIT = 'ebpfmon-standin.service';
const NOREADY = 'ebpfmon-standin-noready.service';
const WATCHDOG_SEC = 3;

const standinUnit = (unit: string, extra: string) => `[Unit]
Description=ebpfmon stand-in (nspawn harness test)

[Service]
Type=notify
ExecStart=/usr/bin/node ${js('standin.js')}${extra}
RuntimeDirectory=${unit.replace(/\.service$/, '')}
# SIGABRT from the watchdog must not write a node core file into the container
LimitCORE=0
`;

describe('nspawn harness', privileged({ timeout: 14 * 60_000 }), () => {
  const timer = new PhaseTimer();
  let image: RootfsImage | undefined;
  let c: Container | undefined;
  const box = () => {
    assert.ok(c, 'the container did not boot (see the before hook)');
    return c;
  };

  before(async () => {
    requireTool('systemd-nspawn', 'debootstrap', 'zstd', 'nsenter', 'setpriv', 'unshare');
    if (!fs.existsSync(path.join(root, 'build/bpf/procs.bpf.o'))) await run('make', ['-s', '-C', path.join(root, 'bpf')], { step: 'building BPF objects', timeoutMs: 5 * 60_000 });
    image = await timer.time('rootfs (ensureRootfs)', () => ensureRootfs());
    defaultLog(`rootfs ${image.key}: ${image.source} in ${(image.ms / 1000).toFixed(1)} s`);
    c = await timer.time('boot (Container.create)', () => Container.create({ rootfs: image!, binds: [{ host: root, container: CT_ROOT }] }));
  });

  after(async () => {
    await timer.time('destroy (after hook)', async () => c?.destroy());
    process.stderr.write(`\n${timer.table(`nspawn harness phases (rootfs: ${image?.source ?? 'none'})`)}\n`);
  });

  it('a Type=notify unit is active only after READY=1, and shows its STATUS= text', async () => {
    const ct = box();
    await timer.time('notify unit', async () => {
      await ct.writeFile(`/etc/systemd/system/${UNIT}`, standinUnit(UNIT, `\nWatchdogSec=${WATCHDOG_SEC}\nRestart=on-failure\nRestartSec=100ms`));
      await ct.writeFile(`/etc/systemd/system/${NOREADY}`, standinUnit(NOREADY, ' --no-ready\nTimeoutStartSec=2'));
      await ct.systemctl(['daemon-reload']);

      await ct.systemctl(['start', UNIT], { timeoutMs: 30_000 });
      const p = await ct.show(UNIT, ['ActiveState', 'SubState', 'StatusText', 'MainPID', 'Type']);
      assert.equal(p.Type, 'notify');
      assert.equal(p.ActiveState, 'active', `${UNIT}: ${JSON.stringify(p)}\n${await ct.journal(UNIT)}`);
      assert.equal(p.SubState, 'running');
      // The stand-in puts its own pid in STATUS=; systemd's MainPID is the independent truth.
      assert.equal(p.StatusText, `stand-in serving (pid ${p.MainPID})`);

      // The same program without READY=1: systemd never calls it started.
      const r = await ct.systemctl(['start', NOREADY], { allowFail: true, timeoutMs: 30_000 });
      assert.notEqual(r.code, 0, 'a notify unit that never sends READY=1 must not start');
      const q = await ct.show(NOREADY, ['ActiveState', 'Result']);
      assert.deepEqual(q, { ActiveState: 'failed', Result: 'timeout' });
    });
  });

  it('WatchdogSec restarts the unit when it stops sending WATCHDOG=1', async () => {
    const ct = box();
    await timer.time('watchdog restart', async () => {
      const first = await ct.show(UNIT, ['MainPID', 'NRestarts']);
      // Pinging keeps it alive: wait for pings covering more than WatchdogSec (pings come every WatchdogSec/4).
      const pings = () => ct.readFile('/run/ebpfmon-standin/pings').then(Number, () => 0);
      for (const deadline = Date.now() + 30_000; (await pings()) < 6; ) {
        assert.ok(Date.now() < deadline, `the stand-in did not ping the watchdog:\n${await ct.journal(UNIT)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(await ct.show(UNIT, ['MainPID', 'NRestarts']), first, 'restarted while it was pinging');

      await ct.exec(['kill', '-USR1', first.MainPID!]);
      const restarted = await ct.waitForUnit(
        UNIT,
        ['ActiveState', 'SubState', 'MainPID', 'NRestarts'],
        (p) => Number(p.NRestarts) > Number(first.NRestarts) && p.ActiveState === 'active' && p.SubState === 'running' && p.MainPID !== first.MainPID && p.MainPID !== '0',
        'restarted by the watchdog',
        WATCHDOG_SEC * 1000 + 30_000,
      );
      assert.equal(Number(restarted.NRestarts), Number(first.NRestarts) + 1);
      assert.match(await ct.journal(UNIT, 200), /Watchdog timeout/);
    });
  });

  it('an unprivileged user reaches the system bus (busctl, dbus-next) and is denied privileged calls', async () => {
    const ct = box();
    await timer.time('unprivileged user + bus', async () => {
      // Group membership is what the daemon's D-Bus policy and socket permissions key on.
      await ct.exec(['groupadd', '--system', 'harness-readers']);
      const alice = await ct.addUser('alice', { groups: ['harness-readers'] });
      assert.notEqual(alice.uid, 0);
      const id = await ct.exec(['id', '-u'], { user: 'alice' });
      assert.equal(id.stdout.trim(), String(alice.uid));
      assert.ok((await ct.exec(['id', '-Gn'], { user: 'alice' })).stdout.trim().split(' ').includes('harness-readers'));

      const list = await ct.exec(['busctl', '--system', '--no-pager', '--no-legend', 'list'], { user: 'alice' });
      const names = list.stdout.split('\n').map((l) => l.split(/\s+/)[0]);
      assert.ok(names.includes('org.freedesktop.DBus') && names.includes('org.freedesktop.systemd1'), list.stdout);
      const intro = await ct.exec(['busctl', '--system', '--no-pager', 'introspect', 'org.freedesktop.DBus', '/org/freedesktop/DBus'], { user: 'alice' });
      assert.match(intro.stdout, /\.ListNames\s+method/);

      // A privileged systemd call: denied for alice (polkit has no agent to ask), allowed for root.
      const start = ['busctl', '--system', 'call', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'StartUnit', 'ss', UNIT, 'replace'];
      const denied = await ct.exec(start, { user: 'alice', allowFail: true });
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /Interactive authentication required|Access denied/);
      await ct.exec(start);

      const probe = await ct.exec(['/usr/bin/node', js('dbus-probe.js'), UNIT], { user: 'alice' });
      const seen = JSON.parse(probe.stdout) as { unique: string; uid: number; systemdOnBus: boolean; denied: string | null };
      assert.match(seen.unique, /^:1\.\d+$/);
      assert.equal(seen.uid, alice.uid, 'the bus daemon attributes the connection to alice');
      assert.equal(seen.systemdOnBus, true);
      assert.match(seen.denied ?? 'not denied', /InteractiveAuthorizationRequired|AccessDenied/);
    });
  });

  it('commands run in the container PID namespace and cgroup tree, as the given user', async () => {
    const ct = box();
    await timer.time('spawn as user', async () => {
      const proc = ct.spawn(['sleep', '300'], { user: 'alice' });
      const pid = await proc.pid;
      const status = await ct.readFile(`/proc/${pid}/status`);
      assert.match(status, /^Name:\s+sleep$/m);
      assert.match(status, new RegExp(`^Uid:\\s+${(await ct.userInfo('alice')).uid}\\s`, 'm'));
      // Inside the container's cgroup tree, so cgroup-attached BPF programs see its sockets.
      assert.match(await ct.readFile(`/proc/${pid}/cgroup`), /^0::\/ebpfmon-harness$/m);
      await proc.kill();
      assert.equal((await ct.exec(['kill', '-0', String(pid)], { allowFail: true })).code, 1);
    });
  });

  it('a confined service loads BPF programs, and cannot without CAP_BPF', async () => {
    const ct = box();
    await timer.time('BPF load (confined)', async () => {
      const hardening = ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes'];
      const ok = await ct.exec(['/usr/bin/node', js('bpf-probe.js'), BPF_OBJECT], {
        confined: { properties: ['CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN', ...hardening] },
      });
      const [res] = JSON.parse(ok.stdout) as Array<{ ok: boolean; programs?: Array<{ name: string; fd: number }>; error?: string }>;
      assert.ok(res?.ok, ok.stdout);
      assert.ok(res.programs!.length > 0 && res.programs!.every((p) => p.fd > 0), ok.stdout);

      const no = await ct.exec(['/usr/bin/node', js('bpf-probe.js'), BPF_OBJECT], {
        confined: { properties: ['CapabilityBoundingSet=CAP_PERFMON CAP_NET_ADMIN', ...hardening] },
        allowFail: true,
      });
      assert.notEqual(no.code, 0);
      assert.match(no.stdout, /EPERM/);
    });
  });

  it("the container's /sys/fs/bpf is a private bpffs the host can inspect", async () => {
    const ct = box();
    await timer.time('private bpffs', async () => {
      assert.equal((await ct.exec(['stat', '--file-system', '--format=%T', '/sys/fs/bpf'])).stdout.trim(), 'bpf_fs');
      await ct.exec(['mkdir', '/sys/fs/bpf/harness-probe']);
      assert.ok(fs.existsSync(path.join(ct.bpffs, 'harness-probe')), `not visible at ${ct.bpffs}`);
      assert.ok(!fs.existsSync('/sys/fs/bpf/harness-probe'), "the host's own /sys/fs/bpf must not see it");
    });
  });

  it('a second container boots beside the first on the same cached rootfs', async () => {
    const ct = box();
    await timer.time('second container', async () => {
      const other = await Container.create({ rootfs: image!, bindNode: false });
      try {
        assert.equal((await other.exec(['hostname'])).stdout.trim(), other.name);
        assert.equal((await ct.exec(['hostname'])).stdout.trim(), ct.name);
        // Writes stay in each container's own overlay.
        await other.writeFile('/etc/harness-mark', 'other\n');
        assert.equal((await ct.exec(['test', '-e', '/etc/harness-mark'], { allowFail: true })).code, 1);
      } finally {
        await other.destroy();
      }
    });
  });

  it("a failing command's error names the command, its stderr and the journal", async () => {
    const ct = box();
    await assert.rejects(ct.exec(['sh', '-c', 'echo harness-oops >&2; exit 3']), (err: Error) => {
      assert.ok(err instanceof HarnessError);
      assert.match(err.message, /exited with code 3/);
      assert.match(err.message, /command: sh -c 'echo harness-oops >&2; exit 3'/);
      assert.match(err.message, /stderr \(tail\):\n\s+harness-oops/);
      assert.match(err.message, /journal \(tail\):/);
      return true;
    });
  });

  it('destroy() powers off and leaves no process, cgroup or temp dir', async () => {
    const ct = box();
    await timer.time('destroy', async () => {
      const pids = [ct.nspawnPid, ct.leader];
      const h = hierarchies();
      const cgroups = [h.v2, h.v1systemd].filter((m): m is string => m !== null).map((m) => path.join(m, ct.name));
      assert.ok(cgroups.every((d) => fs.existsSync(d)));
      await ct.destroy();
      assert.deepEqual(pids.filter(pidAlive), []);
      assert.deepEqual(cgroups.filter((d) => fs.existsSync(d)), []);
      assert.equal(fs.existsSync(ct.dir), false);
    });
  });
});
