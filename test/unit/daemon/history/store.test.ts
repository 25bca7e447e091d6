// SPDX-License-Identifier: Apache-2.0
// The store through the writer, in this thread, with a test clock: every filter and every
// grouping against sums the test computes itself from the flows it fed; scoping by uid;
// per-minute totals against the records; retention by age and by size.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HistoryWriter } from '../../../../daemon/src/history/writer.js';
import { ObservationPacker, OP } from '../../../../daemon/src/history/pack.js';
import { parseHistoryQuery } from '../../../../daemon/src/history/query.js';
import type { FlowObservation, HistoryResult, HistoryScope } from '../../../../daemon/src/history/types.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 30, 13, 0, 0);

type Fed = FlowObservation & { unit: string | null };

function tmp(tag: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-history-${tag}-`));
  after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// One packer per writer: the writer's copy of the string table follows the packer's.
const packers = new WeakMap<HistoryWriter, ObservationPacker>();
function feed(w: HistoryWriter, flows: FlowObservation[]): void {
  let p = packers.get(w);
  if (!p) packers.set(w, (p = new ObservationPacker()));
  for (const f of flows) p.add(OP.close, f, f.closedMs!);
  w.ingest(p.take()!);
}

function sum(fs_: Fed[]) {
  return fs_.reduce(
    (s, f) => ({ txBytes: s.txBytes + f.txBytes, rxBytes: s.rxBytes + f.rxBytes, txPackets: s.txPackets + f.txPackets, rxPackets: s.rxPackets + f.rxPackets, connections: s.connections + 1 }),
    { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 },
  );
}

describe('history store: queries', () => {
  let w: HistoryWriter;
  const fed: Fed[] = [];
  const q = (p: Record<string, unknown>, scope: HistoryScope = 'all'): Promise<HistoryResult> =>
    w.query(parseHistoryQuery({ since: T0 - 3_600_000, until: T0 + 2 * DAY, limit: 10_000, ...p } as never, T0, (n) => (n === 'alice' ? 1000 : null)), scope);

  before(async () => {
    // Units come with the observations, as the daemon's identity service names them on flows.
    w = new HistoryWriter({ dir: tmp('q'), maxBytes: 1 << 30, retentionDays: 30, now: () => T0 + 2 * DAY });
    await w.open();
    const procs = [
      { pid: 200, comm: 'nginx', uid: 33, exe: '/usr/sbin/nginx', cgroupId: '4101', unit: 'nginx.service' },
      { pid: 300, comm: 'curl', uid: 1000, exe: '/usr/bin/curl', cgroupId: '4102', unit: 'session-3.scope' },
      { pid: 400, comm: 'firefox-esr', uid: 1001, exe: '/usr/lib/firefox-esr/firefox-esr', cgroupId: '4103', unit: 'app-fx.scope' },
      { pid: null, comm: null, uid: null, exe: null, cgroupId: null, unit: null },
      // curl's pid again: another program (an exec, or the pid reused), and curl renamed
      // (prctl PR_SET_NAME: only the command differs): each a process of its own.
      { pid: 300, comm: 'wget', uid: 1000, exe: '/usr/bin/wget', cgroupId: '4102', unit: 'session-3.scope' },
      { pid: 300, comm: 'curl-worker', uid: 1000, exe: '/usr/bin/curl', cgroupId: '4102', unit: 'session-3.scope' },
    ];
    const remotes: Array<[string, 'ipv4' | 'ipv6', string | null]> = [
      ['203.0.113.7', 'ipv4', 'api.example.com'], ['203.0.113.200', 'ipv4', null], ['198.51.100.9', 'ipv4', 'cdn.example.net'],
      ['2001:db8::1', 'ipv6', 'v6.example.com'], ['2001:db8:ffff::2', 'ipv6', null],
    ];
    let port = 30000;
    // Two days, every 7 minutes, each process talks to each remote (some minutes).
    for (let t = T0; t < T0 + 2 * DAY; t += 7 * 60_000) {
      for (const [pi, p] of procs.entries()) {
        for (const [ri, [addr, family, name]] of remotes.entries()) {
          if ((t / 60_000 + pi + ri) % 3 === 0) continue;
          const tx = 100 + ((t / 1000 + pi * 7 + ri * 13) % 5000);
          const rx = 1000 + ((t / 1000 + pi * 11 + ri * 3) % 90000);
          const at = t + pi * 1000 + ri * 100;
          fed.push({
            proto: ri === 4 ? 'udp' : 'tcp', family, localAddr: family === 'ipv4' ? '198.18.0.1' : 'fd00:198::1', localPort: port++ % 60000 + 1024,
            remoteAddr: addr, remotePort: 443, interface: 'veth0', direction: 'outbound', attributedBy: p.pid === null ? 'none' : 'connect',
            pid: p.pid, comm: p.comm, uid: p.uid, exe: p.exe, cgroupId: p.cgroupId, unit: p.unit,
            firstMs: at - 500, lastMs: at, closedMs: at, txBytes: tx, rxBytes: rx, txPackets: 3 + (tx >> 9), rxPackets: 3 + (rx >> 9), remoteName: name,
          });
        }
      }
    }
    for (let i = 0; i < fed.length; i += 1000) {
      feed(w, fed.slice(i, i + 1000));
      await w.flush();
    }
    assert.equal(w.status().records.written, fed.length);
  });
  after(() => w?.close());

  const expect = (pred: (f: Fed) => boolean) => sum(fed.filter(pred));

  test('no filter: every flow, one entry each, with its own counts', async () => {
    const r = await q({});
    assert.equal(r.matched, fed.length);
    assert.deepEqual(r.totals, expect(() => true));
    const one = r.flows!.find((f) => f.localPort === fed[5]!.localPort && f.remoteAddr === fed[5]!.remoteAddr)!;
    assert.deepEqual([one.txBytes, one.rxBytes, one.comm, one.exe, one.unit, one.remoteName, one.state], [fed[5]!.txBytes, fed[5]!.rxBytes, fed[5]!.comm, fed[5]!.exe, fed[5]!.unit, fed[5]!.remoteName ?? null, 'closed']);
  });

  test('each filter alone', async () => {
    const cases: Array<[Record<string, unknown>, (f: Fed) => boolean]> = [
      [{ pid: 300 }, (f) => f.pid === 300],
      [{ comm: 'firefox-esr' }, (f) => f.comm === 'firefox-esr'],
      [{ user: 'alice' }, (f) => f.uid === 1000],
      [{ user: 33 }, (f) => f.uid === 33],
      [{ unit: 'nginx.service' }, (f) => f.unit === 'nginx.service'],
      [{ unit: '*.scope' }, (f) => f.unit?.endsWith('.scope') === true],
      [{ remote: '203.0.113.7' }, (f) => f.remoteAddr === '203.0.113.7'],
      [{ remote: '203.0.113.0/24' }, (f) => f.remoteAddr.startsWith('203.0.113.')],
      [{ remote: '203.0.113.128/25' }, (f) => f.remoteAddr === '203.0.113.200'],
      [{ remote: '2001:db8::/48' }, (f) => f.remoteAddr === '2001:db8::1'],
      [{ remote: '2001:db8::/32' }, (f) => f.family === 'ipv6'],
      [{ name: 'api.example.com' }, (f) => f.remoteName === 'api.example.com'],
      [{ name: '*.example.*' }, (f) => (f.remoteName ?? '').includes('.example.')],
      [{ comm: 'curl', remote: '198.51.100.9' }, (f) => f.comm === 'curl' && f.remoteAddr === '198.51.100.9'],
    ];
    for (const [params, pred] of cases) {
      const r = await q(params);
      assert.deepEqual(r.totals, expect(pred), JSON.stringify(params));
      assert.equal(r.matched, fed.filter(pred).length, JSON.stringify(params));
    }
  });

  test('a time window: whole minutes, [since, until)', async () => {
    const since = T0 + 3_600_000;
    const until = T0 + 5 * 3_600_000;
    const r = await q({ since: new Date(since).toISOString(), until: new Date(until).toISOString() });
    assert.deepEqual(r.totals, expect((f) => f.closedMs! >= since && f.closedMs! < until));
  });

  test('groupings: process, remote, name, hour, day', async () => {
    const byProc = await q({ by: 'process' });
    assert.equal(byProc.source, 'minutes');
    for (const g of byProc.groups!) assert.deepEqual({ ...g, firstRecordAt: 0, lastRecordAt: 0, pid: 0, comm: 0, uid: 0, exe: 0, unit: 0 }, { ...expect((f) => f.pid === g.pid && f.comm === g.comm), firstRecordAt: 0, lastRecordAt: 0, pid: 0, comm: 0, uid: 0, exe: 0, unit: 0 }, `process ${g.comm}`);
    assert.equal(byProc.groups!.length, 6);
    assert.equal(byProc.groups!.find((g) => g.comm === 'nginx')!.unit, 'nginx.service');

    const byRemote = await q({ by: 'remote' });
    assert.equal(byRemote.groups!.length, 5);
    for (const g of byRemote.groups!) assert.equal(g.txBytes, expect((f) => f.remoteAddr === g.remoteAddr).txBytes, g.remoteAddr);

    const byName = await q({ by: 'name' });
    for (const g of byName.groups!) assert.equal(g.rxBytes, expect((f) => (f.remoteName ?? null) === g.name).rxBytes, String(g.name));

    for (const by of ['hour', 'day'] as const) {
      const r = await q({ by });
      const size = by === 'hour' ? 3_600_000 : DAY;
      // Buckets are in the daemon's local time; the sum over buckets is everything.
      assert.deepEqual(r.totals, expect(() => true));
      for (const g of r.groups!) {
        const start = Date.parse(g.startsAt!);
        const end = by === 'hour' ? start + size : new Date(new Date(start).setDate(new Date(start).getDate() + 1)).getTime();
        assert.equal(g.txBytes, expect((f) => f.closedMs! >= start && f.closedMs! < end).txBytes, `${by} ${g.startsAt}`);
      }
    }
  });

  test('per-minute totals and flow records agree (a filter that only the records can answer matches everything)', async () => {
    const fromMinutes = await q({ by: 'process' });
    const fromRecords = await q({ by: 'process', name: '*' });
    assert.equal(fromRecords.source, 'records');
    const named = await q({ by: 'process' });
    assert.deepEqual(fromMinutes.totals, named.totals);
    const all = await q({ by: 'process', remote: '::/0' });
    const v4 = await q({ by: 'process', remote: '0.0.0.0/0' });
    assert.deepEqual(
      { tx: all.totals.txBytes + v4.totals.txBytes, c: all.totals.connections + v4.totals.connections },
      { tx: fromMinutes.totals.txBytes, c: fromMinutes.totals.connections },
    );
  });

  test('scoping: a user sees only flows of their uid, in every shape; unowned flows only for "all"', async () => {
    const mine = (f: Fed) => f.uid === 1000;
    for (const by of [undefined, 'process', 'remote', 'name', 'hour', 'day']) {
      const r = await q(by ? { by } : {}, { uid: 1000 });
      assert.deepEqual(r.totals, expect(mine), `by ${by}`);
    }
    const r = await q({}, { uid: 1000 });
    assert.ok(r.flows!.every((f) => f.uid === 1000));
    const other = await q({ comm: 'nginx' }, { uid: 1000 });
    assert.equal(other.matched, 0, "another user's process, asked for by name");
    const unowned = await q({ by: 'process' }, 'all');
    assert.ok(unowned.groups!.some((g) => g.pid === null));
  });

  test('limit: the largest first, matched and totals count everything', async () => {
    const r = await q({ limit: 3 });
    assert.equal(r.flows!.length, 3);
    assert.equal(r.truncated, true);
    assert.equal(r.matched, fed.length);
    const max = Math.max(...fed.map((f) => f.txBytes + f.rxBytes));
    assert.equal(r.flows![0]!.txBytes + r.flows![0]!.rxBytes, max);
  });
});

describe('history store: retention', () => {
  test('by age: records and minutes older than retentionDays go, newer ones stay', async () => {
    let now = T0;
    const w = new HistoryWriter({ dir: tmp('age'), maxBytes: 1 << 30, retentionDays: 30, now: () => now });
    await w.open();
    const mk = (at: number, port: number): FlowObservation => ({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: port, remoteAddr: '198.18.0.2', remotePort: 443, interface: 'veth0', direction: 'outbound',
      attributedBy: 'connect', pid: 1, comm: 'a', uid: 0, exe: null, cgroupId: null, firstMs: at - 10, lastMs: at, closedMs: at, txBytes: 10, rxBytes: 20, txPackets: 1, rxPackets: 1,
    });
    feed(w, [mk(T0, 1), mk(T0 + 4 * DAY, 2), mk(T0 + 29 * DAY, 3)]);
    await w.flush();
    now = T0 + 35 * DAY; // the first two are older than 30 days
    feed(w, [mk(now - 1000, 4)]);
    await w.flush();
    await w.maintain();
    const all = await w.query({ since: T0 - DAY, until: now + 60_000, limit: 100 }, 'all');
    assert.deepEqual(all.flows!.map((f) => f.localPort).sort(), [3, 4]);
    const minutes = await w.query({ since: T0 - DAY, until: now + 60_000, limit: 100, by: 'day' }, 'all');
    assert.equal(minutes.totals.connections, 2, 'the per-minute totals went with them');
    const st = w.status();
    assert.equal(st.retention.deletedByAge, 4, '2 records + 2 minute rows');
    assert.ok(Date.parse(st.oldestRecordAt!) >= now - 30 * DAY);
    await w.close();
  });

  test('by size: the oldest records go until the file fits; per-minute totals outlive them', async () => {
    const max = 4 << 20;
    let now = T0;
    const w = new HistoryWriter({ dir: tmp('size'), maxBytes: max, retentionDays: 30, now: () => now, accountant: { detailPerSec: 1e9, detailBurst: 1e9 } });
    await w.open();
    const fed: FlowObservation[] = [];
    // 150,000 flows of 5 processes over a day: about 6 MB in DuckDB (4 MiB limit), in 15
    // partitions of 10,000 records; per-minute totals: 1440 x 5 rows.
    for (let i = 0; i < 150_000; i++) {
      const at = T0 + Math.floor((i * DAY) / 150_000);
      fed.push({
        proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (i % 60000), remoteAddr: `203.0.${(i >> 8) & 255}.${i & 255}`, remotePort: 443,
        interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 10 + (i % 5), comm: `p${i % 5}`, uid: 1000, exe: null, cgroupId: null,
        firstMs: at - (i % 977), lastMs: at, closedMs: at, txBytes: 100 + (i % 9973), rxBytes: 1000 + ((i * 31) % 99991), txPackets: 3, rxPackets: 5,
      });
    }
    for (let i = 0; i < fed.length; i += 20_000) {
      now = fed[Math.min(fed.length, i + 20_000) - 1]!.closedMs!;
      feed(w, fed.slice(i, i + 20_000));
      await w.flush();
    }
    await w.refresh();
    const before = w.status().sizeBytes;
    assert.ok(before > max, `filled to ${before} bytes, over the ${max} limit`);
    await w.maintain();
    const st = w.status();
    assert.ok(st.sizeBytes <= max, `${st.sizeBytes} bytes after retention, limit ${max}`);
    assert.ok(st.retention.deletedBySize > 0);
    const span = { since: T0 - DAY, until: now + 60_000, limit: 10 };
    const recs = await w.query({ ...span, by: 'remote' }, 'all');
    assert.ok(recs.recordsSince !== null, 'the answer says records before some time are gone');
    const kept = fed.filter((f) => f.closedMs! >= Date.parse(recs.recordsSince!));
    assert.ok(kept.length > 0 && kept.length < fed.length, `${kept.length} of ${fed.length} kept, since ${recs.recordsSince}`);
    assert.equal(recs.totals.connections, kept.length, 'the newest records stay, the oldest went');
    assert.equal(recs.totals.txBytes, kept.reduce((s, f) => s + f.txBytes, 0));
    // Per-minute totals outlive the records (they are dropped last): from the oldest minute
    // still there, they add up to every flow fed since.
    const minutesFrom = Date.parse(st.oldestRecordAt!);
    assert.ok(minutesFrom < Date.parse(recs.recordsSince!), `minutes from ${st.oldestRecordAt}, records from ${recs.recordsSince}`);
    const mins = await w.query({ ...span, by: 'day' }, 'all');
    const covered = fed.filter((f) => f.closedMs! >= minutesFrom);
    assert.equal(mins.totals.txBytes, covered.reduce((s, f) => s + f.txBytes, 0), 'per-minute totals of every flow since');
    assert.equal(mins.totals.connections, covered.length);
    await w.close();
  });
});

describe('history store: retention limits changed while running (a reload)', () => {
  test('a shorter retentionDays applies at the next maintain: what is older goes', async () => {
    const now = T0 + 10 * DAY;
    const w = new HistoryWriter({ dir: tmp('limits'), maxBytes: 1 << 30, retentionDays: 30, now: () => now });
    await w.open();
    const mk = (at: number, port: number): FlowObservation => ({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: port, remoteAddr: '198.18.0.2', remotePort: 443, interface: 'veth0', direction: 'outbound',
      attributedBy: 'connect', pid: 1, comm: 'a', uid: 0, exe: null, cgroupId: null, firstMs: at - 10, lastMs: at, closedMs: at, txBytes: 10, rxBytes: 20, txPackets: 1, rxPackets: 1,
    });
    feed(w, [mk(T0, 1), mk(T0 + 8 * DAY, 2), mk(now - 1000, 3)]);
    await w.flush();
    await w.maintain();
    const ports = async () => (await w.query({ since: T0 - DAY, until: now + 60_000, limit: 100 }, 'all')).flows!.map((f) => f.localPort).sort();
    assert.deepEqual(await ports(), [1, 2, 3], 'within 30 days: all kept');
    w.setLimits({ retentionDays: 5, maxBytes: 1 << 30 });
    await w.maintain();
    assert.deepEqual(await ports(), [2, 3], 'older than 5 days: gone');
    assert.equal(w.status().retentionDays, 5, 'status reports the new limit');
    await w.close();
  });
});
