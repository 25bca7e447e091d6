// SPDX-License-Identifier: Apache-2.0
// The pieces behind the signals and the calls: per-process rates from two samples, which
// processes are talking (events first, the flow table for the rest), the per-subscriber
// budget, and round-robin scheduling of calls across callers.
// Clocks are injected: each sample advances the clock by exactly one second.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MonitorEvent } from '../../../../daemon/src/contract/events.js';
import type { ProcessTotals } from '../../../../daemon/src/contract/flows.js';
import { RateTracker, rankTalkers, type Talker } from '../../../../daemon/src/dbus/rates.js';
import { TalkingProcesses, type StartedVia, type TalkerChange } from '../../../../daemon/src/dbus/talkers.js';
import { startedDetails } from '../../../../daemon/src/dbus/signals.js';
import { Subscribers } from '../../../../daemon/src/dbus/subscribers.js';
import { CallScheduler } from '../../../../daemon/src/dbus/scheduler.js';
import { noIdentity } from '../../../helpers/fake-monitor.js';

function proc(pid: number | null, uid: number | null, tx: number, rx = 0, openFlows = 1): ProcessTotals {
  return { pid, comm: pid === null ? null : `p${pid}`, uid, exe: null, flows: 1, openFlows, txBytes: tx, rxBytes: rx, txPackets: 0, rxPackets: 0, lastSeenAt: null, places: [], http: null, ...noIdentity };
}

function talker(pid: number, uid: number, txDelta: number, openFlows = 1): Talker {
  return { ...proc(pid, uid, txDelta, 0, openFlows), txDelta, rxDelta: 0, txBytesPerSec: txDelta, rxBytesPerSec: 0, bytesPerSec: txDelta };
}

