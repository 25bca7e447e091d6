// SPDX-License-Identifier: Apache-2.0
// The accountant: whatever the order in which a flow is seen (listings, a close event, a
// listing after the close, a restart), its records add up to the counts the test gave it,
// and a connection counts once. Clock and counts are the test's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Accountant, RecordIds, flowHash, openFlowOf, type AccountantOptions } from '../../../../daemon/src/history/accountant.js';
import { REMOTES_PER_PROCESS } from '../../../../daemon/src/history/overbudget.js';
import { RECORD_KIND, recordTime, type FlowObservation, type FlowRecord } from '../../../../daemon/src/history/types.js';

const T0 = Date.UTC(2026, 10, 30, 14, 0, 0);
const OPTS: AccountantOptions = { detailPerSec: 1000, detailBurst: 10_000, maxTracked: 1000, reuseToleranceMs: 2000 };

function flow(port: number, c: { tx: number; rx: number }, extra: Partial<FlowObservation> = {}): FlowObservation {
  return {
    proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: port, remoteAddr: '198.18.0.2', remotePort: 443,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 100, comm: 'curl', uid: 1000, exe: '/usr/bin/curl', cgroupId: '5',
    firstMs: T0, lastMs: T0, closedMs: null, txBytes: c.tx, rxBytes: c.rx, txPackets: Math.ceil(c.tx / 100), rxPackets: Math.ceil(c.rx / 100), ...extra,
  };
}
const closed = (port: number, c: { tx: number; rx: number }, at: number, extra: Partial<FlowObservation> = {}) => flow(port, c, { closedMs: at, lastMs: at, ...extra });

function sums(rs: FlowRecord[]) {
  return rs.reduce((s, r) => ({ tx: s.tx + r.txBytes, rx: s.rx + r.rxBytes, txp: s.txp + r.txPackets, rxp: s.rxp + r.rxPackets, conns: s.conns + r.conns }), { tx: 0, rx: 0, txp: 0, rxp: 0, conns: 0 });
}

test('a short flow closed: one record with its final counts and one connection', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.close(closed(40000, { tx: 1200, rx: 8000 }, T0 + 50), T0 + 60);
  const { records } = a.drain();
  assert.equal(records.length, 1);
  assert.deepEqual(sums(records), { tx: 1200, rx: 8000, txp: 12, rxp: 80, conns: 1 });
  assert.equal(records[0]!.kind, RECORD_KIND.closed);
  assert.equal(records[0]!.flow, records[0]!.id, "a flow's id is its first record's");
  assert.equal(recordTime(records[0]!.id), T0 + 50, 'recorded at its close time');
});

test('a long flow: one record per listing in which it grew, the close adds the rest; the sum is the final count', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  const counts = [{ tx: 100, rx: 1000 }, { tx: 100, rx: 1000 }, { tx: 5000, rx: 90000 }, { tx: 7000, rx: 120000 }];
  counts.forEach((c, i) => {
    const at = T0 + 60_000 * (i + 1);
    a.listed(flow(40001, c, { lastMs: at }), at, at);
    a.endListing(at, at);
  });
  a.close(closed(40001, { tx: 7100, rx: 125000 }, T0 + 300_000), T0 + 300_001);
  const { records, open, forget } = a.drain();
  assert.deepEqual(records.map((r) => r.kind), [RECORD_KIND.open, RECORD_KIND.open, RECORD_KIND.open, RECORD_KIND.closed], 'no record for the listing in which it did not grow');
  assert.deepEqual(records.map((r) => r.txBytes), [100, 4900, 2000, 100]);
  assert.deepEqual(sums(records), { tx: 7100, rx: 125000, txp: 71, rxp: 1250, conns: 1 });
  assert.ok(records.every((r) => r.flow === records[0]!.id), 'one flow id');
  assert.deepEqual([...open.entries()], [['tcp 198.18.0.1 40001 198.18.0.2 443', null]], 'persisted while open, forgotten once it closed');
  assert.deepEqual(forget, [records[0]!.id, records[0]!.id, records[0]!.id], 'its persisted row replaced when it grew (twice), deleted when it closed; never when it was new');
});

test('a listing read before the close was handled, and later listings of the closed flow, add nothing; counts that grow after the close are late records', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.listed(flow(40002, { tx: 10, rx: 10 }), T0, T0);
  a.endListing(T0, T0);
  a.close(closed(40002, { tx: 500, rx: 900 }, T0 + 1000), T0 + 1000);
  a.listed(flow(40002, { tx: 400, rx: 800 }), T0 + 1001, T0 + 900); // read before the close
  a.listed(closed(40002, { tx: 500, rx: 900 }, T0 + 1000), T0 + 60_000, T0 + 60_000); // the closed entry, still in the table
  a.listed(closed(40002, { tx: 552, rx: 900 }, T0 + 1000), T0 + 120_000, T0 + 120_000); // a late FIN retransmit
  const { records } = a.drain();
  assert.deepEqual(records.map((r) => r.kind), [RECORD_KIND.open, RECORD_KIND.closed, RECORD_KIND.late]);
  assert.deepEqual(sums(records), { tx: 552, rx: 900, txp: 6, rxp: 9, conns: 1 });
  assert.equal(a.stats.skippedStale, 1);
});

