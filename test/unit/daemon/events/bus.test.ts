// SPDX-License-Identifier: Apache-2.0
// EventBus: listeners get only the types they asked for, and a publisher can ask whether
// anyone wants a type before building the event (the monitor counts ring-buffer records of
// unwanted types without decoding them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventBus, eventRow, type BusEvent } from '../../../../daemon/src/events/bus.js';
import { EVENT_FIELDS } from '../../../../daemon/src/contract/events.js';
import type { MonitorEvent } from '../../../../daemon/src/contract/events.js';
import { recordEventType } from '../../../../daemon/src/monitor/decoder.js';
import { EV } from '../../../../daemon/src/monitor/wire.js';
import { noIdentity } from '../../../helpers/fake-monitor.js';

const exit = (pid: number): MonitorEvent => ({ type: 'exit', at: '2026-11-22T00:00:00.000Z', pid, uid: 0, comm: 'x', ppid: 1, exitCode: 0, signal: 0, durationMs: 1, ...noIdentity });
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

test('listeners that come and go while an event is published: one removed meanwhile is not called, the others are, each once', () => {
  const bus = new EventBus();
  const got: string[] = [];
  let offC: () => void = () => undefined;
  const offA = bus.subscribe((e) => {
    got.push(`a${e.pid}`);
    if (e.pid === 1) {
      offC(); // c, later in the walk, must not see this event
      offA(); // a itself: the rest still get the event
    }
  });
  bus.subscribe((e) => got.push(`b${e.pid}`));
  offC = bus.subscribe((e) => got.push(`c${e.pid}`));
  bus.publish(exit(1));
  bus.publish(exit(2));
  assert.deepEqual(got, ['a1', 'b1', 'b2']);
  assert.equal(bus.subscriberCount, 1);
  assert.equal(bus.wants('exit'), true);
});

test('wants: exactly the types some listener asked for; countUnwanted counts them', () => {
  const bus = new EventBus();
  assert.equal(bus.wants('connect'), false, 'no listener');
  const off = bus.subscribe(() => {}, ['close']);
  assert.equal(bus.wants('close'), true, 'a listener wants close');
  assert.equal(bus.wants('connect'), false, 'nobody wants connect');
  bus.countUnwanted('connect');
  bus.countUnwanted('connect');
  assert.equal(bus.counts.connect, 2);
  assert.equal(bus.counts.close, 0, 'publish() counts what it delivers');
  off();
  off(); // twice is harmless
  assert.equal(bus.wants('close'), false);
  const offAll = bus.subscribe(() => {});
  assert.equal(bus.wants('accept'), true);
  offAll();
  assert.equal(bus.wants('accept'), false);
});

test('ring-buffer record types map to event types; unknown ones to none (the decoder counts them undecodable)', () => {
  assert.deepEqual([EV.CONNECT, EV.ACCEPT, EV.CLOSE, EV.EXEC, EV.EXIT].map(recordEventType), ['connect', 'accept', 'close', 'exec', 'exit']);
  assert.equal(recordEventType(999), undefined);
});

test('a listener that throws is dropped, and its types are no longer wanted', () => {
  const bus = new EventBus();
  bus.subscribe(() => {
    throw new Error('boom');
  }, ['close']);
  bus.publish(close(1));
  assert.equal(bus.subscriberCount, 0);
  assert.equal(bus.wants('close'), false);
});

test('each form of an event is built once, for every listener, and only when one asks for it', () => {
  const bus = new EventBus();
  const e = exit(1);
  const jsons: string[] = [];
  const rows: string[] = [];
  const objects: MonitorEvent[] = [];
  bus.subscribeEvents((b: BusEvent) => jsons.push(b.json()));
  bus.subscribeEvents((b: BusEvent) => {
    rows.push(b.row());
    rows.push(b.row());
  });
  bus.subscribe((o) => objects.push(o));
  bus.publish(e);
  assert.deepEqual(jsons, [JSON.stringify(e)]);
  assert.equal(rows[0], rows[1]);
  assert.equal(objects[0], e, 'object listeners get the published object itself');
});