const base = { at: '2026-11-22T00:00:00.000Z', protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', remoteAddr: '198.18.0.2', remotePort: 80, attributedBy: 'connect', remoteGeo: null, ...noIdentity } as const;
const connect = (pid: number, uid: number, port: number): MonitorEvent => ({ ...base, type: 'connect', pid, tid: pid, uid, comm: `p${pid}`, localPort: port });
const close = (pid: number, uid: number, port: number, tx: number, rx: number, flowSeen = true): MonitorEvent => ({
  ...base, type: 'close', pid, uid, comm: `p${pid}`, localPort: port, flowSeen, interface: null, txBytes: flowSeen ? tx : 0, rxBytes: flowSeen ? rx : 0,
  txPackets: 1, rxPackets: 1, durationMs: 1, payloadBytesSent: flowSeen ? 0 : tx, payloadBytesReceived: flowSeen ? 0 : rx, previousState: 'established',
});

describe('RateTracker', () => {
  test('rates are the difference between two samples one interval apart', async () => {
    let clock = 0;
    const totals = [[proc(1, 10, 1000), proc(2, 20, 500, 500)], [proc(1, 10, 4000), proc(2, 20, 400, 900), proc(3, 10, 700)]];
    let i = 0;
    const tr = new RateTracker({ intervalMs: 10, now: () => clock, sample: async () => ((clock += 1000), totals[Math.min(i++, totals.length - 1)]!) });
    const t = await tr.talkers();
    const by = new Map(t.map((x) => [x.pid, x]));
    assert.equal(by.get(1)!.txBytesPerSec, 3000);
    assert.equal(by.get(2)!.txBytesPerSec, 0, 'a total that went down is not a negative rate');
    assert.equal(by.get(2)!.rxBytesPerSec, 400);
    assert.equal(by.get(3)!.txBytesPerSec, 700, 'a new process moved all its bytes since the last sample');
    assert.equal(by.get(1)!.bytesPerSec, 3000);
    tr.stop();
  });

  test('sampling stops after the keep-alive unless subscribers keep it active', async () => {
    let clock = 0;
    const tr = new RateTracker({ intervalMs: 5, keepAliveMs: 50, now: () => clock, sample: async () => ((clock += 20), [proc(1, 1, clock)]) });
    await tr.talkers();
    assert.ok(tr.running);
    const t0 = Date.now();
    while (tr.running && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(tr.running, false, 'stopped on its own');
    assert.equal(tr.latest(), null, 'and dropped its samples');
    tr.setActive(true);
    const samples = tr.samples;
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(tr.running && tr.samples > samples + 2, 'an active tracker keeps sampling');
    tr.setActive(false);
    tr.stop();
  });

  test('a failing sample rejects the waiting callers', async () => {
    const tr = new RateTracker({ intervalMs: 5, sample: () => { throw new Error('dump failed'); } });
    await assert.rejects(tr.talkers(), /dump failed/);
    tr.stop();
  });

  test('ranking: busiest first, then by totals, scoped to a uid', () => {
    const list = [talker(1, 10, 100), talker(2, 20, 900), talker(3, 10, 0), { ...talker(4, 10, 0), txBytes: 50 }];
    assert.deepEqual(rankTalkers(list, undefined, 10).map((t) => t.pid), [2, 1, 4, 3]);
    assert.deepEqual(rankTalkers(list, 10, 2).map((t) => t.pid), [1, 4]);
  });
});

describe('TalkingProcesses', () => {
  test('connections: started on the first, stopped when the last closes, with the bytes moved', () => {
    const seen: TalkerChange[] = [];
    const tp = new TalkingProcesses((c) => seen.push(c));
    tp.onEvent(connect(100, 1000, 40000));
    tp.onEvent(connect(100, 1000, 40001));
    tp.onEvent({ ...connect(0, 0, 1), pid: null, uid: null } as MonitorEvent); // unattributed: ignored
    assert.deepEqual(seen, [{ kind: 'started', pid: 100, comm: 'p100', uid: 1000, via: { protocol: 'tcp', remoteAddr: '198.18.0.2', remotePort: 80 } }]);
    tp.onEvent(close(100, 1000, 40000, 10, 20));
    assert.equal(seen.length, 1, 'one connection still open');
    tp.onEvent(close(100, 1000, 40001, 5, 7, false)); // loopback: payload counts
    assert.deepEqual(seen[1], { kind: 'stopped', pid: 100, comm: 'p100', uid: 1000, txBytes: 15, rxBytes: 27 });
    tp.onEvent(close(100, 1000, 40001, 5, 7)); // a late duplicate: nothing
    assert.equal(seen.length, 2);
    assert.equal(tp.size, 0);
  });

  test('ProcessStarted details name the process\'s unit, container and app when its event or flows do', () => {
    const seen: TalkerChange[] = [];
    const tp = new TalkingProcesses((c) => seen.push(c));
    const container = { runtime: 'docker' as const, id: 'a'.repeat(64), name: 'web' };
    tp.onEvent({ ...connect(12, 0, 1), unit: `docker-${'a'.repeat(64)}.scope`, slice: 'system.slice', cgroupPath: '/system.slice/x', container } as MonitorEvent);
    const via = (seen[0] as { via: StartedVia }).via;
    assert.deepEqual([via.unit, via.slice, via.container, via.app, via.userUnit], [`docker-${'a'.repeat(64)}.scope`, 'system.slice', container, undefined, undefined], 'null fields are left out');
    const d = startedDetails(via);
    assert.equal((d.unit as { value: string }).value, via.unit);
    assert.equal((d.container as { signature: string }).signature, 'a{sv}');
    assert.ok(!('app' in d));
  });

  test('an exit stops a process even when its close events were lost', () => {
    const seen: TalkerChange[] = [];
    const tp = new TalkingProcesses((c) => seen.push(c));
    tp.onEvent(connect(7, 1, 1));
    tp.onEvent({ type: 'exit', at: base.at, pid: 7, uid: 1, comm: 'p7', ppid: 1, exitCode: 0, signal: 0, durationMs: 1, ...noIdentity });
    assert.deepEqual(seen.map((c) => c.kind), ['started', 'stopped']);
  });

  test('flow-table traffic: started when bytes move on an open flow, stopped when idle or closed', () => {
    let now = 0;
    const seen: TalkerChange[] = [];
    const tp = new TalkingProcesses((c) => seen.push(c), { idleMs: 3000, now: () => now });
    tp.onSample([talker(5, 1, 100), talker(6, 1, 0), talker(8, 1, 50, 0)]);
    assert.deepEqual(seen.map((c) => [c.kind, c.pid]), [['started', 5]], 'no bytes, or no open flow: not talking');
    now = 1000;
    tp.onSample([talker(5, 1, 200)]);
    assert.equal(seen.length, 1);
    now = 4500;
    tp.onSample([talker(5, 1, 0)]);
    assert.deepEqual(seen[1], { kind: 'stopped', pid: 5, comm: 'p5', uid: 1, txBytes: 300, rxBytes: 0 });
    tp.onSample([talker(9, 1, 10)]);
    now = 5000;
    tp.onSample([talker(9, 1, 0, 0)]);
    assert.deepEqual(seen.slice(2).map((c) => [c.kind, c.pid]), [['started', 9], ['stopped', 9]], 'its only flow closed');
  });

  test('a flood of connections is bounded and counted', () => {
    const seen: TalkerChange[] = [];
    const tp = new TalkingProcesses((c) => seen.push(c), { maxSockets: 10, maxProcesses: 5 });
    for (let i = 0; i < 100; i++) tp.onEvent(connect(1 + (i % 20), 1, 1000 + i));
    assert.ok(tp.size <= 5);
    assert.equal(seen.length, tp.size);
    assert.ok(tp.untracked > 0);
  });
});

describe('Subscribers', () => {
  test('one user cannot take every slot: a per-uid cap, and a share kept for root and the group', () => {
    const subs = new Subscribers({ max: 6, processSignalsPerSec: 1, maxPerUid: 3, reserved: 2 });
    const add = (n: number, uid: number, seesAll = false) => subs.add(`:1.${n}`, { uid, pid: n, gids: [] }, { seesAll, admin: uid === 0 });
    assert.deepEqual([1, 2, 3].map((n) => add(n, 1000)), ['ok', 'ok', 'ok']);
    assert.equal(add(4, 1000), 'uidLimit', 'uid 1000 has three');
    assert.equal(add(5, 1001), 'ok');
    assert.equal(add(6, 1002), 'full', 'the slots open to everyone are taken');
    assert.equal(add(7, 0), 'ok', 'root gets a reserved slot');
    assert.equal(add(8, 7, true), 'ok', 'so does the group');
    assert.equal(add(9, 0), 'full', 'and then nobody');
    subs.remove(':1.1');
    assert.equal(add(10, 1000), 'full', 'reserved slots stay reserved: 5 of 6 are taken');
    subs.remove(':1.7');
    subs.remove(':1.8');
    assert.equal(add(11, 1000), 'ok', 'the last 2 of 6 slots are the reserved ones, whoever holds the others');
  });

  test('a budget of process signals per second, refilled with time', () => {
    let now = 0;
    const subs = new Subscribers({ max: 2, processSignalsPerSec: 3, now: () => now });
    assert.equal(subs.add(':1.1', { uid: 1, pid: 1, gids: [] }, { seesAll: false, admin: false }), 'ok');
    assert.equal(subs.add(':1.2', { uid: 2, pid: 2, gids: [] }, { seesAll: true, admin: false }), 'ok');
    assert.equal(subs.add(':1.1', { uid: 1, pid: 1, gids: [] }, { seesAll: false, admin: false }), 'ok', 'twice is harmless');
    assert.equal(subs.add(':1.3', { uid: 3, pid: 3, gids: [] }, { seesAll: false, admin: false }), 'full', 'the limit');
    assert.deepEqual([...subs.seeing(1)].map((s) => s.sender), [':1.1', ':1.2']);
    assert.deepEqual([...subs.seeing(9)].map((s) => s.sender), [':1.2']);
    const s = [...subs.all()][0]!;
    assert.deepEqual([1, 2, 3, 4].map(() => subs.take(s)), [true, true, true, false]);
    now = 1000;
    assert.ok(subs.take(s));
  });
});

describe('CallScheduler', () => {
  const tick = () => new Promise((r) => setImmediate(r));

  test('round-robin: a caller arriving behind a flood is served in the next turn', async () => {
    const sch = new CallScheduler({ maxQueuedPerCaller: 1000, maxConcurrentPerCaller: 1 });
    const order: string[] = [];
    for (let i = 0; i < 100; i++) assert.ok(sch.add(':1.1', async () => void order.push(`flood${i}`)));
    assert.ok(sch.add(':1.2', async () => void order.push('other')));
    const t0 = Date.now();
    while (sch.size > 0 && Date.now() - t0 < 5000) await tick();
    assert.equal(order.length, 101);
    assert.ok(order.indexOf('other') <= 1, `the other caller ran at position ${order.indexOf('other')}`);
  });

  test('bounded: a full queue refuses, calls in progress per caller are capped, a departed caller is dropped', async () => {
    const sch = new CallScheduler({ maxQueuedPerCaller: 5, maxConcurrentPerCaller: 2 });
    let running = 0;
    const release: Array<() => void> = [];
    const job = () => new Promise<void>((r) => {
      running++;
      release.push(() => {
        running--;
        r();
      });
    });
    for (let i = 0; i < 5; i++) assert.ok(sch.add(':1.1', job));
    assert.equal(sch.add(':1.1', job), false, 'the sixth waits nowhere');
    assert.ok(sch.add(':1.2', job), 'another caller has its own queue');
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(running, 3, 'two of :1.1 and one of :1.2');
    sch.drop(':1.1');
    assert.equal(sch.size, 3, 'its waiting calls are gone, the running ones finish');
    for (const r of release.splice(0)) r();
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(sch.size, 0);
    assert.equal(running, 0);
  });
});