test('a flow missing from two listings in a row has ended; one missing from a single listing has not', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.listed(flow(40003, { tx: 10, rx: 20 }, { proto: 'udp' }), T0, T0);
  a.endListing(T0, T0);
  a.endListing(T0 + 60_000, T0 + 60_000); // missed once (a walk that skipped an entry)
  a.listed(flow(40003, { tx: 30, rx: 20 }, { proto: 'udp' }), T0 + 120_000, T0 + 120_000);
  a.endListing(T0 + 120_000, T0 + 120_000);
  assert.equal(a.trackedCount, 1);
  a.endListing(T0 + 180_000, T0 + 180_000);
  a.endListing(T0 + 240_000, T0 + 240_000);
  assert.equal(a.trackedCount, 0);
  const { records } = a.drain();
  assert.deepEqual(records.map((r) => r.kind), [RECORD_KIND.open, RECORD_KIND.open, RECORD_KIND.ended]);
  assert.deepEqual(sums(records), { tx: 30, rx: 20, txp: 1, rxp: 1, conns: 1 });
  assert.equal(records[2]!.endMs, T0 + 240_000);
});

test('flows created while a listing ran are not judged by it', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.close(closed(40004, { tx: 1, rx: 1 }, T0 + 10), T0 + 10); // closed during the listing that began at T0
  a.endListing(T0, T0 + 20);
  a.endListing(T0 + 60_000, T0 + 60_020);
  assert.equal(a.trackedCount, 1, 'absent from one listing that began after it was known');
  // It is still in the table (closed flows stay a minute): a listing that shows it writes nothing.
  a.listed(closed(40004, { tx: 1, rx: 1 }, T0 + 10), T0 + 120_000, T0 + 120_000);
  assert.equal(a.drain().records.length, 1);
});

test('a reused 5-tuple is a new flow: the old one, if open, ends', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.listed(flow(40005, { tx: 100, rx: 100 }), T0, T0);
  a.close(closed(40005, { tx: 300, rx: 50 }, T0 + 30_000, { firstMs: T0 + 20_000 }), T0 + 30_000);
  const { records } = a.drain();
  assert.deepEqual(records.map((r) => [r.kind, r.conns, r.txBytes]), [[RECORD_KIND.open, 1, 100], [RECORD_KIND.ended, 0, 0], [RECORD_KIND.closed, 1, 300]]);
  assert.notEqual(records[2]!.flow, records[0]!.flow);
});

test('beyond the detail budget short flows roll up per process, protocol, family, minute and endpoint, for the first endpoints of a process; totals stay exact', () => {
  const a = new Accountant(new RecordIds(), { ...OPTS, detailPerSec: 10, detailBurst: 5 });
  let tx = 0;
  for (let i = 0; i < 100; i++) {
    const c = { tx: 100 + i, rx: 1000 };
    tx += c.tx;
    a.close(closed(41000 + i, c, T0 + i, { remotePort: i % 2 ? 443 : 80, remoteAddr: `198.18.1.${i}` }), T0 + i); // 100 closes in 100 ms
  }
  const { records } = a.drain();
  const detail = records.filter((r) => r.kind === RECORD_KIND.closed);
  const rolled = records.filter((r) => r.kind === RECORD_KIND.rollup);
  assert.equal(detail.length, 5, 'the burst; at 10/s no token refills within 100 ms');
  assert.equal(rolled.length, REMOTES_PER_PROCESS + 1, 'a roll-up per endpoint for the first ones, one for the rest');
  assert.equal(a.stats.rolledUp, 95);
  assert.deepEqual(sums(records), { tx, rx: 100_000, txp: sums(records).txp, rxp: 1000, conns: 100 });
  const kept = rolled.filter((r) => r.remoteAddr !== '0.0.0.0');
  assert.deepEqual(kept.map((r) => [r.remoteAddr, r.localPort, r.remotePort, r.conns]),
    Array.from({ length: REMOTES_PER_PROCESS }, (_, j) => [`198.18.1.${5 + j}`, null, (5 + j) % 2 ? 443 : 80, 1]), 'the first endpoints beyond the budget: address and service port');
  const rest = rolled.find((r) => r.remoteAddr === '0.0.0.0')!;
  assert.equal(rest.conns, 95 - REMOTES_PER_PROCESS, 'the rest summed without an endpoint');
  assert.ok(rolled.every((r) => r.flow === 0) && rest.localPort === null && rest.remotePort === null);
});

