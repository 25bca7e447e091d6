// SPDX-License-Identifier: Apache-2.0
// The writer (in this thread, test clock) fed far more closes than its detail budget, in
// packed batches as the event loop sends them: closes beyond the budget take the fast path
// (fields read in place, summed per process and minute); flows history tracks (listed while
// open) and flows a listing already showed closed take the general one. Checked against the
// sums this test computes from the flows it generated: per process and minute, overall, and
// connections (every flow once: in detail or rolled up, never both, never lost).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HistoryWriter } from '../../../../daemon/src/history/writer.js';
import { CHANGES_ONLY, ObservationPacker, OP } from '../../../../daemon/src/history/pack.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';
import { parseHistoryQuery } from '../../../../daemon/src/history/query.js';

const T0 = Date.UTC(2026, 10, 30, 13, 0, 0);

const PROCS = [
  { pid: 200, comm: 'nginx', uid: 33, exe: '/usr/sbin/nginx', cgroupId: '4101' },
  { pid: 300, comm: 'curl', uid: 1000, exe: null, cgroupId: null }, // as close events carry it
  { pid: 301, comm: 'curl', uid: 1000, exe: null, cgroupId: null },
  { pid: 400, comm: 'firefox-esr', uid: 1001, exe: '/usr/lib/firefox-esr/firefox-esr', cgroupId: '4103' },
  { pid: null, comm: null, uid: null, exe: null, cgroupId: null },
];

/** xorshift32: the test's own numbers, reproducible. */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

interface Sums { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number; connections: number }
const zero = (): Sums => ({ txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 });
function add(s: Sums, f: FlowObservation): void {
  s.txBytes += f.txBytes;
  s.rxBytes += f.rxBytes;
  s.txPackets += f.txPackets;
  s.rxPackets += f.rxPackets;
  s.connections++;
}

