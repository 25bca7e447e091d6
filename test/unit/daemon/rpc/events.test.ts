// SPDX-License-Identifier: Apache-2.0
// The subscriber queue (rpc/events.ts) with rows written as bytes (records that can write
// their row, BusEvent.rowInto) next to rows, JSON and loss reports kept as text: the lines
// it hands the socket must be byte for byte what the same events give through the text path
// alone (the fallback, and what the daemon wrote before rows became bytes), whatever mix of
// subscriptions, loss reports, chunk sizes and store refills; and what a client parses from
// them must be the events, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventQueue, type Subscription } from '../../../../daemon/src/rpc/events.js';
import { RecordEvent } from '../../../../daemon/src/monitor/records.js';
import type { DecodeContext } from '../../../../daemon/src/monitor/decoder.js';
import { EV, EVENT_CLOSE, EVENT_CONN, EVENT_HDR, FLOW_KEY, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { ObjectEvent, type BusEvent } from '../../../../daemon/src/events/bus.js';
import type { EventType, MonitorEvent } from '../../../../daemon/src/contract/events.js';
import { batchEvents } from '../../../../client/src/events.js';
import { xorshift as rng } from '../../../helpers/rand.js';

const ctx: DecodeContext = {
  toMsAt: (v, off) => 1_790_000_000_000 + Number(v.getBigUint64(off, true) / 1_000_000n),
  ifname: (i) => (i === 2 ? 'vé"th' : `if${i}`),
};
const COMMS = ['curl', 'a"b', 'naïve', '日本語', 'tab\t', ''];

/** A connection or close record, as the kernel writes it. */
function record(r: ReturnType<typeof rng>, i: number, comms: readonly string[] = COMMS): Buffer {
  const close = r.int(3) !== 0;
  const size = close ? EVENT_CLOSE.size : EVENT_CONN.size;
  const b = Buffer.alloc(size);
  b.writeUInt16LE(close ? EV.CLOSE : r.pick([EV.CONNECT, EV.ACCEPT]), EVENT_HDR.fields.type.offset);
  b.writeUInt16LE(size, EVENT_HDR.fields.size.offset);
  b.writeBigUInt64LE(5_000_000_000_000n + BigInt(i) * 77_777n, EVENT_HDR.fields.ts_ns.offset);
  const L = close ? EVENT_CLOSE.fields : EVENT_CONN.fields;
  const o = L.owner.offset;
  b.writeUInt32LE(1000 + r.int(50), o + OWNER.fields.tgid.offset);
  b.writeUInt32LE(1000 + r.int(50), o + OWNER.fields.pid.offset);
  b.writeUInt32LE(r.int(70000), o + OWNER.fields.uid.offset);
  Buffer.from(r.pick(comms)).copy(b, o + OWNER.fields.comm.offset, 0, 15);
  b[o + OWNER.fields.how.offset] = r.pick([0, 1, 2, 7]);
  b.writeBigUInt64LE(BigInt(r.int(4)), o + OWNER.fields.cgroup_id.offset);
  const k = L.key.offset;
  b[k + FLOW_KEY.fields.family.offset] = r.int(4) ? 2 : 10;
  b[k + FLOW_KEY.fields.proto.offset] = 6;
  for (let j = 0; j < 16; j++) b[k + FLOW_KEY.fields.raddr.offset + j] = r.int(256);
  b.writeUInt16LE(r.int(65536), k + FLOW_KEY.fields.lport.offset);
  if (close) {
    const F = EVENT_CLOSE.fields;
    b.writeBigUInt64LE(BigInt(r.int(1 << 30)) * BigInt(r.int(5000)), F.tx_bytes.offset);
    b.writeBigUInt64LE(BigInt(r.int(1 << 30)) * 1000n, F.duration_ns.offset);
    b.writeUInt32LE(r.int(4), F.ifindex.offset);
    b[F.old_state.offset] = r.int(13);
    b[F.flow_seen.offset] = r.int(2);
  }
  return b;
}

/** The same record without a byte form: what the queue keeps as text. */
class TextOnly implements BusEvent {
  constructor(private readonly e: BusEvent) {}
  get type(): EventType {
    return this.e.type;
  }
  get pid() {
    return this.e.pid;
  }
  get uid() {
    return this.e.uid;
  }
  owner() {
    return this.e.owner();
  }
  event(): MonitorEvent {
    return this.e.event();
  }
  json(): string {
    return this.e.json();
  }
  row(): string {
    return this.e.row();
  }
}

const exec = (i: number): MonitorEvent => ({ type: 'exec', at: new Date(1_790_000_000_000 + i).toISOString(), pid: i, ppid: 1, uid: 0, gid: 0, cgroupId: '1', comm: 'ß"\\', filename: '/bin/sh', args: ['sh', 'é'.repeat(i % 50)], argsTruncated: false, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null });

test('rows written as bytes give the same lines as rows kept as text, and the events in order', () => {
  for (const [seed, whole] of [[1, true], [2, true], [3, false], [4, false]] as const) {
    const r = rng(seed);
    const mk = (id: string, batch: boolean, encoding: 'object' | 'row'): Subscription => ({ id, batch, encoding, lost: 0 });
    // Two queues (two connections), fed the same events: one as the daemon's records, one as
    // text only. Two row subscriptions on the first (the second copies the row the first
    // wrote), one of each other delivery, and a row subscription on a third queue (copies
    // from another queue's store).
    const q = new EventQueue();
    const t = new EventQueue();
    const other = new EventQueue();
    const subs = [mk('r1', true, 'row'), mk('r2', true, 'row'), mk('ob', true, 'object'), mk('ev', false, 'object')];
    const tsubs = subs.map((s) => ({ ...s }));
    const osub = mk('r3', true, 'row');
    const rec = new RecordEvent(ctx);
    const outQ: Buffer[] = [];
    const outT: Buffer[] = [];
    const outO: Buffer[] = [];
    const want = new Map<string, Array<MonitorEvent | number>>(subs.map((s) => [s.id, []]));
    const oWant: MonitorEvent[] = [];
    let n = 0;
    for (let round = 0; round < 30; round++) {
      const burst = r.int(3) === 0 ? 3000 : r.int(400); // some bursts overfill the store before a take
      for (let i = 0; i < burst; i++, n++) {
        let e: BusEvent;
        if (r.int(20) === 0) e = new ObjectEvent(exec(n));
        else {
          const b = record(r, n);
          const type = b.readUInt16LE(0);
          e = rec.set(new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.length, type, type === EV.CLOSE ? 'close' : type === EV.CONNECT ? 'connect' : 'accept');
        }
        const obj = JSON.parse(JSON.stringify(e.event())) as MonitorEvent;
        for (let s = 0; s < subs.length; s++) {
          if (r.int(50) === 0) {
            // a loss report at this place, in both queues
            subs[s]!.lost = tsubs[s]!.lost = 1 + r.int(9);
            want.get(subs[s]!.id)!.push(subs[s]!.lost);
            q.pushLost(subs[s]!);
            t.pushLost(tsubs[s]!);
            subs[s]!.lost = tsubs[s]!.lost = 0;
          }
          q.pushEvent(subs[s]!, e);
          t.pushEvent(tsubs[s]!, new TextOnly(e));
          want.get(subs[s]!.id)!.push(obj);
        }
        other.pushEvent(osub, e);
        oWant.push(obj);
      }
      // The socket takes some (chunks of random sizes), not always all.
      const takes = r.int(4);
      for (let i = 0; i < takes && !q.empty; i++) {
        // Whole: everything queued; else chunks of random sizes (the text path counts characters,
        // the byte path bytes, so their lines split differently there: compared as events).
        const max = whole ? Infinity : 1 + r.int(200_000);
        // The socket has written a chunk: its buffer is reused (the test keeps a copy).
        const chunk = q.take(max);
        outQ.push(Buffer.from(chunk));
        q.recycle(chunk);
        outT.push(t.take(max));
        outO.push(other.take(max));
      }
    }
    while (!q.empty) {
      outQ.push(q.take(whole ? Infinity : 65536));
      outT.push(t.take(whole ? Infinity : 65536));
    }
    while (!other.empty) outO.push(other.take(65536));
    assert.ok(t.empty);
    const bytesQ = Buffer.concat(outQ);
    if (whole) {
      const bt = Buffer.concat(outT);
      const at = bytesQ.findIndex((x, i) => x !== bt[i]);
      assert.ok(bytesQ.length === bt.length && at === -1, `seed ${seed}: the same bytes either way (lengths ${bytesQ.length}, ${bt.length}; first difference at ${at})`);
    }
    assert.ok(q.rowsAsBytes > 0 && t.rowsAsBytes === 0 && q.rowsAsText > 0, 'both paths ran');
    // What a client reads: per subscription, the events and losses in order.
    const got = new Map<string, Array<MonitorEvent | number>>(subs.map((s) => [s.id, []]));
    for (const line of bytesQ.toString('utf8').split('\n').filter(Boolean)) {
      const m = JSON.parse(line) as { method: string; params: Record<string, unknown> };
      const id = m.params.subscription as string;
      if (m.method === 'events.lost') got.get(id)!.push(m.params.lost as number);
      else if (m.method === 'events.event') got.get(id)!.push(m.params.event as MonitorEvent);
      else got.get(id)!.push(...batchEvents(m.params as never));
    }
    for (const s of subs) assert.deepEqual(got.get(s.id), want.get(s.id), `seed ${seed}: ${s.id} in order`);
    const og: MonitorEvent[] = [];
    for (const line of Buffer.concat(outO).toString('utf8').split('\n').filter(Boolean)) og.push(...batchEvents((JSON.parse(line) as { params: never }).params));
    assert.deepEqual(og, oWant, `seed ${seed}: the third queue's copies`);
  }
});

test('a backed-up queue: rows move to the start of their store between takes, and the lines stay what the text path gives', () => {
  // A reader that takes a little less than comes in: the backlog grows slowly, the store fills,
  // and its rows move to its start. ASCII records, so that both paths split lines at the same
  // places and their bytes compare whole.
  const r = rng(7);
  const asciiCtx: DecodeContext = { ...ctx, ifname: () => 'eth0' };
  const rec = new RecordEvent(asciiCtx);
  const q = new EventQueue();
  const t = new EventQueue();
  const sub: Subscription = { id: 'r', batch: true, encoding: 'row', lost: 0 };
  const tsub: Subscription = { ...sub };
  const outQ: Buffer[] = [];
  const outT: Buffer[] = [];
  let n = 0;
  for (let round = 0; round < 1500; round++) {
    for (let i = 0; i < 100; i++, n++) {
      const b = record(r, n, ['curl', 'a"b', 'x\\y']);
      const type = b.readUInt16LE(0);
      const e = rec.set(new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.length, type, type === EV.CLOSE ? 'close' : type === EV.CONNECT ? 'connect' : 'accept');
      q.pushEvent(sub, e);
      t.pushEvent(tsub, new TextOnly(e));
    }
    // The backlog hovers about 150 entries (a fifth of the store).
    const max = (q.length > 150 ? 30_000 : 15_000) + r.int(1000);
    const chunk = q.take(max);
    outQ.push(Buffer.from(chunk));
    q.recycle(chunk);
    outT.push(t.take(max));
  }
  while (!q.empty) outQ.push(Buffer.from(q.take(65536)));
  while (!t.empty) outT.push(t.take(65536));
  assert.ok(q.storeMoves > 0, `rows moved within their store (${q.storeMoves} times, ${q.storeGrowths} growths)`);
  assert.ok(q.storeGrowths < 12, `the store grew only while the backlog grew (${q.storeGrowths})`);
  const a = Buffer.concat(outQ);
  const b = Buffer.concat(outT);
  assert.equal(a.length, b.length);
  assert.ok(a.equals(b), 'the same bytes either way');
  const rows = a.toString('latin1').split('\n').filter(Boolean).flatMap((l) => (JSON.parse(l) as { params: { events: unknown[] } }).params.events);
  assert.equal(rows.length, n, 'every event, once');
});