test('after a restart: open flows carry on from what was recorded; closed flows written before are not written again', () => {
  const ids = new RecordIds();
  const a = new Accountant(ids, OPTS);
  a.listed(flow(40006, { tx: 1000, rx: 1000 }), T0, T0);
  a.close(closed(40007, { tx: 5, rx: 5 }, T0 + 500), T0 + 500);
  const first = a.drain();
  assert.equal(first.open.get('tcp 198.18.0.1 40006 198.18.0.2 443')?.txBytes, 1000, 'what is recorded of the open flow is persisted');
  // The store persisted first.open; the new run restores it, with the last record's time
  // as watermark.
  const b = new Accountant(new RecordIds(ids.lastId), OPTS, recordTime(ids.lastId));
  b.restore([...first.open.values()].filter((r) => r !== null).map(openFlowOf), T0 + 60_000);
  b.listed(flow(40006, { tx: 4000, rx: 1000 }), T0 + 60_000, T0 + 60_000);
  b.listed(closed(40007, { tx: 5, rx: 5 }, T0 + 500), T0 + 60_000, T0 + 60_000); // closed before the crash, written
  b.listed(closed(40008, { tx: 7, rx: 7 }, T0 + 50_000), T0 + 60_000, T0 + 60_000); // closed while the daemon was down
  const second = b.drain();
  assert.deepEqual(second.records.map((r) => [r.localPort, r.kind, r.txBytes, r.conns]), [[40006, RECORD_KIND.open, 3000, 0], [40008, RECORD_KIND.closed, 7, 1]]);
  assert.ok(second.records[0]!.id > ids.lastId, 'ids keep increasing across the restart');
  assert.equal(b.stats.skippedKnown, 1);
});

test('tracking at most maxTracked flows: the oldest closed ones are forgotten, and not written again when listed', () => {
  const a = new Accountant(new RecordIds(), { ...OPTS, maxTracked: 10 });
  for (let i = 0; i < 30; i++) a.close(closed(42000 + i, { tx: 1, rx: 1 }, T0 + i), T0 + i);
  assert.equal(a.trackedCount, 10);
  assert.equal(a.stats.evicted, 20);
  a.listed(closed(42000, { tx: 1, rx: 1 }, T0), T0 + 60_000, T0 + 60_000);
  assert.equal(a.drain().records.length, 30);
});

test('roll-ups are kept apart by process, protocol, family, minute and endpoint, and borrow the executable a listing showed', () => {
  const a = new Accountant(new RecordIds(), { ...OPTS, detailPerSec: 0.001, detailBurst: 0, endpointsPerDrain: 100 });
  a.listed(flow(42999, { tx: 1, rx: 1 }), T0, T0); // curl's executable and cgroup, from a listing
  for (let i = 0; i < 10; i++) {
    a.close(closed(43000 + i, { tx: 10, rx: 10 }, T0 + i, { exe: null, cgroupId: null }), T0 + i); // curl, a close event
    a.close(closed(8443, { tx: 20, rx: 20 }, T0 + i, { remotePort: 50000 + i, pid: 200, comm: 'nginx', direction: 'inbound', attributedBy: 'accept' }), T0 + i);
    a.close(closed(43100 + i, { tx: 1, rx: 1 }, T0 + i, { proto: 'udp' }), T0 + i); // curl over UDP
    a.close(closed(43300 + i, { tx: 3, rx: 3 }, T0 + i, { family: 'ipv6', localAddr: 'fd00:198::1', remoteAddr: 'fd00:198::2' }), T0 + i);
  }
  // The next minute (after the others: a record older than the last one takes its time).
  for (let i = 0; i < 10; i++) a.close(closed(43200 + i, { tx: 2, rx: 2 }, T0 + 60_000 + i, { exe: null, cgroupId: null }), T0 + 60_000 + i);
  const rolled = a.drain().records.filter((r) => r.kind === RECORD_KIND.rollup);
  const key = (r: FlowRecord) => `${r.comm} ${r.proto} ${r.family} ${Math.floor(recordTime(r.id) / 60_000) - T0 / 60_000} ${r.remoteAddr} ${r.localPort}/${r.remotePort}`;
  assert.deepEqual(rolled.map((r) => [key(r), r.conns, r.txBytes]).sort(), [
    ['curl 17 4 0 198.18.0.2 null/443', 10, 10],
    ['curl 6 4 0 198.18.0.2 null/443', 10, 100],
    ['curl 6 4 1 198.18.0.2 null/443', 10, 20],
    ['curl 6 6 0 fd00:198::2 null/443', 10, 30],
    ['nginx 6 4 0 198.18.0.2 8443/null', 10, 200], // accepted: the local port names the service
  ]);
  const curl = rolled.find((r) => r.comm === 'curl' && r.txBytes === 100)!;
  assert.deepEqual([curl.exe, curl.cgroupId], ['/usr/bin/curl', '5'], 'borrowed from the listing');
  assert.equal(a.stats.rolledUp, 50);
});