test('far beyond the detail budget: per-process, per-minute totals equal the flows fed; every flow counted once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-writer-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, now: () => T0 + 3_600_000, accountant: { detailPerSec: 20, detailBurst: 50 } });
  await w.open();
  const p = new ObservationPacker();
  const r = rng(7);
  const N = 6000;
  const truth = new Map<string, Sums>(); // by process and minute
  const total = zero();
  const count = (f: FlowObservation) => {
    const k = `${f.pid} ${Math.floor(f.closedMs! / 60_000)}`;
    if (!truth.has(k)) truth.set(k, zero());
    add(truth.get(k)!, f);
    add(total, f);
  };
  const mk = (i: number, at: number): FlowObservation => {
    const proc = PROCS[Math.floor(r() * PROCS.length)]!;
    const v6 = r() < 0.3;
    const tx = 1 + Math.floor(r() * 100_000);
    const rx = 1 + Math.floor(r() * 1_000_000);
    return {
      proto: r() < 0.8 ? 'tcp' : 'udp', family: v6 ? 'ipv6' : 'ipv4', localAddr: v6 ? 'fd00:198::1' : '198.18.0.1', localPort: 1024 + (i % 60000),
      remoteAddr: v6 ? `fd00:198::${(i % 500).toString(16)}` : `198.18.${(i >> 8) & 255}.${i & 255}`, remotePort: r() < 0.5 ? 443 : 53,
      interface: 'veth0', direction: null, attributedBy: 'connect', ...proc,
      firstMs: at - 40, lastMs: at, closedMs: at, txBytes: tx, rxBytes: rx, txPackets: 1 + (tx >> 10), rxPackets: 1 + (rx >> 10),
    };
  };
  // 20 long flows, listed while open (tracked: their close must add only what they gained).
  const long = Array.from({ length: 20 }, (_, i) => ({ ...mk(100_000 + i, T0 + 1), closedMs: null, txBytes: 1000 + i, rxBytes: 2000 + i, txPackets: 3, rxPackets: 4 }));
  for (const f of long) p.add(OP.listed, f, T0);
  p.endListing(T0, T0 + 5);
  w.ingest(p.take()!);
  // A listing counts the flows it shows as open in the minute it began.
  for (const f of long) count({ ...f, closedMs: T0 });
  let shownClosed = 0;
  for (let i = 0; i < N; i++) {
    const at = T0 + 10 + i * 30; // 6000 closes over 3 minutes: 33/s against a budget of 20/s
    const f = mk(i, at);
    if (i % 1000 === 500) {
      // A listing shows this flow closed before its close event is handled: once only.
      // (An incremental listing, as the daemon's are: the long flows did not change.)
      p.add(OP.listed, f, at, CHANGES_ONLY);
      p.endListing(at, at, true);
      shownClosed++;
    }
    p.add(OP.close, f, at);
    count(f);
    if (i % 3000 === 1500) {
      // Some long flows close, with more than they had when listed.
      for (const l of long.splice(0, 10)) {
        const c = { ...l, closedMs: at, lastMs: at, txBytes: l.txBytes + 500, rxBytes: l.rxBytes + 700, txPackets: l.txPackets + 1, rxPackets: l.rxPackets + 1 };
        p.add(OP.close, c, at);
        const k = `${c.pid} ${Math.floor(at / 60_000)}`;
        if (!truth.has(k)) truth.set(k, zero());
        for (const s of [truth.get(k)!, total]) {
          s.txBytes += 500;
          s.rxBytes += 700;
          s.txPackets += 1;
          s.rxPackets += 1;
        }
      }
    }
    if (i % 400 === 399) w.ingest(p.take()!);
  }
  const last = p.take();
  if (last) w.ingest(last);
  await w.flush();
  const st = w.status();
  assert.equal(st.records.dropped, 0);
  assert.ok(st.records.rolledUp > N / 3, `most closes beyond the budget were rolled up (${st.records.rolledUp})`);

  const all = await w.query({ since: T0 - 60_000, until: T0 + 3_600_000, limit: 10_000 }, 'all');
  assert.deepEqual(all.totals, total, 'the records add up to every flow fed');
  const detail = all.flows!.filter((f) => f.state !== 'rolled-up');
  const rolled = all.flows!.filter((f) => f.state === 'rolled-up');
  assert.equal(detail.length + st.records.rolledUp, N + 20, 'each flow once: in detail or rolled up');
  assert.equal(rolled.reduce((s, f) => s + f.connections, 0), st.records.rolledUp, 'status counts what the budget did not keep');
  // The budget: the burst plus 20/s over the 3 minutes, plus the tracked long flows.
  assert.ok(detail.length <= 50 + 20 * 181 + 20, `detail within the budget (${detail.length})`);
  // Each roll-up: one endpoint (address and the service port, here the remote one) or, beyond
  // the endpoints a process keeps until a commit, none; rows, not flows.
  assert.ok(rolled.every((f) => (f.remoteAddr === '0.0.0.0' || f.remoteAddr === '::') ? f.localPort === null && f.remotePort === null : f.localPort === null && f.remotePort !== null));
  assert.ok(rolled.some((f) => f.remoteAddr === '0.0.0.0') && rolled.some((f) => f.remoteAddr !== '0.0.0.0' && f.remoteAddr !== '::'), 'both kinds');
  assert.ok(rolled.length < st.records.rolledUp / 10, `rows, not flows (${rolled.length} rows for ${st.records.rolledUp} closes)`);

  // Per process and minute, from the per-minute table (by: hour would merge minutes: query
  // each minute by process).
  for (let m = 0; m < 5; m++) {
    const since = T0 + m * 60_000;
    const res = await w.query({ since, until: since + 60_000, by: 'process', limit: 100 }, 'all');
    assert.equal(res.source, 'minutes');
    for (const g of res.groups!) {
      const want = truth.get(`${g.pid} ${T0 / 60_000 + m}`) ?? zero();
      assert.deepEqual({ txBytes: g.txBytes, rxBytes: g.rxBytes, txPackets: g.txPackets, rxPackets: g.rxPackets, connections: g.connections }, want, `pid ${g.pid}, minute ${m}`);
    }
    const wantPids = [...truth.keys()].filter((k) => k.endsWith(` ${T0 / 60_000 + m}`)).length;
    assert.equal(res.groups!.length, wantPids, `minute ${m}: every process that closed flows`);
  }
  // A close event carries no executable: the roll-ups of curl borrowed nothing (no listing
  // showed curl with one), nginx's kept its own.
  const byProc = await w.query({ since: T0 - 60_000, until: T0 + 3_600_000, by: 'process', limit: 100 }, 'all');
  assert.equal(byProc.groups!.find((g) => g.pid === 200)?.exe, '/usr/sbin/nginx');
  assert.ok(shownClosed > 0);
  await w.close();
});

