// SPDX-License-Identifier: Apache-2.0
// ebpfmon-widget, the terminal applet on the D-Bus API, run by real users against a
// private system bus: one frame (--once), live updates from signals, a daemon restart,
// and a clear exit when there is no daemon.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { jsonLines, Lab, sh, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { flow } from '../helpers/fake-monitor.js';
import { startTestDbusService, asUser, BusFakeMonitor, endChild, memoryLogger, REPO, startPrivateBus, type PrivateBus } from '../helpers/dbus.js';
import type { DbusService } from '../../daemon/src/dbus/service.js';
import type { MonitorEvent } from '../../daemon/src/contract/events.js';
import { EXIT } from '../../client/src/exit.js';

const POLICY = path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf');
const WIDGET = path.join(REPO, 'build/js/client/src/widget/main.js');

const tuple = { protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', remoteAddr: '198.18.0.2', remotePort: 443, attributedBy: 'connect' } as const;

describe('ebpfmon-widget', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let bus: PrivateBus;
  let service: DbusService;
  let monitor: BusFakeMonitor;
  let groups: { group: string; adminGroup: string };
  let alice: TestUser;
  let carol: TestUser;

  const widget = (user: TestUser | null, address: string, ...args: string[]) => {
    const argv = [...asUser(user), process.execPath, WIDGET, '--address', address, ...args];
    return sh(argv[0]!, argv.slice(1), { allowFail: true, timeoutMs: 30_000 });
  };
  const start = async () => {
    service = await startTestDbusService({ monitor, logger: memoryLogger().logger, version: '9.9.9', groups, address: bus.address });
  };

  before(async () => {
    requireTool('dbus-daemon', 'setpriv');
    lab = await Lab.create();
    groups = { group: await lab.group('emg'), adminGroup: await lab.group('ema') };
    alice = await lab.user('alice');
    carol = await lab.user('carol', [groups.group]);
    bus = await startPrivateBus({ policies: [POLICY], lab });
    monitor = new BusFakeMonitor();
    monitor.flows = [
      flow({ pid: 100, uid: alice.uid, comm: 'curl', txBytes: 2048, rxBytes: 4096 }),
      flow({ pid: 101, uid: alice.uid, comm: 'firefox', localPort: 40001 }),
      flow({ pid: 300, uid: 0, comm: 'sshd', localPort: 22, txBytes: 1 << 20, rxBytes: 1 << 20 }),
    ];
    monitor.growth.set(101, 50_000);
    await start();
  });

  after(async () => {
    await service?.stop();
    await lab?.destroy();
  });

  test('--once: one frame of the user\'s own top talkers, the busiest first', async () => {
    const r = await widget(alice, bus.address, '--once');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, new RegExp(`^ebpfmon 9\\.9\\.9 - top talkers - ${alice.name}'s processes - `));
    const rows = lines.filter((l) => /^\s*\d+\s/.test(l));
    assert.deepEqual(rows.map((l) => l.trim().split(/\s+/)[2]), ['firefox', 'curl'], r.stdout);
    assert.match(rows[0]!, new RegExp(`^\\s*101\\s+${alice.name}\\s+firefox\\s+\\d+(\\.\\d)? KiB/s`), 'firefox sends tens of KiB/s');
    assert.match(rows[1]!, /curl\s+0 B\/s\s+0 B\/s\s+2\.0 KiB\s+4\.0 KiB$/);
    assert.doesNotMatch(r.stdout, /sshd/, 'root\'s process is not alice\'s business');
  });

  test('--once --json: a member of the ebpfmon group sees everyone', async () => {
    const r = await widget(carol, bus.address, '--once', '--json', '--limit', '2');
    assert.equal(r.code, 0, r.stderr);
    const frame = JSON.parse(r.stdout) as { seesAll: boolean; top: Array<{ comm: string; uid: number }> };
    assert.equal(frame.seesAll, true);
    assert.deepEqual(frame.top.map((x) => x.comm), ['firefox', 'sshd']);
  });

  test('live: updates from BandwidthChanged and ProcessStarted/Stopped, follows a daemon restart, exits on SIGTERM', async () => {
    const child = lab.root.spawn(asUser(alice)[0]!, [...asUser(alice).slice(1), process.execPath, WIDGET, '--address', bus.address, '--json']);
    const out = jsonLines(child);
    type Frame = { top: Array<{ comm: string; txBytesPerSec: number }>; events: Array<{ kind: string; pid: number; comm: string; txBytes?: number }>; note: string | null };
    const frames = () => out.lines as unknown as Frame[];
    await out.next(() => true);
    await out.next((f) => (f as unknown as Frame).top.some((x) => x.comm === 'firefox' && x.txBytesPerSec > 0), 10_000);
    monitor.emit({ ...tuple, type: 'connect', pid: 150, tid: 150, uid: alice.uid, comm: 'ssh', localPort: 40150 } as Partial<MonitorEvent> & { type: 'connect' });
    await out.next((f) => (f as unknown as Frame).events.some((e) => e.kind === 'started' && e.pid === 150));
    monitor.emit({ type: 'connect', ...tuple, pid: 160, tid: 160, uid: 0, comm: 'rootonly', localPort: 40160 } as Partial<MonitorEvent> & { type: 'connect' });
    monitor.emit({
      ...tuple, type: 'close', pid: 150, uid: alice.uid, comm: 'ssh', localPort: 40150, flowSeen: false, interface: null, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0,
      durationMs: 1, payloadBytesSent: 4096, payloadBytesReceived: 8192, previousState: 'established',
    } as Partial<MonitorEvent> & { type: 'close' });
    const stopped = (await out.next((f) => (f as unknown as Frame).events.some((e) => e.kind === 'stopped' && e.pid === 150))) as unknown as Frame;
    assert.equal(stopped.events.find((e) => e.kind === 'stopped')!.txBytes, 4096);
    assert.ok(frames().every((f) => f.events.every((e) => e.pid !== 160)), 'root\'s process never shows up in alice\'s widget');

    // The daemon goes away and comes back: the widget says so, then subscribes again.
    await service.stop();
    const gone = await out.next((f) => (f as unknown as Frame).note?.includes('ebpfmon stopped') ?? false);
    const goneAt = frames().indexOf(gone as unknown as Frame);
    await start();
    await out.next((f) => (f as unknown as Frame).note === null && frames().indexOf(f as unknown as Frame) > goneAt, 10_000);
    monitor.emit({ ...tuple, type: 'accept', pid: 170, tid: 170, uid: alice.uid, comm: 'nc', localPort: 40170 } as Partial<MonitorEvent> & { type: 'accept' });
    await out.next((f) => (f as unknown as Frame).events.some((e) => e.kind === 'started' && e.pid === 170));
    assert.equal(service.stats().subscribers, 1);

    await endChild(child);
    assert.equal(child.exitCode, EXIT.OK, 'SIGTERM is a normal exit');
    const t0 = Date.now();
    while (service.stats().subscribers > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    assert.equal(service.stats().subscribers, 0, 'the widget unsubscribed');
  });

  test('no daemon on the bus, or no bus: a one-line error and exit code 2', async () => {
    const empty = await startPrivateBus({ policies: [POLICY], lab });
    const r = await widget(alice, empty.address, '--once');
    assert.equal(r.code, EXIT.UNREACHABLE, r.stderr);
    assert.equal(r.stderr, 'ebpfmon-widget: ebpfmon is not running on this bus (no org.ebpfmon1)\n');
    await empty.stop();
    const gone = await widget(alice, empty.address, '--once');
    assert.equal(gone.code, EXIT.UNREACHABLE);
    assert.match(gone.stderr, /^ebpfmon-widget: cannot connect to unix:path=.*: /);
    const usage = await widget(alice, bus.address, '--limit', '0');
    assert.equal(usage.code, EXIT.USAGE);
  });
});