test('a close event (no executable, no cgroup) borrows them from what a listing showed of the same process', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  a.listed(flow(44000, { tx: 1, rx: 1 }), T0, T0);
  a.close(closed(44001, { tx: 5, rx: 5 }, T0 + 10, { exe: null, cgroupId: null }), T0 + 10);
  a.close(closed(44002, { tx: 5, rx: 5 }, T0 + 10, { exe: null, cgroupId: null, comm: 'other' }), T0 + 10); // pid reused by another command
  const { records } = a.drain();
  assert.deepEqual(records.map((r) => [r.localPort, r.exe, r.cgroupId]), [[44000, '/usr/bin/curl', '5'], [44001, '/usr/bin/curl', '5'], [44002, null, null]]);
});

test('a closed flow the listings lose sight of and show again later, with close and first-seen times a few ms off the close event: written once', () => {
  // Seen in the daemon: the close event's times and the flow table's differ by 29 ms (two
  // clock conversions), and the table shows the closed flow again after its GC.
  const a = new Accountant(new RecordIds(), OPTS);
  const c = { tx: 21_424, rx: 7320 };
  a.close(closed(40010, c, T0 + 655, { firstMs: T0 + 601, direction: null, cgroupId: null }), T0 + 660);
  for (const at of [T0 + 1000, T0 + 2000]) a.endListing(at, at); // two listings without it: forgotten
  a.listed(closed(40010, c, T0 + 684, { firstMs: T0 + 630 }), T0 + 3000, T0 + 3000);
  a.endListing(T0 + 3000, T0 + 3000);
  const { records } = a.drain();
  assert.deepEqual(sums(records), { tx: c.tx, rx: c.rx, txp: 215, rxp: 74, conns: 1 });
  assert.equal(a.stats.skippedKnown, 1);
});

test('after a restart, the last closed flow listed with a close time a few ms after the restored watermark: not written again', () => {
  const a = new Accountant(new RecordIds(), OPTS, T0 + 655); // the last record was its close event
  a.listed(closed(40011, { tx: 100, rx: 200 }, T0 + 684, { firstMs: T0 + 630 }), T0 + 5000, T0 + 5000);
  a.listed(closed(40012, { tx: 300, rx: 400 }, T0 + 4000, { firstMs: T0 + 3000 }), T0 + 5000, T0 + 5000); // a close nobody reported
  const { records } = a.drain();
  assert.deepEqual(records.map((r) => r.localPort), [40012]);
});

test('incremental listings: an idle flow they do not show stays open; one gone from the table ends at once; a new flow on its tuple is kept', () => {
  const a = new Accountant(new RecordIds(), OPTS);
  // A full listing shows both; then only flow 40011 changes, listing after listing.
  a.listed(flow(40010, { tx: 100, rx: 100 }), T0, T0);
  a.listed(flow(40011, { tx: 100, rx: 100 }), T0, T0);
  a.endListing(T0, T0);
  for (let i = 1; i <= 4; i++) {
    const at = T0 + 60_000 * i;
    a.listed(flow(40011, { tx: 100 + i * 50, rx: 100 }), at, at, false);
    a.endListing(at, at, false);
  }
  let { records } = a.drain();
  assert.equal(records.filter((r) => r.kind === RECORD_KIND.ended).length, 0, 'absence from incremental listings is not an end');
  assert.deepEqual(sums(records.filter((r) => r.localPort === 40011)), { tx: 300, rx: 100, txp: 3, rxp: 1, conns: 1 });
  assert.equal(a.trackedCount, 2);
  // Two full listings without 40010 still end it (the backstop when the stream broke).
  const t5 = T0 + 300_000;
  a.listed(flow(40011, { tx: 300, rx: 100 }), t5, t5);
  a.endListing(t5, t5);
  assert.equal(a.drain().records.length, 0, 'missed once');
  // 40011 leaves the table (collected): gone ends it; a flow first seen after that on the
  // same tuple is not ended by that notice.
  const goneAt = t5 + 30_000;
  a.leftTable('tcp 198.18.0.1 40011 198.18.0.2 443', goneAt, goneAt + 5);
  a.listed(flow(40012, { tx: 1, rx: 1 }, { firstMs: goneAt - 100 }), goneAt + 10, goneAt + 10, false);
  a.leftTable('tcp 198.18.0.1 40012 198.18.0.2 443', goneAt, goneAt + 20);
  records = a.drain().records;
  const ended = records.filter((r) => r.kind === RECORD_KIND.ended);
  assert.deepEqual(ended.map((r) => [r.localPort, r.endMs]), [[40011, goneAt]], 'ended once found gone');
  assert.equal(a.trackedCount, 2, '40010 (missed one full listing) and 40012 (first seen within the tolerance of the notice)');
  a.leftTable('tcp 198.18.0.1 40099 198.18.0.2 443', goneAt, goneAt); // never known: nothing
  assert.equal(a.drain().records.length, 0);
});

