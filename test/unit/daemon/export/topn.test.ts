// SPDX-License-Identifier: Apache-2.0
// Traffic by process with bounded cardinality: against a simulation whose every byte the
// test counts itself. Whatever processes come and go, (1) no series ever decreases while
// it is exported, (2) every byte lands in exactly one series (the sum over what was
// exported equals the simulation's total), (3) the number of series stays at most
// top + 1 and the memory of unranked identities stays bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OTHER, ProcessSeries, UNKNOWN_COMM } from '../../../../daemon/src/export/topn.js';
import type { ProcessTrafficInput } from '../../../../daemon/src/export/api-types.js';

/** A deterministic PRNG (mulberry32): the same run every time. */
function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const row = (pid: number | null, comm: string | null, tx: number, rx = 0, extra: Partial<ProcessTrafficInput> = {}): ProcessTrafficInput =>
  ({ pid, comm, flows: 1, txBytes: tx, rxBytes: rx, txPackets: Math.ceil(tx / 1000), rxPackets: Math.ceil(rx / 1000), ...extra });

/** Follows the exported series like Prometheus would: per label set, and what vanished. */
class Scraper {
  last = new Map<string, number>();
  /** Bytes counted by series that were later evicted (increase() over their lifetime). */
  retired = 0;
  seen = new Set<string>();
  scrape(s: ProcessSeries): void {
    const now = new Map(s.series().map((x) => [`${x.labels.comm}|${x.labels.unit}|${x.labels.container}`, x.values.txBytes + x.values.rxBytes]));
    for (const [k, v] of now) {
      const prev = this.last.get(k);
      if (prev !== undefined) assert.ok(v >= prev, `series ${k} went down from ${prev} to ${v}`);
      this.seen.add(k);
    }
    for (const [k, v] of this.last) if (!now.has(k)) this.retired += v;
    this.last = now;
    s.markExposed();
  }
  get total(): number {
    return this.retired + [...this.last.values()].reduce((a, b) => a + b, 0);
  }
}

test('monotonic and conserving: processes come, grow, exit and have their pids reused; every byte is in exactly one series', () => {
  const rand = rng(7);
  const s = new ProcessSeries({ top: 5, halfLifeMs: 60_000, maxCandidates: 50 });
  const sc = new Scraper();
  let truth = 0;
  // What the daemon lists: live processes, and exited ones for 3 more rounds (then it
  // forgets them). A pid reused while still listed continues the listed totals (the
  // daemon keys totals by pid); reused after, it starts from zero.
  const listed = new Map<number, { comm: string; tx: number; rx: number; exitedAt: number | null }>();
  let t = 0;
  for (let round = 0; round < 400; round++) {
    t += 1000;
    const forgotten = new Set<number>();
    for (const [pid, p] of listed) {
      if (p.exitedAt === null && rand() < 0.1) p.exitedAt = round;
      else if (p.exitedAt !== null && round - p.exitedAt >= 3) {
        listed.delete(pid);
        forgotten.add(pid);
      }
    }
    let live = [...listed.values()].filter((p) => p.exitedAt === null).length;
    while (live < 30) {
      const pid = 100 + Math.floor(rand() * 60); // a small pid space: reuse happens
      const p = listed.get(pid);
      // A pid the daemon forgets is absent from at least one refresh before it is reused
      // (it keeps exited processes for minutes, the exporter refreshes every 15 s).
      if ((p && p.exitedAt === null) || forgotten.has(pid)) continue;
      if (p) p.exitedAt = null;
      else listed.set(pid, { comm: `cmd${Math.floor(rand() ** 3 * 40)}`, tx: 0, rx: 0, exitedAt: null });
      live++;
    }
    for (const p of listed.values()) {
      if (p.exitedAt !== null) continue;
      const dtx = Math.floor(rand() * rand() * 100_000);
      const drx = Math.floor(rand() * 5_000);
      p.tx += dtx;
      p.rx += drx;
      truth += dtx + drx;
    }
    const rows = [...listed].map(([pid, p]) => row(pid, p.comm, p.tx, p.rx));
    rows.push(row(null, UNKNOWN_COMM, 0)); // pid-less rows never break anything
    s.update(rows, t);
    sc.scrape(s);
    assert.ok(s.series().length <= 6, `at most top + 1 series (${s.series().length})`);
    assert.ok(s.stats().candidates <= 50, 'unranked identities bounded');
  }
  assert.equal(sc.total, truth, 'bytes exported (live series + evicted ones) == bytes the processes moved');
  assert.ok(s.stats().evictions > 0, 'the run did exercise evictions');
});

test('5,000 distinct short-lived commands: top + 1 series, the rest summed in [other]', () => {
  const s = new ProcessSeries({ top: 20 });
  let truth = 0;
  for (let batch = 0; batch < 50; batch++) {
    const rows: ProcessTrafficInput[] = [];
    for (let i = 0; i < 100; i++) {
      const n = batch * 100 + i;
      rows.push(row(10_000 + n, `p${n}`, 100 + (n % 7)));
      truth += 100 + (n % 7);
    }
    s.update(rows, batch * 1000); // each batch listed once, then gone (exited, forgotten)
  }
  const series = s.series();
  assert.equal(series.length, 21);
  assert.equal(series.at(-1)!.labels.comm, OTHER);
  assert.equal(series.reduce((a, x) => a + x.values.txBytes, 0), truth);
  assert.ok(series.at(-1)!.values.txBytes > 0);
  assert.ok(s.stats().candidates <= 1000);
});

