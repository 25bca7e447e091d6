// SPDX-License-Identifier: Apache-2.0
// Signals of org.ebpfmon1.Manager, received by real users' processes on a private system
// bus: ProcessStarted/ProcessStopped from connect/accept/close/exit events and from the
// flow table, BandwidthChanged at most once a second, all unicast to subscribers and
// scoped per subscriber - another user sees nothing, not even with match rules of its own
// - and nothing at all without subscribers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { flow } from '../helpers/fake-monitor.js';
import { startTestDbusService, Agent, BusFakeMonitor, errorOf, getAll, manager, memoryLogger, ok, plain, REPO, startPrivateBus, type SignalMsg } from '../helpers/dbus.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import type { DbusService } from '../../daemon/src/dbus/service.js';
import { MANAGER_IFACE, MANAGER_PATH } from '../../daemon/src/contract/dbus.js';
import type { MonitorEvent } from '../../daemon/src/contract/events.js';

const POLICY = path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf');
const BUDGET = 50;

const tuple = { protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', remoteAddr: '198.18.0.2', remotePort: 80 } as const;
const connectEv = (pid: number, uid: number, comm: string, port: number, type: 'connect' | 'accept' = 'connect') =>
  ({ ...tuple, type, pid, tid: pid, uid, comm, localPort: port, attributedBy: 'connect' }) as Partial<MonitorEvent> & { type: 'connect' };
const closeEv = (pid: number, uid: number, comm: string, port: number, tx: number, rx: number) =>
  ({
    ...tuple, type: 'close', pid, uid, comm, localPort: port, attributedBy: 'connect', flowSeen: true, interface: 'veth0', txBytes: tx, rxBytes: rx,
    txPackets: 1, rxPackets: 1, durationMs: 5, payloadBytesSent: 0, payloadBytesReceived: 0, previousState: 'established',
  }) as Partial<MonitorEvent> & { type: 'close' };
const exitEv = (pid: number, uid: number, comm: string) => ({ type: 'exit', pid, uid, comm, ppid: 1, exitCode: 0, signal: 0, durationMs: 1 }) as Partial<MonitorEvent> & { type: 'exit' };

const ours = (s: SignalMsg) => s.path === MANAGER_PATH && s.iface === MANAGER_IFACE;
const processSignal = (s: SignalMsg) => ours(s) && (s.member === 'ProcessStarted' || s.member === 'ProcessStopped');
const is = (member: string, pid?: number) => (s: SignalMsg) => ours(s) && s.member === member && (pid === undefined || s.body[0] === pid);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

describe('org.ebpfmon1.Manager signals', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let service: DbusService;
  let monitor: BusFakeMonitor;
  let log: ReturnType<typeof memoryLogger>;
  let address: string;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let a: Agent;
  let b: Agent;
  let b2: Agent;
  let c: Agent;

  before(async () => {
    requireTool('dbus-daemon', 'setpriv');
    lab = await Lab.create();
    const group = await lab.group('emg');
    const adminGroup = await lab.group('ema');
    alice = await lab.user('alice');
    bob = await lab.user('bob');
    carol = await lab.user('carol', [group]);
    const bus = await startPrivateBus({ policies: [POLICY], lab });
    address = bus.address;
    monitor = new BusFakeMonitor();
    monitor.flows = [
      flow({ pid: 101, uid: 0, comm: 'placeholder' }), // replaced per test
    ];
    log = memoryLogger();
    service = await startTestDbusService({
      monitor, logger: log.logger, version: '9.9.9', groups: { group, adminGroup }, address, limits: { processSignalsPerSec: BUDGET, cacheMs: 0, maxSubscribers: 3, reservedSubscribers: 0 },
    });
    [a, b, b2, c] = await Promise.all([Agent.start(lab, address, alice), Agent.start(lab, address, bob), Agent.start(lab, address, bob), Agent.start(lab, address, carol)]);
    // Bob's second connection tries to catch everything it can: a plain match rule for the
    // interface, and an eavesdropping one (the system bus refuses to deliver those to users).
    for (const rule of [`type='signal',interface='${MANAGER_IFACE}'`, `type='signal',interface='${MANAGER_IFACE}',eavesdrop='true'`]) {
      await b2.call({ dest: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', iface: 'org.freedesktop.DBus', member: 'AddMatch', sig: 's', body: [rule] });
    }
  });

  after(async () => {
    await service?.stop();
    await lab?.destroy();
  });

  test('without subscribers: no signals, no sampling', async () => {
    monitor.flows = [flow({ pid: 101, uid: alice.uid, comm: 'firefox' })];
    monitor.growth.set(101, 5000);
    monitor.emit(connectEv(100, alice.uid, 'curl', 40000));
    await sleep(2500);
    for (const agent of [a, b, b2, c]) assert.deepEqual(agent.signals.filter(ours), [], `${agent.user?.name}: no signal`);
    assert.equal(service.stats().sampling, false);
    assert.equal(monitor.bus.subscriberCount, 0, 'not even following events');
    monitor.growth.clear();
  });

  test('ProcessStarted/ProcessStopped: to the owner and the group only, each a unicast copy', async () => {
    for (const agent of [a, b, c]) ok(await agent.call(manager('Subscribe')));
    assert.equal(errorOf(await b2.call(manager('Subscribe'))), ERRORS.TooManyClients.dbus, 'the subscriber limit (3 here)');
    monitor.emit(connectEv(100, alice.uid, 'curl', 40000));
    const sa = await a.waitSignal(is('ProcessStarted', 100));
    // details: what the connection that started it says (the event carries no executable,
    // nor remoteGeo: the fake monitor's events are not enriched).
    assert.deepEqual(plain(sa.body), [100, 'curl', alice.uid, { protocol: 'tcp', remoteAddr: tuple.remoteAddr, remotePort: tuple.remotePort }]);
    await c.waitSignal(is('ProcessStarted', 100));
    monitor.emit(connectEv(100, alice.uid, 'curl', 40001)); // a second connection: not a new start
    monitor.emit(connectEv(200, bob.uid, 'wget', 40002));
    await b.waitSignal(is('ProcessStarted', 200)); // sent after alice's: anything for bob about her is here by now
    await c.waitSignal(is('ProcessStarted', 200));
    monitor.emit(closeEv(100, alice.uid, 'curl', 40000, 1000, 2000));
    monitor.emit(closeEv(100, alice.uid, 'curl', 40001, 10, 20));
    const stopped = await a.waitSignal(is('ProcessStopped', 100));
    assert.deepEqual(plain(stopped.body), [100, 'curl', alice.uid, 1010, 2020], 'the bytes of both connections');
    monitor.emit(exitEv(200, bob.uid, 'wget'));
    await b.waitSignal(is('ProcessStopped', 200));
    await c.waitSignal(is('ProcessStopped', 200));

    assert.deepEqual(a.signals.filter(processSignal).map((s) => [s.member, s.body[0]]), [['ProcessStarted', 100], ['ProcessStopped', 100]]);
    assert.deepEqual(b.signals.filter(processSignal).map((s) => [s.member, s.body[0]]), [['ProcessStarted', 200], ['ProcessStopped', 200]], 'bob never hears of alice');
    assert.deepEqual(c.signals.filter(processSignal).map((s) => [s.member, s.body[0]]).sort(), [['ProcessStarted', 100], ['ProcessStarted', 200], ['ProcessStopped', 100], ['ProcessStopped', 200]]);
    for (const s of b.signals.filter((x) => ours(x) && x.member === 'BandwidthChanged')) {
      assert.ok((plain(s.body[0]) as Array<{ uid: number }>).every((r) => r.uid === bob.uid), 'nor does his BandwidthChanged');
    }
    assert.deepEqual(b2.signals.filter(ours), [], 'a connection that did not subscribe gets nothing, whatever its match rules');
    for (const agent of [a, b, c]) {
      for (const s of agent.signals.filter(ours)) assert.equal(s.destination, agent.name, 'addressed to this connection only');
    }
  });

  test('Unsubscribe stops the signals; a subscriber that disconnects is dropped', async () => {
    ok(await a.call(manager('Unsubscribe')));
    const before0 = a.signals.filter(processSignal).length;
    monitor.emit(connectEv(110, alice.uid, 'ssh', 40010));
    await c.waitSignal(is('ProcessStarted', 110));
    assert.equal(a.signals.filter(processSignal).length, before0, 'alice unsubscribed');
    monitor.emit(exitEv(110, alice.uid, 'ssh'));
    await c.waitSignal(is('ProcessStopped', 110));
    assert.equal(service.stats().subscribers, 2);
    await c.close();
    await until(() => service.stats().subscribers === 1, 5000, 'the daemon to drop carol\'s subscription');
    ok(await b.call(manager('Unsubscribe')));
    assert.equal(service.stats().subscribers, 0);
    assert.equal(monitor.bus.subscriberCount, 0, 'the daemon stopped following events');
  });

  test('BandwidthChanged: at most once a second, each subscriber its own top, only while subscribed', async () => {
    monitor.flows = [
      flow({ pid: 101, uid: alice.uid, comm: 'firefox' }),
      flow({ pid: 102, uid: alice.uid, comm: 'idle', txBytes: 5, rxBytes: 5 }),
      flow({ pid: 200, uid: bob.uid, comm: 'wget', localPort: 40100 }),
    ];
    monitor.growth.set(101, 3000);
    monitor.growth.set(200, 7000);
    c = await Agent.start(lab, address, carol);
    const t0 = Date.now();
    ok(await a.call(manager('Subscribe')));
    ok(await c.call(manager('Subscribe')));
    await sleep(4200);
    ok(await a.call(manager('Unsubscribe')));
    ok(await c.call(manager('Unsubscribe')));
    const t1 = Date.now();
    monitor.growth.clear();
    const bw = (agent: Agent) => agent.signals.filter((s) => ours(s) && s.member === 'BandwidthChanged' && s.at >= t0);
    for (const agent of [a, c]) {
      const got = bw(agent);
      assert.ok(got.length >= 2, `${agent.user!.name} got ${got.length} BandwidthChanged`);
      assert.ok(got.length <= Math.floor((t1 - t0) / 1000) + 1, `${agent.user!.name}: ${got.length} signals in ${t1 - t0} ms is more than one a second`);
      for (const s of got) assert.equal(s.destination, agent.name);
    }
    const aliceTop = plain(bw(a).at(-1)!.body[0]) as Array<Record<string, number | string>>;
    assert.deepEqual(aliceTop.map((r) => r.comm), ['firefox', 'idle'], 'alice: her processes, the sender first');
    assert.ok((aliceTop[0]!.txBytesPerSec as number) > 0);
    assert.ok(bw(a).every((s) => (plain(s.body[0]) as Array<{ uid: number }>).every((r) => r.uid === alice.uid)), 'never anyone else\'s');
    const carolTop = plain(bw(c).at(-1)!.body[0]) as Array<Record<string, number | string>>;
    assert.deepEqual(carolTop.slice(0, 2).map((r) => r.comm), ['wget', 'firefox'], 'carol: everyone\'s, busiest first');
    assert.deepEqual([...b.signals, ...b2.signals].filter((s) => ours(s) && s.member === 'BandwidthChanged'), [], 'bob subscribed to nothing now');
    // Nothing once nobody is subscribed, and sampling stops.
    const after0 = Date.now();
    monitor.growth.set(101, 3000);
    await sleep(2500);
    monitor.growth.clear();
    for (const agent of [a, b, b2, c]) assert.deepEqual(agent.signals.filter((s) => ours(s) && s.at > after0 + 100), [], `${agent.user!.name}: nothing after unsubscribing`);
    await until(() => !service.stats().sampling, 5000, 'sampling to stop');
  });

  test('a burst of connections: each subscriber gets its budget per second, the rest is counted', async () => {
    monitor.flows = [];
    ok(await a.call(manager('Subscribe')));
    const dropped0 = plain(ok(await a.call(getAll())))[0].SignalsDropped as number;
    for (let i = 0; i < 300; i++) monitor.emit(connectEv(1000 + i, alice.uid, 'burst', 41000 + i));
    await a.waitSignal(is('ProcessStarted'));
    await sleep(500);
    const started = a.signals.filter((s) => ours(s) && s.member === 'ProcessStarted' && (s.body[0] as number) >= 1000).length;
    assert.ok(started >= BUDGET - 5 && started <= BUDGET + 30, `${started} ProcessStarted for a budget of ${BUDGET}/s`);
    const dropped = (plain(ok(await a.call(getAll())))[0].SignalsDropped as number) - dropped0;
    assert.equal(started + dropped, 300, 'every start was either sent or counted as dropped');
    ok(await a.call(manager('Unsubscribe')));
  });

  test('traffic seen only in the flow table (UDP) starts and stops a process too', async () => {
    monitor.flows = [flow({ pid: 500, uid: alice.uid, comm: 'dnsclient', protocol: 'udp', state: 'active' })];
    ok(await a.call(manager('Subscribe')));
    monitor.growth.set(500, 200);
    const started = await a.waitSignal(is('ProcessStarted', 500), 5000);
    assert.deepEqual(plain(started.body).slice(0, 3), [500, 'dnsclient', alice.uid]);
    monitor.growth.clear();
    monitor.flows[0]!.closedAt = new Date().toISOString();
    const stopped = await a.waitSignal(is('ProcessStopped', 500), 5000);
    assert.ok((plain(stopped.body)[3] as number) > 0, 'with the bytes it sent while talking');
    ok(await a.call(manager('Unsubscribe')));
    assert.deepEqual(log.records.filter((r) => r.level >= 50), [], 'no internal errors logged');
  });
});