test('random lives of flows on few tuples (reuse, growth, closes, evictions, restarts): every flow recorded once with exactly the counts it was seen with; the store\'s rows by flow id equal the rows by key', () => {
  // Seeded: the same sequence every run. Few tuples and a small maxTracked, so tracking
  // slots are freed and reused all the time (the accountant keeps flows in slots).
  let seed = 0x5eed;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const K = 40;
  const opts: AccountantOptions = { detailPerSec: 1e9, detailBurst: 1e9, maxTracked: 25, reuseToleranceMs: 2000 };
  interface Life { port: number; firstMs: number; tx: number; rx: number; closedMs: number | null; seenTx: number; seenRx: number; goneAt: number | null }
  const lives: Life[] = [];
  const onTuple: Array<Life | null> = new Array(K).fill(null);
  let ids = new RecordIds();
  let a = new Accountant(ids, opts);
  const records: FlowRecord[] = [];
  const byKey = new Map<string, FlowRecord | null>();
  const byFlow = new Map<number, FlowRecord>();
  const recorded = new Set<number>();
  const drain = () => {
    const ws = a.drain();
    records.push(...ws.records);
    for (const r of ws.records) recorded.add(r.flow);
    for (const [k, v] of ws.open) byKey.set(k, v);
    for (const f of ws.forget) {
      assert.ok(recorded.has(f), `forget names a flow history recorded (${f})`);
      byFlow.delete(f);
    }
    for (const v of ws.open.values()) if (v) byFlow.set(v.flow, v);
  };
  const obs = (l: Life, now: number): FlowObservation =>
    flow(l.port, { tx: l.tx, rx: l.rx }, { firstMs: l.firstMs, lastMs: now, closedMs: l.closedMs, txPackets: l.tx, rxPackets: l.rx });
  let now = T0;
  for (let step = 0; step < 4000; step++) {
    now += 50 + rnd(400);
    const i = rnd(K);
    const l = onTuple[i] ?? null;
    const op = rnd(10);
    if ((l === null || (l.closedMs !== null && l.goneAt !== null && now - l.firstMs > 5000)) && op < 4) {
      const n: Life = { port: 43000 + i, firstMs: now, tx: 1 + rnd(50), rx: rnd(50), closedMs: null, seenTx: 0, seenRx: 0, goneAt: null };
      lives.push(n);
      onTuple[i] = n;
      if (rnd(2)) {
        a.listed(obs(n, now), now, now, false); // seen first in a listing of changes
        n.seenTx = n.tx;
        n.seenRx = n.rx;
      }
    } else if (l && l.closedMs === null && op < 7) {
      l.tx += rnd(100);
      l.rx += rnd(100);
    } else if (l && l.closedMs === null && op === 7) {
      l.closedMs = now;
      a.close(obs(l, now), now);
      l.seenTx = l.tx;
      l.seenRx = l.rx;
    }
    if (step % 20 === 19) {
      // A full listing: open flows, and closed ones for a minute after their close.
      const start = now;
      for (const x of onTuple) {
        if (!x || x.goneAt !== null) continue;
        if (x.closedMs !== null && now - x.closedMs > 60_000) {
          x.goneAt = now;
          continue;
        }
        a.listed(obs(x, now), now, start, true);
        x.seenTx = x.tx;
        x.seenRx = x.rx;
      }
      a.endListing(start, now, true);
      drain();
    }
    if (step % 700 === 699) {
      // A restart: what was persisted carries on.
      drain();
      ids = new RecordIds(ids.lastId);
      a = new Accountant(ids, opts, recordTime(ids.lastId));
      a.restore([...byKey.values()].filter((r): r is FlowRecord => r !== null).map(openFlowOf), now);
    }
  }
  drain();
  assert.ok(lives.length > 200, `enough flows (${lives.length})`);
  assert.ok(lives.filter((l) => l.closedMs !== null).length > 100, 'and closes');
  assert.ok(records.every((r) => r.kind !== RECORD_KIND.rollup));
  const got = new Map<string, { tx: number; rx: number; conns: number }>();
  for (const r of records) {
    const k = `${r.localPort} ${r.firstMs}`;
    const g = got.get(k) ?? { tx: 0, rx: 0, conns: 0 };
    g.tx += r.txBytes;
    g.rx += r.rxBytes;
    g.conns += r.conns;
    got.set(k, g);
  }
  for (const l of lives) {
    const g = got.get(`${l.port} ${l.firstMs}`) ?? { tx: 0, rx: 0, conns: 0 };
    const seen = l.seenTx + l.seenRx > 0 || l.closedMs !== null;
    assert.deepEqual(g, seen ? { tx: l.seenTx, rx: l.seenRx, conns: 1 } : { tx: 0, rx: 0, conns: 0 }, `flow on port ${l.port} first seen ${l.firstMs - T0}`);
  }
  const persistedByKey = [...byKey.values()].filter((r) => r !== null).map((r) => r.flow).sort((x, y) => x - y);
  assert.deepEqual([...byFlow.keys()].sort((x, y) => x - y), persistedByKey, 'deleting by flow id leaves the rows that the last word per key leaves');
  const open = lives.filter((l) => l.closedMs === null && (l.seenTx + l.seenRx > 0));
  assert.equal(persistedByKey.length, open.length, 'one persisted row per open flow seen');
});