test('a write set of LARGE_WRITE_ROWS rows or more is followed by two collections of the heap a second apart, at most once a minute; smaller ones by none', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-writer-gc-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, now: () => T0 + 3_600_000 });
  await w.open();
  const calls: number[] = [];
  w.collectGarbage = () => calls.push(performance.now());
  const p = new ObservationPacker();
  const listing = (from: number, n: number) => {
    for (let i = from; i < from + n; i++) {
      p.add(OP.listed, {
        proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (i % 60000), remoteAddr: `198.19.${(i >> 8) & 255}.${i & 255}`, remotePort: 443,
        interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 7, comm: 'c', uid: 0, exe: null, cgroupId: null,
        firstMs: T0, lastMs: T0, closedMs: null, txBytes: 10, rxBytes: 10, txPackets: 1, rxPackets: 1,
      }, T0 + 3_600_000, CHANGES_ONLY);
      if ((i - from) % 5000 === 4999) w.ingest(p.take()!);
    }
    const b = p.take();
    if (b) w.ingest(b);
  };
  // Small: 1,000 open flows (2,000 rows: their records and open rows).
  listing(0, 1000);
  await w.flush();
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(calls.length, 0, 'no collection after a small write set');
  // Large: 30,000 new open flows, 60,000 rows in one write set.
  const t0 = performance.now();
  listing(1000, 30_000);
  await w.flush();
  const written = performance.now();
  for (let i = 0; i < 100 && calls.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls.length, 2, 'two collections');
  assert.ok(calls[0]! >= written + 900 && calls[1]! - calls[0]! >= 900, `a second after the write, then a second apart (${(calls[0]! - t0).toFixed(0)}, ${(calls[1]! - t0).toFixed(0)} ms)`);
  assert.equal(w.status().writerCollections, 2);
  // Another large one within the minute: none.
  listing(31_000, 30_000);
  await w.flush();
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(calls.length, 2, 'at most once a minute');
  await w.close();
});

test('a flow an incremental listing names gone (OP.gone) ends at once: the writer finds it by its tuple, and only it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-writer-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, now: () => T0 + 3_600_000 });
  await w.open();
  const p = new ObservationPacker();
  const open = (port: number): FlowObservation => ({
    proto: 'udp', family: 'ipv4', localAddr: '198.18.0.1', localPort: port, remoteAddr: '198.18.0.53', remotePort: 53,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 300, comm: 'curl', uid: 1000, exe: null, cgroupId: null,
    firstMs: T0, lastMs: T0 + 100, closedMs: null, txBytes: 60, rxBytes: 120, txPackets: 1, rxPackets: 1,
  });
  const listedAt = T0 + 1000;
  for (const port of [41000, 41001]) p.add(OP.listed, open(port), listedAt, CHANGES_ONLY);
  p.endListing(listedAt, listedAt, true);
  const goneAt = T0 + 90_000;
  p.addGone({ proto: 'udp', localAddr: '198.18.0.1', localPort: 41000, remoteAddr: '198.18.0.53', remotePort: 53, goneAtMs: goneAt }, goneAt);
  w.ingest(p.take()!);
  await w.flush();
  const r = await w.query(parseHistoryQuery({ since: T0 - 60_000, until: T0 + 7_200_000, limit: 100 } as never, T0, () => null), 'all');
  const state = Object.fromEntries(r.flows!.map((f) => [f.localPort, f.state]));
  assert.deepEqual(state, { 41000: 'ended', 41001: 'open' });
  await w.close();
});