test('a much bigger talker takes the weakest slot; the evicted series comes back from 0 (a counter reset, not a double count)', () => {
  const s = new ProcessSeries({ top: 2, halfLifeMs: 1e12, hysteresis: 2 });
  // A scrape after each refresh (markExposed): an evicted series keeps what it showed.
  s.update([row(1, 'a', 1000), row(2, 'b', 500)], 0);
  s.markExposed();
  s.update([row(1, 'a', 1000), row(2, 'b', 500), row(3, 'c', 800)], 1);
  s.markExposed();
  assert.deepEqual(s.series().map((x) => [x.labels.comm, x.values.txBytes]), [['a', 1000], ['b', 500], [OTHER, 800]], 'c is not 2x b yet: other');
  s.update([row(1, 'a', 1000), row(2, 'b', 500), row(3, 'c', 2000)], 2);
  s.markExposed();
  assert.deepEqual(s.series().map((x) => [x.labels.comm, x.values.txBytes]), [['a', 1000], ['c', 1200], [OTHER, 800]], 'c (2000) > 2 x b (500): b evicted, c starts from its new bytes');
  assert.equal(s.evictions, 1);
  s.update([row(1, 'a', 1000), row(2, 'b', 900), row(3, 'c', 2000)], 3);
  assert.deepEqual(s.series().map((x) => [x.labels.comm, x.values.txBytes]), [['a', 1000], ['c', 1200], [OTHER, 1200]], 'b\'s new bytes go to other');
  // Evicted between two scrapes: what no scrape read of it goes to [other].
  const t = new ProcessSeries({ top: 1, halfLifeMs: 1e12, hysteresis: 2 });
  t.update([row(1, 'a', 100)], 0);
  t.markExposed(); // a scrape read a = 100
  t.update([row(1, 'a', 130)], 1); // a background refresh: a = 130, never scraped
  t.update([row(1, 'a', 150), row(2, 'b', 1000)], 2);
  assert.deepEqual(t.series().map((x) => [x.labels.comm, x.values.txBytes]), [['b', 1000], [OTHER, 50]], 'a\'s 30 unread bytes and its 20 new ones');
});

test('a total that reads lower (a racing collector) is not counted again; a pid that left and comes back counts from zero', () => {
  const s = new ProcessSeries({ top: 5 });
  s.update([row(1, 'a', 1000)], 0);
  s.update([row(1, 'a', 900)], 1); // dip
  s.update([row(1, 'a', 1100)], 2);
  assert.equal(s.series()[0]!.values.txBytes, 1100, 'max seen, not 1000 + 1100 - 900');
  s.update([], 3); // pid 1 forgotten by the daemon
  s.update([row(1, 'a', 50)], 4); // pid reused by a new process
  assert.equal(s.series()[0]!.values.txBytes, 1150);
  // Reused without a refresh in between: told apart by the start time, when the input has it.
  s.update([row(1, 'a', 80, 0, { startedAt: '2026-12-01T10:00:00Z' })], 5);
  s.update([row(1, 'a', 30, 0, { startedAt: '2026-12-01T10:05:00Z' })], 6);
  assert.equal(s.series()[0]!.values.txBytes, 1150 + 30 + 30);
});

test('unit and container labels, "" when unknown; pid-less rows keep their own identity', () => {
  const s = new ProcessSeries({ top: 5 });
  s.update([row(1, 'nginx', 10, 0, { unit: 'nginx.service' }), row(2, 'nginx', 20, 0, { container: '0123456789ab' }), row(null, '[kernel]', 5), row(null, null, 7)], 0);
  const labels = s.series().map((x) => [x.labels.comm, x.labels.unit, x.labels.container, x.values.txBytes]);
  assert.deepEqual(labels.sort(), [
    ['[kernel]', '', '', 5], ['[other]', '', '', 0], ['[unknown]', '', '', 7], ['nginx', '', '0123456789ab', 20], ['nginx', 'nginx.service', '', 10],
  ]);
});

test('bytes first counted without an owner and later attributed to a pid are counted once', () => {
  const s = new ProcessSeries({ top: 5 });
  const total = () => s.series().reduce((a, x) => a + x.values.txBytes, 0);
  s.update([row(null, null, 500), row(1, 'a', 100)], 0); // 500 unowned
  assert.equal(total(), 600);
  s.update([row(null, null, 0), row(1, 'a', 100 + 500 + 40)], 1); // found: a's flow; a sent 40 more
  assert.equal(total(), 640, 'the 500 moved, only the 40 are new');
  s.update([row(null, null, 70), row(1, 'a', 640)], 2); // new unowned traffic counts again
  assert.equal(total(), 710);
  // Moved bytes that show up a round later are taken back then.
  s.update([row(null, null, 0), row(1, 'a', 640)], 3);
  assert.equal(total(), 710);
  s.update([row(null, null, 0), row(1, 'a', 710)], 4);
  assert.equal(total(), 710);
});