test('the fast path\'s new flow on the tuple of a closed flow it tracked starts afresh: missed by the same full listings as close() would have it, its late counts recorded', () => {
  // A closed flow that one full listing missed, then a new flow on its tuple: the new one
  // must need two more misses to be forgotten, not one (nothing of the earlier flow's
  // slot carries over), and its counts that grow after its close are a late record on both
  // paths.
  const opts: AccountantOptions = { ...OPTS, maxTracked: 1000 };
  const general = new Accountant(new RecordIds(), opts);
  const fast = new Accountant(new RecordIds(), opts);
  const closeBoth = (o: FlowObservation, now: number) => {
    general.close(o, now);
    assert.equal(fast.closeUntracked(flowHash(o), o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, o.proto, o.family === 'ipv4' ? 4 : 6,
      o.localAddr, o.localPort, o.remoteAddr, o.remotePort, o.interface, o.direction, o.attributedBy, o.remoteName ?? null, o.attrs ?? null,
      o.closedMs ?? now, o.firstMs, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets, now), true, 'the fast path takes it');
  };
  const both = (fn: (a: Accountant) => void) => [general, fast].forEach(fn);
  closeBoth(closed(42000, { tx: 100, rx: 200 }, T0 + 10, { firstMs: T0 }), T0 + 20);
  both((a) => a.endListing(T0 + 1000, T0 + 1001, true)); // missed once
  const b = closed(42000, { tx: 300, rx: 400 }, T0 + 5010, { firstMs: T0 + 5000 });
  closeBoth(b, T0 + 5020);
  assert.equal(fast.reusedTuples, 1, 'the fast path took the close on the tracked tuple');
  both((a) => a.endListing(T0 + 6000, T0 + 6001, true)); // the new flow missed once
  assert.equal(fast.trackedCount, 1, 'still tracked after one miss');
  assert.equal(general.trackedCount, 1);
  const late = { ...b, rxBytes: 460, rxPackets: b.rxPackets + 1, lastMs: T0 + 7000 };
  both((a) => a.listed(late, T0 + 7000, T0 + 7000, false));
  const g = general.drain();
  const f = fast.drain();
  assert.deepEqual(f.records, g.records);
  assert.deepEqual(g.records.map((r) => [r.kind, r.rxBytes]), [[RECORD_KIND.closed, 200], [RECORD_KIND.closed, 400], [RECORD_KIND.late, 60]]);
  assert.deepEqual(fast.stats, general.stats);
});