test('eventRow: the values in EVENT_FIELDS order, the type first', () => {
  const e = exit(7);
  const row = JSON.parse(eventRow(e)) as unknown[];
  assert.deepEqual(row, EVENT_FIELDS.exit.map((f) => (e as unknown as Record<string, unknown>)[f]));
  assert.equal(row[0], 'exit');
});

test('with geo on, connection events published as objects are completed once, in every form a subscriber takes (object, JSON, row); others pass untouched', () => {
  const connect: MonitorEvent = {
    type: 'connect', at: '2026-11-22T00:00:00.000Z', pid: 7, tid: 7, uid: 0, comm: 'curl', protocol: 'tcp', family: 'ipv4',
    localAddr: '10.0.0.1', localPort: 40000, remoteAddr: '192.0.2.1', remotePort: 443, attributedBy: 'connect', remoteGeo: null, ...noIdentity,
  };
  const geo = { country: null, city: null, lat: null, lon: null, asn: null, org: null, label: 'documentation' as const };
  const bus = new EventBus();
  let calls = 0;
  bus.setRemoteGeo((addr) => {
    calls++;
    assert.equal(addr, '192.0.2.1');
    return { ...geo };
  });
  const seen: Array<{ obj: MonitorEvent; json: unknown; row: unknown[] }> = [];
  bus.subscribeEvents((e: BusEvent) => seen.push({ obj: e.event(), json: JSON.parse(e.json()), row: JSON.parse(e.row()) as unknown[] }));
  bus.subscribeEvents((e: BusEvent) => void e.row()); // a second subscriber: no second lookup
  bus.publish({ ...connect });
  bus.publish(exit(9));
  assert.equal(calls, 1, 'once per connection event, never for exec/exit');
  const [c, x] = seen;
  assert.deepEqual((c!.obj as { remoteGeo: unknown }).remoteGeo, geo);
  assert.deepEqual((c!.json as { remoteGeo: unknown }).remoteGeo, geo);
  const fields = EVENT_FIELDS.connect as readonly string[];
  assert.deepEqual(c!.row[fields.indexOf('remoteGeo')], geo);
  assert.deepEqual(x!.row, JSON.parse(eventRow(exit(9))));
  // Geo off: the field is there, null.
  const plain = new EventBus();
  let row: unknown[] = [];
  plain.subscribeEvents((e: BusEvent) => (row = JSON.parse(e.row()) as unknown[]));
  plain.publish({ ...connect });
  assert.equal(row[fields.indexOf('remoteGeo')], null);
});

test('a view whose forms already carry remoteGeo (the monitor\'s records) is not completed again, and the owner of an event is what a filter reads', () => {
  const bus = new EventBus();
  let calls = 0;
  bus.setRemoteGeo(() => {
    calls++;
    return null;
  });
  const e = { ...exit(3), type: 'close' } as unknown as MonitorEvent;
  const view: BusEvent = { type: 'close', pid: 3, uid: 0, complete: true, owner: () => null, event: () => e, json: () => JSON.stringify(e), row: () => eventRow(e) };
  const got: BusEvent[] = [];
  bus.subscribeEvents((b) => got.push(b));
  bus.publishEvent(view);
  assert.equal(got[0], view, 'handed on as it is');
  assert.equal(calls, 0);
  // Object events: connection and process events have an owner; lb events none.
  const owners: Array<unknown> = [];
  bus.subscribeEvents((b) => owners.push(b.owner()));
  bus.publish(exit(4));
  bus.publish({ type: 'lb', at: 'x', pid: null, uid: null, comm: null, name: 'lb.vip.added', detail: {} });
  assert.equal((owners[0] as { pid: number }).pid, 4);
  assert.equal(owners[1], null);
});
