// SPDX-License-Identifier: Apache-2.0
// What it costs to give 100,000 flows their remoteGeo with the geo module and the bundled
// database, against a baseline that builds the same enriched flow objects with no lookup:
//   - 100k flows over 5,000 distinct remote addresses (a busy desktop or server: many flows
//     to the same hosts) and over 100,000 distinct addresses (worst case: every lookup
//     misses a 65,536-entry cache the first time, and some again);
//   - with the LRU cache (cold: first pass; warm: the same flows one second later, which is
//     what a UI polling every second or the daemon answering flows.list repeatedly sees),
//     and without it (cacheSize 1);
//   - the raw maxmind reader (Reader.get) for scale, and opening the database (time, RSS).
// Medians of --runs (default 5) runs; figures vary 20-30% on the shared 2-core machines.
//
//   node build/js/bench/geo/main.js [--runs N] [--flows N]
import { performance } from 'node:perf_hooks';
import maxmind from 'maxmind';
import { GeoResolver } from '../../daemon/src/geo/resolver.js';
import { bundledPath, DEFAULT_DATABASES } from '../../daemon/src/geo/databases.js';
import { machine, median, numArg } from '../lib/harness.js';

const RUNS = numArg('runs', 5);
const FLOWS = numArg('flows', 100_000);

let seed = 0x2545f491;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
};
function addresses(distinct: number): string[] {
  const pool = Array.from({ length: distinct }, () => {
    const a = rnd();
    // mostly IPv4, one in five IPv6 (global unicast)
    return a % 5 === 0 ? `2a0${a % 10}:${((a >>> 8) & 0xffff).toString(16)}:${(rnd() & 0xffff).toString(16)}::${(rnd() & 0xffff).toString(16)}` : `${1 + ((a >>> 24) % 223)}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${1 + (a & 127)}`;
  });
  return Array.from({ length: FLOWS }, (_, i) => pool[i % distinct]!);
}

interface FlowLike { remoteAddr: string; txBytes: number }
const flowsOf = (addrs: string[]): FlowLike[] => addrs.map((remoteAddr, i) => ({ remoteAddr, txBytes: i }));

function timeMs(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const rssMiB = () => process.memoryUsage().rss / 2 ** 20;
const rss0 = rssMiB();
const tOpen = performance.now();
const probe = await GeoResolver.open({});
const openMs = performance.now() - tOpen;
const rssOpen = rssMiB() - rss0;
const file = bundledPath(DEFAULT_DATABASES[0]!);
const raw = await maxmind.open(file);

const rows: Array<[string, string, number]> = [];
for (const distinct of [5_000, FLOWS]) {
  const flows = flowsOf(addresses(distinct));
  const base: number[] = [];
  const cold: number[] = [];
  const warm: number[] = [];
  const nocache: number[] = [];
  const reader: number[] = [];
  let sink = 0;
  for (let r = 0; r < RUNS; r++) {
    base.push(timeMs(() => {
      const out = flows.map((f) => ({ ...f, remoteGeo: null }));
      sink += out.length;
    }));
    const cached = await GeoResolver.open({});
    cold.push(timeMs(() => {
      const out = flows.map((f) => ({ ...f, remoteGeo: cached.lookup(f.remoteAddr) }));
      sink += out.length;
    }));
    warm.push(timeMs(() => {
      const out = flows.map((f) => ({ ...f, remoteGeo: cached.lookup(f.remoteAddr) }));
      sink += out.length;
    }));
    const uncached = await GeoResolver.open({ cacheSize: 1 });
    nocache.push(timeMs(() => {
      const out = flows.map((f) => ({ ...f, remoteGeo: uncached.lookup(f.remoteAddr) }));
      sink += out.length;
    }));
    reader.push(timeMs(() => {
      for (const f of flows) if (raw.get(f.remoteAddr)) sink++;
    }));
  }
  if (sink < 0) console.log(sink);
  const tag = `${FLOWS / 1000}k flows, ${distinct.toLocaleString('en')} addresses`;
  rows.push([tag, 'baseline: build enriched objects, no lookup', median(base)]);
  rows.push([tag, 'geo, LRU cache, cold (first pass)', median(cold)]);
  rows.push([tag, 'geo, LRU cache, warm (next poll)', median(warm)]);
  rows.push([tag, 'geo, no cache (cacheSize 1)', median(nocache)]);
  rows.push([tag, 'maxmind Reader.get alone (no label, no merge)', median(reader)]);
}

console.log(`bench/geo: ${machine()}`);
console.log(`database: ${probe.databases()[0]!.databaseType}, ${(probe.databases()[0]!.sizeBytes / 2 ** 20).toFixed(1)} MiB, built ${probe.databases()[0]!.buildEpoch}; open ${openMs.toFixed(0)} ms, RSS +${rssOpen.toFixed(0)} MiB; medians of ${RUNS} runs\n`);
const w = Math.max(...rows.map((r) => r[0].length));
const w2 = Math.max(...rows.map((r) => r[1].length));
console.log(`${'flows'.padEnd(w)}  ${'what'.padEnd(w2)}  ${'total ms'.padStart(9)}  ${'ns/flow'.padStart(8)}  ${'x baseline'.padStart(10)}`);
for (let i = 0; i < rows.length; i++) {
  const [tag, what, ms] = rows[i]!;
  const baseMs = rows[Math.floor(i / 5) * 5]![2];
  console.log(`${tag.padEnd(w)}  ${what.padEnd(w2)}  ${ms.toFixed(1).padStart(9)}  ${((ms * 1e6) / FLOWS).toFixed(0).padStart(8)}  ${(ms / baseMs).toFixed(1).padStart(10)}`);
}