test('the writer\'s fast path for closes of untracked flows (closeUntracked) makes exactly what close() makes: records, roll-ups, tracking, late counts, evictions', () => {
  // Two accountants fed the same seeded lives: one through close() only, one as the writer
  // feeds it (closeUntracked first, close() when it declines). Small budget (roll-ups),
  // small maxTracked (evictions), few tuples (reuse), owners learned from listings, listings
  // that show closed flows again with counts that grew after the close (late records).
  let seed = 0xfa57;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const opts: AccountantOptions = { detailPerSec: 5, detailBurst: 20, maxTracked: 30, reuseToleranceMs: 2000 };
  const general = new Accountant(new RecordIds(), opts);
  const fast = new Accountant(new RecordIds(), opts);
  let declined = 0;
  let taken = 0;
  const closeBoth = (o: FlowObservation, now: number) => {
    general.close(o, now);
    if (fast.closeUntracked(flowHash(o), o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, o.proto, o.family === 'ipv4' ? 4 : 6,
      o.localAddr, o.localPort, o.remoteAddr, o.remotePort, o.interface, o.direction, o.attributedBy, o.remoteName ?? null, o.attrs ?? null,
      o.closedMs ?? now, o.firstMs, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets, now)) taken++;
    else {
      declined++;
      fast.close(o, now);
    }
  };
  const K = 60;
  interface Life { o: FlowObservation; open: boolean }
  const onTuple: Array<Life | null> = new Array(K).fill(null);
  const owners = [
    { pid: 100, comm: 'curl', uid: 1000, exe: null, cgroupId: null, unit: null },
    { pid: 200, comm: 'nginx', uid: 33, exe: null, cgroupId: null, unit: null },
    { pid: null, comm: null, uid: null, exe: null, cgroupId: null, unit: null },
  ];
  let now = T0;
  let compared = 0;
  for (let step = 0; step < 6000; step++) {
    now += 5 + rnd(40);
    const i = rnd(K);
    const l = onTuple[i] ?? null;
    const op = rnd(10);
    if ((l === null || !l.open) && op < 6) {
      const who = owners[rnd(owners.length)]!;
      const v6 = i % 3 === 0;
      const o = flow(41000 + i, { tx: 1 + rnd(900), rx: rnd(900) }, {
        ...who, family: v6 ? 'ipv6' : 'ipv4', localAddr: v6 ? 'fd00:198::1' : '198.18.0.1', remoteAddr: v6 ? `fd00:198::${(i % 7) + 2}` : `198.18.0.${(i % 7) + 2}`,
        remotePort: rnd(2) ? 443 : 53, proto: rnd(4) ? 'tcp' : 'udp', direction: rnd(3) ? 'outbound' : null, attributedBy: rnd(5) ? 'connect' : 'accept',
        interface: rnd(2) ? 'veth0' : 'veth1', firstMs: now - rnd(50),
      });
      onTuple[i] = { o, open: true };
      if (rnd(3) === 0) {
        // Seen open in a listing first (tracked: its close takes the general path), with the
        // executable a listing shows.
        const withExe = { ...o, lastMs: now, exe: o.pid === null ? null : `/usr/bin/${o.comm}`, cgroupId: o.pid === null ? null : '77' };
        general.listed(withExe, now, now, false);
        fast.listed(withExe, now, now, false);
      } else {
        // Closed at once: a short flow, never listed.
        const c = { ...o, closedMs: now, lastMs: now };
        onTuple[i] = { o: c, open: false };
        closeBoth(c, now + rnd(400)); // handled a little after the close
      }
    } else if (l && l.open && op < 8) {
      const c = { ...l.o, txBytes: l.o.txBytes + rnd(500), closedMs: now, lastMs: now };
      onTuple[i] = { o: c, open: false };
      closeBoth(c, now + rnd(400));
    } else if (l && l.open && op === 9) {
      // The open flow's close was never reported, and a new short flow on its tuple closes
      // (the open one ends: an `ended` record), or a close as old as it comes late.
      const c = { ...l.o, firstMs: rnd(4) ? now - rnd(50) : l.o.firstMs - rnd(3000), txBytes: 1 + rnd(900), rxBytes: rnd(900), closedMs: now, lastMs: now };
      onTuple[i] = { o: c, open: false };
      closeBoth(c, now + rnd(400));
    } else if (l && !l.open && op === 8) {
      // A listing shows the closed flow again, sometimes with counts that grew after its close.
      const late = { ...l.o, rxBytes: l.o.rxBytes + (rnd(2) ? 60 : 0), rxPackets: l.o.rxPackets + 1, lastMs: now };
      onTuple[i] = { o: late, open: false };
      general.listed(late, now, now, false);
      fast.listed(late, now, now, false);
    }
    if (step % 200 === 199) {
      // A full listing (the open flows; closed ones have left the table): closed flows known
      // before it that two such listings miss are forgotten.
      for (const x of onTuple) {
        if (!x?.open) continue;
        general.listed({ ...x.o, lastMs: now }, now, now, true);
        fast.listed({ ...x.o, lastMs: now }, now, now, true);
      }
      general.endListing(now, now + 1, true);
      fast.endListing(now, now + 1, true);
    }
    if (step % 50 === 49) {
      const g = general.drain();
      const f = fast.drain();
      assert.deepEqual(f.records, g.records, `step ${step}: the same records`);
      assert.deepEqual([...f.open], [...g.open], `step ${step}: the same open rows`);
      assert.deepEqual(f.forget, g.forget);
      assert.deepEqual(fast.stats, general.stats, `step ${step}: the same counters`);
      assert.equal(fast.trackedCount, general.trackedCount);
      compared += g.records.length;
    }
  }
  assert.ok(taken > 500 && declined > 200, `both paths ran (fast ${taken}, general ${declined})`);
  assert.ok(fast.reusedTuples > 30, `the fast path took closes on tuples of closed flows it tracked (${fast.reusedTuples})`);
  assert.ok(general.stats.rolledUp > 100 && general.stats.evicted > 100, `roll-ups (${general.stats.rolledUp}) and evictions (${general.stats.evicted})`);
  assert.ok(compared > 1000, `records compared (${compared})`);
});

