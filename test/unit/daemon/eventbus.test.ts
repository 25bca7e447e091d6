// SPDX-License-Identifier: Apache-2.0
// EventBus: listeners get only the types they asked for, and records of a type no listener
// wants are counted without being decoded (Monitor.onRecord asks countOnly first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventBus, eventJson, type MonitorEvent } from '../../../daemon/src/monitor/events.js';
import { EV } from '../../../daemon/src/monitor/wire.js';

const exit = (pid: number): MonitorEvent => ({ type: 'exit', time: '2026-11-22T00:00:00.000Z', pid, uid: 0, comm: 'x', ppid: 1, exitCode: 0, signal: 0, durationMs: 1 });
const close = (pid: number) => ({ ...exit(pid), type: 'close' }) as unknown as MonitorEvent;

test('a listener gets only the types it subscribed to; without types, all', () => {
  const bus = new EventBus();
  const closes: MonitorEvent[] = [];
  const all: MonitorEvent[] = [];
  const offCloses = bus.subscribe((e) => closes.push(e), ['close']);
  bus.subscribe((e) => all.push(e));
  bus.publish(exit(1));
  bus.publish(close(2));
  assert.deepEqual(closes.map((e) => e.pid), [2]);
  assert.deepEqual(all.map((e) => e.pid), [1, 2]);
  assert.deepEqual([bus.counts.exit, bus.counts.close], [1, 1]);
  offCloses();
  bus.publish(close(3));
  assert.deepEqual(closes.map((e) => e.pid), [2]);
  assert.equal(bus.subscriberCount, 1);
});

test('countOnly: counts and skips exactly the types nobody wants', () => {
  const bus = new EventBus();
  assert.equal(bus.countOnly(EV.CONNECT), true, 'no listener: counted undecoded');
  const off = bus.subscribe(() => {}, ['close']);
  assert.equal(bus.countOnly(EV.CLOSE), false, 'a listener wants close: decode it');
  assert.equal(bus.countOnly(EV.CONNECT), true, 'nobody wants connect');
  assert.equal(bus.counts.connect, 2);
  assert.equal(bus.counts.close, 0, 'not counted here: publish() counts it');
  assert.equal(bus.countOnly(999), false, 'unknown types are for the decoder (undecodable)');
  off();
  off(); // twice is harmless
  assert.equal(bus.countOnly(EV.CLOSE), true);
  const offAll = bus.subscribe(() => {});
  assert.equal(bus.countOnly(EV.ACCEPT), false);
  offAll();
  assert.equal(bus.countOnly(EV.ACCEPT), true);
});

test('a listener that throws is dropped, and its types are no longer wanted', () => {
  const bus = new EventBus();
  bus.subscribe(() => {
    throw new Error('boom');
  }, ['close']);
  bus.publish(close(1));
  assert.equal(bus.subscriberCount, 0);
  assert.equal(bus.countOnly(EV.CLOSE), true);
});

test('eventJson serializes each event once and never serves another event its JSON', () => {
  const a = exit(1);
  const b = exit(2);
  assert.equal(eventJson(a), JSON.stringify(a));
  assert.equal(eventJson(a), eventJson(a));
  assert.equal(eventJson(b), JSON.stringify(b));
  assert.equal(eventJson(a), JSON.stringify(a));
});
