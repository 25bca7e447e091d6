// SPDX-License-Identifier: Apache-2.0
// The JSON-RPC socket protocol, in-process with a fake monitor: framing, errors, parameter
// validation, per-uid scoping, subscriptions and every limit, including a slow subscriber
// that must lose events (and be told exactly how many) without growing the daemon.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { buildDaemon, type Daemon } from '../../../../daemon/src/app.js';
import type { Caller } from '../../../../daemon/src/api/index.js';
import { ERRORS } from '../../../../daemon/src/contract/errors.js';
import { FakeMonitor, flow } from '../../../helpers/fake-monitor.js';
import type { EventBatchNotification, MonitorEvent } from '../../../../daemon/src/contract/events.js';
import { batchEvents } from '../../../../client/src/events.js';

const LIMITS = { maxClients: 8, maxMessageBytes: 4096, maxSubscriptionsPerClient: 3, subscriberQueue: 100, maxClientsPerUid: 8, reservedClients: 2 };

class Raw {
  private buf = '';
  readonly msgs: Array<Record<string, unknown>> = [];
  closed = false;
  private waiters: Array<() => void> = [];
  constructor(readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.msgs.push(JSON.parse(this.buf.slice(0, nl)) as Record<string, unknown>);
        this.buf = this.buf.slice(nl + 1);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  static connect(p: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect(p, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }
  send(line: string) {
    this.sock.write(`${line}\n`);
  }
  async until(pred: () => boolean, ms = 5000): Promise<void> {
    const t0 = Date.now();
    while (!pred()) {
      if (Date.now() - t0 > ms) throw new Error(`timeout; got ${JSON.stringify(this.msgs.slice(-3))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  async call(method: string, params?: unknown, id: number = Math.floor(Math.random() * 1e9)): Promise<Record<string, unknown>> {
    this.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    await this.until(() => this.msgs.some((m) => m.id === id));
    return this.msgs.find((m) => m.id === id)!;
  }
  close() {
    this.sock.destroy();
  }
}

describe('JSON-RPC server', () => {
  let dir: string;
  let sock: string;
  let daemon: Daemon;
  let fake: FakeMonitor;
  let caller: Caller;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-rpc-'));
    sock = path.join(dir, 's.sock');
    fake = new FakeMonitor();
    daemon = buildDaemon({
      monitor: fake, bus: fake.bus, logger: pino({ level: 'silent' }), version: '9.9.9', socketPath: sock, limits: LIMITS,
      groups: { group: 'ebpfmon', adminGroup: 'ebpfmon-admin' }, identify: () => ({ ...caller }),
    });
    await daemon.start();
  });
  after(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
    fake.flows = [flow({ pid: 100, uid: 1000 }), flow({ pid: 200, uid: 1001, comm: 'wget' })];
    fake.queries.length = 0;
  });

  test('the socket is 0666 (access is decided per connection)', () => {
    assert.equal(fs.statSync(sock).mode & 0o777, 0o666);
  });

  test('status, unknown methods, bad JSON and invalid requests get the right answers', async () => {
    const c = await Raw.connect(sock);
    const st = await c.call('status');
    assert.equal((st.result as { version: string }).version, '9.9.9');
    assert.equal(((await c.call('no.such.method')).error as { code: number }).code, ERRORS.MethodNotFound.code);
    c.send('{not json');
    await c.until(() => c.msgs.some((m) => (m.error as { code?: number })?.code === ERRORS.ParseError.code));
    c.send(JSON.stringify({ jsonrpc: '2.0', id: 77 }));
    await c.until(() => c.msgs.some((m) => (m.error as { code?: number })?.code === ERRORS.InvalidRequest.code));
    // still serving on the same connection
    assert.ok((await c.call('status')).result);
    c.close();
  });

  test('flows.list validates every parameter and names the one that is wrong', async () => {
    const c = await Raw.connect(sock);
    const cases: Array<[unknown, string]> = [
      [{ pid: 'x' }, 'params.pid'], [{ pid: -1 }, 'params.pid'], [{ pid: 1.5 }, 'params.pid'], [{ limit: 0 }, 'params.limit'],
      [{ protocol: 'bogus' }, 'params.protocol'], [{ remoteAddr: 'not-an-ip' }, 'params.remoteAddr'], [{ remoteAddr: '10.0.0.0/33' }, 'params.remoteAddr'],
      [{ port: 70000 }, 'params.port'], [{ sort: 'size' }, 'params.sort'], [{ pids: [1] }, 'params.pids'], [[1, 2], "params"],
      [{ comm: 'x'.repeat(16) }, 'params.comm'], [{ includeClosed: 'yes' }, 'params.includeClosed'],
    ];
    for (const [params, field] of cases) {
      const r = await c.call('flows.list', params);
      const e = r.error as { code: number; data: { field: string } } | undefined;
      assert.equal(e?.code, ERRORS.InvalidParams.code, `${JSON.stringify(params)} -> ${JSON.stringify(r)}`);
      assert.equal(e.data.field, field);
    }
    assert.equal(fake.queries.length, 0, 'no invalid query reached the monitor');
    const ok = await c.call('flows.list', { pid: 100, remoteAddr: '198.18.0.0/15', protocol: 'tcp', sort: 'packets', limit: 5 });
    assert.deepEqual((ok.result as { flows: Array<{ pid: number }> }).flows.map((f) => f.pid), [100]);
    const q = fake.queries.at(-1)!;
    assert.deepEqual([q.pid, q.protocol, q.sort, q.limit, q.remoteAddr?.prefix], [100, 6, 'packets', 5, 15]);
    c.close();
  });

  test('a caller outside the ebpfmon group sees only its own uid', async () => {
    caller = { uid: 1000, gid: 1000, pid: 5, seesAll: false, admin: false };
    const c = await Raw.connect(sock);
    const all = await c.call('flows.list', {});
    assert.deepEqual((all.result as { flows: Array<{ uid: number }> }).flows.map((f) => f.uid), [1000]);
    assert.equal(fake.queries.at(-1)!.uid, 1000, 'the uid filter was forced');
    const other = await c.call('flows.list', { uid: 1001 });
    assert.equal((other.error as { code: number }).code, ERRORS.PermissionDenied.code);
    const procs = await c.call('processes.list', {});
    assert.deepEqual((procs.result as { processes: Array<{ uid: number }> }).processes.map((p) => p.uid), [1000]);
    c.close();
  });

  test('events: filtered by type and pid, scoped by uid, and unsubscribable', async () => {
    caller = { uid: 1000, gid: 1000, pid: 5, seesAll: false, admin: false };
    const c = await Raw.connect(sock);
    const sub = (await c.call('events.subscribe', { types: ['connect', 'close'] })).result as { subscription: string };
    const sub2 = (await c.call('events.subscribe', { pid: 100 })).result as { subscription: string };
    fake.emit({ type: 'connect', pid: 100, uid: 1000 } as never);
    fake.emit({ type: 'connect', pid: 200, uid: 1001 } as never); // another user's
    fake.emit({ type: 'exec', pid: 100, uid: 1000 } as never);
    await c.until(() => c.msgs.filter((m) => m.method === 'events.event').length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    const got = c.msgs.filter((m) => m.method === 'events.event').map((m) => m.params as { subscription: string; event: { type: string; pid: number } });
    assert.deepEqual(got.filter((g) => g.subscription === sub.subscription).map((g) => [g.event.type, g.event.pid]), [['connect', 100]]);
    assert.deepEqual(got.filter((g) => g.subscription === sub2.subscription).map((g) => [g.event.type, g.event.pid]), [['connect', 100], ['exec', 100]]);
    assert.ok((await c.call('events.unsubscribe', { subscription: sub.subscription })).result);
    const again = await c.call('events.unsubscribe', { subscription: sub.subscription });
    assert.equal((again.error as { code: number }).code, ERRORS.NotFound.code);
    assert.equal(((await c.call('events.subscribe', { types: ['bogus'] })).error as { data: { field: string } }).data.field, 'params.types');
    c.close();
  });

  test('limits: subscriptions per connection, clients, message size and batch size', async () => {
    const c = await Raw.connect(sock);
    for (let i = 0; i < LIMITS.maxSubscriptionsPerClient; i++) assert.ok((await c.call('events.subscribe', {})).result);
    assert.equal(((await c.call('events.subscribe', {})).error as { code: number }).code, ERRORS.TooManySubscriptions.code);

    const batch = await (async () => {
      c.send(JSON.stringify(Array.from({ length: 65 }, (_, i) => ({ jsonrpc: '2.0', id: 1000 + i, method: 'status' }))));
      await c.until(() => c.msgs.some((m) => m.id === null && (m.error as { code?: number })?.code === ERRORS.InvalidRequest.code));
      return true;
    })();
    assert.ok(batch);

    const conns = [c];
    for (let i = 1; i < LIMITS.maxClients; i++) conns.push(await Raw.connect(sock));
    await new Promise((r) => setTimeout(r, 50));
    const extra = await Raw.connect(sock);
    await extra.until(() => extra.closed);
    assert.equal((extra.msgs[0]?.error as { code: number }).code, ERRORS.TooManyClients.code);
    for (const x of conns) x.close();
    await new Promise((r) => setTimeout(r, 100));

    const big = await Raw.connect(sock);
    big.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'status', params: { pad: 'x'.repeat(LIMITS.maxMessageBytes) } }));
    await big.until(() => big.closed);
    assert.equal((big.msgs[0]?.error as { code: number }).code, ERRORS.MessageTooLarge.code);
    // the daemon serves the next client normally
    const after1 = await Raw.connect(sock);
    assert.ok((await after1.call('status')).result);
    after1.close();
  });

  test('root and the ebpfmon group get subscriberQueueSeesAll, other users subscriberQueue', async () => {
    const limits = LIMITS as typeof LIMITS & { subscriberQueueSeesAll?: number };
    limits.subscriberQueueSeesAll = 1000;
    try {
      const fill = async (who: Caller) => {
        caller = who;
        const c = await Raw.connect(sock);
        await c.call('events.subscribe', {});
        c.sock.pause();
        const dropped0 = daemon.rpc.droppedTotal;
        for (let i = 0; i < 5000; i++) fake.emit({ type: 'exec', pid: i, uid: who.uid, args: ['x'] } as never);
        const conn = [...daemon.rpc.connections].at(-1)!;
        const queued = (conn as unknown as { events: { length: number } }).events.length;
        const dropped = daemon.rpc.droppedTotal - dropped0;
        c.close();
        return { queued, dropped };
      };
      assert.deepEqual(await fill({ uid: 0, gid: 0, pid: 1, seesAll: true, admin: true }), { queued: 1000, dropped: 4000 });
      assert.deepEqual(await fill({ uid: 1000, gid: 1000, pid: 7, seesAll: false, admin: false }), { queued: 100, dropped: 4900 });
    } finally {
      delete limits.subscriberQueueSeesAll;
    }
  });

  test('a subscriber that does not read loses events, is told exactly how many, and costs bounded memory', async () => {
    const c = await Raw.connect(sock);
    const sub = ((await c.call('events.subscribe', {})).result as { subscription: string }).subscription;
    c.sock.pause();
    const N = 20_000;
    const dropped0 = daemon.rpc.droppedTotal;
    for (let i = 0; i < N; i++) fake.emit({ type: 'exec', pid: i, uid: 0, args: ['x'.repeat(200)] } as never);
    const conn = [...daemon.rpc.connections].at(-1)!;
    assert.ok((conn as unknown as { events: { length: number } }).events.length <= LIMITS.subscriberQueue, 'queue stays within its bound');
    const dropped = daemon.rpc.droppedTotal - dropped0;
    assert.ok(dropped > 0, 'some events were dropped');
    c.sock.resume();
    await c.until(() => c.msgs.some((m) => m.method === 'events.lost'), 10_000);
    const lost = c.msgs.filter((m) => m.method === 'events.lost').reduce((n, m) => n + (m.params as { lost: number }).lost, 0);
    const received = c.msgs.filter((m) => m.method === 'events.event' && (m.params as { subscription: string }).subscription === sub).length;
    assert.equal(lost, dropped, 'the notification counts every dropped event');
    assert.equal(received + lost, N, 'every event was either delivered or counted as lost');
    c.close();
  });

  test('batched events arrive complete and in order, with every loss reported where it happened', async () => {
    // Three subscriptions on one connection, one of each delivery (per event, batches of
    // objects, batches of rows). The client stops reading now and then while events keep
    // coming: what arrives must be, per subscription, the events the test published in the
    // order it published them, with `events.lost` notifications exactly covering each gap.
    const c = await Raw.connect(sock);
    const subscribe = async (params: object) => ((await c.call('events.subscribe', { types: ['exec'], ...params })).result as { subscription: string }).subscription;
    const subs = { event: await subscribe({}), object: await subscribe({ batch: true }), row: await subscribe({ batch: true, encoding: 'row' }) };
    const N = 12_000;
    // Events big enough that the queue's bytes, not only its entries, back up the socket:
    // the pump then stops with events still queued, and new events queue behind a gap.
    const pad = 'x'.repeat(3000);
    const published: MonitorEvent[] = [];
    const dropped0 = daemon.rpc.droppedTotal;
    let next = 0;
    // A reader that reads in spurts while events keep coming in small bursts: the queue fills,
    // drains part way, and takes new events while losses are pending.
    let paused = false;
    const toggle = setInterval(() => {
      paused = !paused;
      if (paused) c.sock.pause();
      else c.sock.resume();
    }, 7);
    try {
      for (let round = 0; next < N; round++) {
        for (let i = 0; i < 150 && next < N; i++, next++) {
          const e = { type: 'exec', at: new Date(1_790_000_000_000 + next).toISOString(), pid: next, uid: 0, comm: next % 7 ? 'sh' : 'a"\\b', ppid: 1, gid: 0, cgroupId: '1', filename: '/bin/sh', args: ['sh', `${next}`, pad], argsTruncated: false, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null } as MonitorEvent;
          published.push(e);
          fake.bus.publish(e);
        }
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      clearInterval(toggle);
    }
    c.sock.resume();
    const dropped = daemon.rpc.droppedTotal - dropped0;
    assert.ok(dropped > 0, 'the pauses made the daemon drop events');
    // Per subscription: the stream of events and losses as the client saw it.
    const streams = () => {
      const out = { event: [] as Array<MonitorEvent | number>, object: [] as Array<MonitorEvent | number>, row: [] as Array<MonitorEvent | number> };
      const which = (id: string) => (Object.entries(subs).find(([, v]) => v === id)![0]) as keyof typeof subs;
      for (const m of c.msgs) {
        const p = m.params as Record<string, unknown> | undefined;
        if (!p) continue;
        if (m.method === 'events.lost') out[which(p.subscription as string)].push(p.lost as number);
        else if (m.method === 'events.event') out[which(p.subscription as string)].push(p.event as MonitorEvent);
        else if (m.method === 'events.batch') out[which(p.subscription as string)].push(...batchEvents(p as unknown as EventBatchNotification));
      }
      return out;
    };
    const count = (xs: Array<MonitorEvent | number>) => xs.reduce<number>((n, x) => n + (typeof x === 'number' ? x : 1), 0);
    await c.until(() => Object.values(streams()).every((xs) => count(xs) === N), 20_000);
    let lostTotal = 0;
    for (const [name, xs] of Object.entries(streams())) {
      let at = 0;
      let gaps = 0;
      for (const x of xs) {
        if (typeof x === 'number') {
          assert.ok(x > 0, `${name}: a loss report counts something`);
          at += x;
          gaps++;
          lostTotal += x;
          continue;
        }
        assert.deepEqual(x, published[at], `${name}: event ${at} arrives whole and in its place`);
        at++;
      }
      assert.equal(at, N, `${name}: every event delivered or reported lost`);
      assert.ok(gaps > 0, `${name}: saw a gap`);
    }
    assert.equal(lostTotal, dropped, 'the loss reports add up to what the daemon dropped');
    const batches = c.msgs.filter((m) => m.method === 'events.batch').length;
    const batched = count(streams().object) + count(streams().row) - lostTotal * (2 / 3); // about: losses split over three streams
    // A 64 KiB write holds about 20 of these 3 KB events, shared by the three subscriptions.
    assert.ok(batches > 0 && batched / batches > 3, `batches carry many events each (${batches} batches)`);
    c.close();
  });

  test('events.subscribe: rows only in batches, delivery params checked', async () => {
    const c = await Raw.connect(sock);
    for (const params of [{ encoding: 'row' }, { batch: 'yes' }, { batch: true, encoding: 'csv' }]) {
      const r = await c.call('events.subscribe', params);
      assert.equal((r.error as { code: number }).code, ERRORS.InvalidParams.code, JSON.stringify(params));
      assert.match((r.error as { message: string }).message, /params\.(encoding|batch)/);
    }
    c.close();
  });

  test('load-balancer methods: NotAvailable when it is not configured, changes refused to non-admins first', async () => {
    const c = await Raw.connect(sock);
    assert.equal(((await c.call('lb.list')).error as { code: number }).code, ERRORS.NotAvailable.code);
    caller = { uid: 1000, gid: 1000, pid: 5, seesAll: false, admin: false };
    const c2 = await Raw.connect(sock);
    assert.equal(((await c2.call('lb.vip.add', { vip: '198.19.0.1:80/tcp' })).error as { code: number }).code, ERRORS.PermissionDenied.code);
    c.close();
    c2.close();
  });

  test('clients that connect and vanish, or send half a message, do not disturb others', async () => {
    for (let i = 0; i < 50; i++) {
      const s = net.connect(sock);
      s.on('error', () => undefined);
      if (i % 2) s.on('connect', () => s.end('{"jsonrpc":"2.0","id":1,"meth'));
      else s.on('connect', () => s.destroy());
    }
    await new Promise((r) => setTimeout(r, 200));
    const c = await Raw.connect(sock);
    assert.ok((await c.call('status')).result);
    c.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(daemon.rpc.connections.size <= 1, `connections left: ${daemon.rpc.connections.size}`);
  });
});

describe('JSON-RPC server: nobody can exhaust it', () => {
  const HARD = { maxClients: 6, maxMessageBytes: 4096, maxSubscriptionsPerClient: 2, subscriberQueue: 100, maxClientsPerUid: 3, reservedClients: 2, idleTimeoutMs: 400 };
  let dir: string;
  let sock: string;
  let daemon: Daemon;
  let fake: FakeMonitor;
  let caller: Caller;
  const user = (uid: number): Caller => ({ uid, gid: uid, pid: uid, seesAll: false, admin: false });
  const records: Array<{ level: number; msg: string }> = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-rpc-'));
    sock = path.join(dir, 's.sock');
    fake = new FakeMonitor();
    const logger = pino({ level: 'info' }, { write: (l: string) => void records.push(JSON.parse(l) as { level: number; msg: string }) });
    daemon = buildDaemon({
      monitor: fake, bus: fake.bus, logger, version: '9.9.9', socketPath: sock, limits: HARD,
      groups: { group: 'ebpfmon', adminGroup: 'ebpfmon-admin' }, identify: () => ({ ...caller }),
    });
    await daemon.start();
  });
  after(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
  });
  const settle = () => new Promise((r) => setTimeout(r, 50));
  const refusedOf = async (c: Raw) => {
    await c.until(() => c.closed);
    return c.msgs[0]?.error as { code: number; message: string } | undefined;
  };

  test('connections per user, and a share only root and the ebpfmon group may take; every refusal counted', async () => {
    const before0 = { ...daemon.rpc.refused };
    const open: Raw[] = [];
    caller = user(1000);
    for (let i = 0; i < 3; i++) open.push(await Raw.connect(sock));
    await settle();
    const fourth = await Raw.connect(sock);
    const e1 = await refusedOf(fourth);
    assert.equal(e1?.code, ERRORS.TooManyClients.code);
    assert.match(e1!.message, /uid 1000 already has 3 connections open/);
    caller = user(1001);
    open.push(await Raw.connect(sock));
    await settle();
    // 4 of 6 taken: the last 2 are kept for root and the group
    caller = user(1002);
    const e2 = await refusedOf(await Raw.connect(sock));
    assert.match(e2!.message, /limit 6, of which 2 are kept for root and the ebpfmon group/);
    caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
    const root = await Raw.connect(sock);
    const st = (await root.call('status')).result as { transports: { rpc: { clients: number; refused: Record<string, number> } } };
    assert.equal(st.transports.rpc.clients, 5);
    assert.equal((st.transports.rpc.refused.uidLimit ?? 0) - (before0.uidLimit ?? 0), 1);
    assert.equal((st.transports.rpc.refused.tooManyClients ?? 0) - (before0.tooManyClients ?? 0), 1);
    caller = { uid: 7, gid: 7, pid: 7, seesAll: true, admin: false }; // a member of the group
    const member = await Raw.connect(sock);
    assert.ok((await member.call('status')).result, 'the group gets the last reserved slot');
    for (const c of [...open, root, member]) c.close();
    await settle();
  });

  test('an idle connection is closed; one with a subscription is not', async () => {
    const idle0 = daemon.rpc.refused.idle;
    const idle = await Raw.connect(sock);
    const sub = await Raw.connect(sock);
    assert.ok((await sub.call('events.subscribe', {})).result);
    await idle.until(() => idle.closed, 3000);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(sub.closed, false, 'a subscriber waits for events as long as it likes');
    assert.ok(daemon.rpc.refused.idle - idle0 >= 1);
    sub.close();
    await settle();
  });

  test('the envelope: null, [null], a batch with a bad item, ids that JSON-RPC does not allow; never Internal, never logged', async () => {
    const c = await Raw.connect(sock);
    const errorsBefore = records.filter((r) => r.level >= 50).length;
    const reply = async (line: string) => {
      const n = c.msgs.length;
      c.send(line);
      await c.until(() => c.msgs.length > n);
      return c.msgs[n] as unknown;
    };
    const err = (x: unknown) => (x as { id: unknown; error: { code: number } });
    for (const line of ['null', '5', '"status"', 'true']) {
      const r = err(await reply(line));
      assert.deepEqual([r.id, r.error.code], [null, ERRORS.InvalidRequest.code], line);
    }
    const one = (await reply('[null]')) as unknown[];
    assert.deepEqual(one.map((x) => [err(x).id, err(x).error.code]), [[null, ERRORS.InvalidRequest.code]]);
    const mixed = (await reply('[{"jsonrpc":"2.0","id":1,"method":"status"},null]')) as Array<{ id: unknown; result?: unknown; error?: { code: number } }>;
    assert.equal(mixed.length, 2);
    assert.ok(mixed[0]!.result, 'the valid call of the batch is answered');
    assert.deepEqual([mixed[1]!.id, mixed[1]!.error?.code], [null, ERRORS.InvalidRequest.code]);
    for (const id of ['{}', '[1]', '1.5', '{"id":{"nested":[1]}}', 'true']) {
      const r = err(await reply(`{"jsonrpc":"2.0","id":${id},"method":"status"}`));
      assert.deepEqual([r.id, r.error.code], [null, ERRORS.InvalidRequest.code], `id ${id}`);
    }
    for (const id of ['"abc"', '7', '-3']) {
      const r = (await reply(`{"jsonrpc":"2.0","id":${id},"method":"status"}`)) as { id: unknown; result: unknown };
      assert.deepEqual(r.id, JSON.parse(id), 'a valid id is echoed');
      assert.ok(r.result);
    }
    // 2,000 nulls: 2,000 answers, nothing in the log
    c.send(Array.from({ length: 2000 }, () => 'null').join('\n'));
    const n0 = c.msgs.length;
    await c.until(() => c.msgs.length >= n0 + 2000 - 1, 10_000);
    assert.ok(c.msgs.slice(n0).every((m) => (m.error as { code: number }).code === ERRORS.InvalidRequest.code));
    assert.equal(records.filter((r) => r.level >= 50).length, errorsBefore, 'client mistakes are counted, not logged as errors');
    c.close();
  });

  test('a client that does not read its replies gets no more work done: memory stays bounded', async () => {
    const c = await Raw.connect(sock);
    c.sock.pause();
    const batch = JSON.stringify(Array.from({ length: 64 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' })));
    // 400 lines of 64 calls (25,600 calls, ~2 MB), written without reading a reply
    const payload = Array.from({ length: 400 }, () => batch).join('\n') + '\n';
    c.sock.write(payload);
    await new Promise((r) => setTimeout(r, 1000));
    const conn = [...daemon.rpc.connections].at(-1)! as unknown as { queuedBytes: number; socket: net.Socket };
    // At most a line limit's worth, plus the one chunk read before reading paused.
    assert.ok(conn.queuedBytes <= HARD.maxMessageBytes + 65536, `${conn.queuedBytes} bytes of requests queued`);
    // The server stops at 4 MiB of unread replies (plus the reply in hand); the 25,600 calls
    // asked for would have made ~100 MiB.
    assert.ok(conn.socket.writableLength < 6 * 1024 * 1024, `${conn.socket.writableLength} bytes of replies buffered`);
    // Other clients are served meanwhile.
    const other = await Raw.connect(sock);
    assert.ok((await other.call('status')).result);
    other.close();
    c.close();
    await settle();
  });

  test('refused connections never keep a descriptor, and stopping is bounded', async () => {
    const d2dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-rpc-'));
    const d2 = buildDaemon({
      monitor: fake, bus: fake.bus, logger: pino({ level: 'silent' }), version: '9.9.9', socketPath: path.join(d2dir, 's.sock'),
      limits: { ...HARD, maxClients: 2, reservedClients: 0 }, groups: { group: 'ebpfmon', adminGroup: 'ebpfmon-admin' }, identify: () => user(1000),
    });
    await d2.start();
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const holders = [await Raw.connect(path.join(d2dir, 's.sock')), await Raw.connect(path.join(d2dir, 's.sock'))];
    await settle();
    const base = fds();
    // 300 refused clients that send data and never close
    const refused: net.Socket[] = [];
    for (let i = 0; i < 300; i++) {
      const s = net.connect(path.join(d2dir, 's.sock'));
      s.on('error', () => undefined);
      s.on('connect', () => s.write('{"jsonrpc":"2.0","id":1,"method":"status"}\n'));
      s.resume(); // read the refusal, so that its end is seen
      refused.push(s);
    }
    await new Promise((r) => setTimeout(r, 2500));
    // Each refused socket is closed by the daemon (our side sees the close: its fd goes too).
    assert.ok(refused.every((s) => s.destroyed || s.readableEnded), `${refused.filter((s) => !s.destroyed && !s.readableEnded).length} refused sockets still open`);
    for (const s of refused) s.destroy();
    await settle();
    assert.ok(fds() <= base + 5, `fds ${fds()} vs ${base} before`);
    const t0 = Date.now();
    await d2.stop();
    assert.ok(Date.now() - t0 < 4000, `stop took ${Date.now() - t0} ms with clients connected`);
    for (const h of holders) await h.until(() => h.closed);
    fs.rmSync(d2dir, { recursive: true, force: true });
  });
});