test('two tuples with the same hash are tracked apart: each found by its own key, forgotten, reused and listed as its own flow', () => {
  // The tracked flows are found by their tuple's 32-bit hash, then by key: find two tuples
  // whose hashes collide (a birthday search: about 150,000 tuples here) and give the
  // accountant both.
  const tuple = (i: number) => ({ port: 1024 + (i % 60_000), raddr: `198.18.${Math.floor(i / 60_000)}.2` });
  const seen = new Map<number, number>();
  let pair: [number, number] | undefined;
  for (let i = 0; i < 1_000_000 && !pair; i++) {
    const { port, raddr } = tuple(i);
    const h = flowHash(flow(port, { tx: 0, rx: 0 }, { remoteAddr: raddr }));
    const j = seen.get(h);
    if (j !== undefined) pair = [j, i];
    else seen.set(h, i);
  }
  assert.ok(pair, 'two tuples with one hash');
  const [a, b] = pair.map(tuple) as [ReturnType<typeof tuple>, ReturnType<typeof tuple>];
  const obsA = (first: number, tx: number) => closed(a.port, { tx, rx: 1 }, first + 10, { remoteAddr: a.raddr, firstMs: first });
  const obsB = (first: number, tx: number) => closed(b.port, { tx, rx: 1 }, first + 10, { remoteAddr: b.raddr, firstMs: first });
  assert.equal(flowHash(obsA(T0, 0)), flowHash(obsB(T0, 0)));
  assert.notEqual(`${a.port} ${a.raddr}`, `${b.port} ${b.raddr}`);

  const acc = new Accountant(new RecordIds(), OPTS);
  const fast = (o: FlowObservation, now: number) => acc.closeUntracked(flowHash(o), o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, o.proto, 4,
    o.localAddr, o.localPort, o.remoteAddr, o.remotePort, o.interface, o.direction, o.attributedBy, null, null, o.closedMs ?? now, o.firstMs, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets, now);
  assert.equal(fast(obsA(T0, 100), T0 + 20), true);
  assert.equal(fast(obsB(T0, 200), T0 + 20), true, 'B is not A: a new flow, not a close of A\'s');
  assert.equal(acc.trackedCount, 2);
  assert.equal(acc.reusedTuples, 0);
  // A listing that shows A again (its close, a few ms later) writes nothing: A is found.
  acc.listed({ ...obsA(T0, 100), closedMs: T0 + 12 }, T0 + 30, T0 + 30, false);
  // A new flow on A's tuple: A's slot is forgotten and the new one tracked; B stays.
  assert.equal(fast(obsA(T0 + 5000, 300), T0 + 5020), true);
  assert.equal(acc.reusedTuples, 1);
  assert.equal(acc.trackedCount, 2);
  // B leaves the table: only B goes; its close listed again later is known, not written.
  acc.leftTable(`tcp 198.18.0.1 ${b.port} ${b.raddr} 443`, T0 + 6000, T0 + 6000);
  assert.equal(acc.trackedCount, 1);
  acc.listed({ ...obsB(T0, 200), closedMs: T0 + 12 }, T0 + 7000, T0 + 7000, false);
  // A's second flow grows after its close: a late record of that flow, not of B's.
  acc.listed({ ...obsA(T0 + 5000, 350), lastMs: T0 + 8000 }, T0 + 8000, T0 + 8000, false);
  const rs = acc.drain().records;
  assert.deepEqual(rs.map((r) => [r.kind, r.remoteAddr, r.localPort, r.txBytes]), [
    [RECORD_KIND.closed, a.raddr, a.port, 100],
    [RECORD_KIND.closed, b.raddr, b.port, 200],
    [RECORD_KIND.closed, a.raddr, a.port, 300],
    [RECORD_KIND.late, a.raddr, a.port, 50],
  ]);
  assert.equal(rs[3]!.flow, rs[2]!.flow, 'the late record belongs to A\'s second flow');
  assert.equal(acc.stats.skippedKnown, 1, 'B listed after it left: known');
});
