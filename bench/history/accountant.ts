// SPDX-License-Identifier: Apache-2.0
// The history writer's accountant alone (no thread, no store): CPU per close event kept in
// detail, from the first close to well past `maxTracked` tracked flows (65,536 by default),
// where every close evicts the oldest closed flow. This build's accountant and, with
// `--baseline DIR` (another checkout, built), that build's, in the same process, interleaved
// run by run; medians of `--runs`. Closes: distinct tuples, 600 processes, 10 per ms of
// close time, drained every 1,000 closes as the writer does per batch; once through the
// general path (close()), once through the writer's fast path for closes of flows it does
// not track (closeUntracked(), what the daemon's writer thread calls for each close event;
// the general path only for what it declines). Then listings: three
// full listings of `--listing-flows` open flows whose counts grow between them (each a record
// and an open row per flow), CPU per listed flow (a first listing of a million-flow table is
// the daemon's worst minute: docs/history.md "Listings").
//
//   node build/js/bench/history/accountant.js [--baseline /tmp/base] [--closes 300000]
//        [--listing-flows 300000] [--runs 3]
import Table from 'cli-table3';
import { machine, median, moduleBuilds, numArg, ratioRow } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import type { FlowObservation } from '../../daemon/src/history/types.js';

const CLOSES = numArg('closes', 300_000);
const RUNS = numArg('runs', 3);
const SEGMENT = 50_000;
const LISTING_FLOWS = numArg('listing-flows', 300_000);
const BASELINE = strArg('baseline');

interface AccountantLike {
  close(o: FlowObservation, now: number): void;
  closeUntracked(hash: number, pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null,
    protoName: string, family: 4 | 6, laddr: string, lport: number | null, raddr: string, rport: number | null,
    iface: string | null, direction: string | null, how: string | null, name: string | null, attrs: string | null,
    at: number, firstMs: number, tx: number, rx: number, txp: number, rxp: number, now: number): boolean;
  listed(o: FlowObservation, now: number, listingStart: number, full?: boolean): void;
  endListing(listingStart: number, now: number, full?: boolean): void;
  drain(): unknown;
}
type Make = () => AccountantLike;

interface AccountantModule {
  Accountant: new (ids: unknown, opts: object) => AccountantLike;
  flowHash(o: FlowObservation): number;
  RecordIds: new () => unknown;
  DEFAULT_ACCOUNTANT_OPTIONS: object;
}

interface Build {
  make: Make;
  flowHash: (o: FlowObservation) => number;
}
const maker = (m: AccountantModule): Build => ({
  make: () => new m.Accountant(new m.RecordIds(), { ...m.DEFAULT_ACCOUNTANT_OPTIONS, detailPerSec: 1e9, detailBurst: 1e9 }),
  flowHash: m.flowHash,
});

/** Open flow i at listing k: counts grow by k. */
function openFlow(i: number, k: number, base: number): FlowObservation {
  return { ...observation(i, base), firstMs: base, lastMs: base + k, closedMs: null, txBytes: 1000 + k, rxBytes: 2000 + k, txPackets: 3 + k, rxPackets: 4 + k };
}

/** us per listed flow in each of three full listings. */
function listings(make: Make): number[] {
  const a = make();
  const base = Date.now() - 300_000;
  const out: number[] = [];
  const flows = Array.from({ length: LISTING_FLOWS }, (_, i) => i);
  for (let k = 0; k < 3; k++) {
    const start = base + 1000 + k * 60_000;
    const obs = flows.map((i) => openFlow(i, k, base));
    const t = performance.now();
    for (const o of obs) a.listed(o, start + 10, start, true);
    a.endListing(start, start + 20, true);
    a.drain();
    out.push(((performance.now() - t) * 1000) / LISTING_FLOWS);
  }
  return out;
}

function observation(i: number, base: number): FlowObservation {
  const t = base + i / 10;
  return {
    proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (i % 60_000), remoteAddr: `198.18.${Math.floor(i / 60_000)}.2`, remotePort: 443,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 1000 + (i % 600), comm: `c${i % 600}`, uid: 0, exe: '/usr/bin/c', cgroupId: null,
    firstMs: t - 3, lastMs: t, closedMs: t, txBytes: i + 1000, rxBytes: 2 * i, txPackets: 3, rxPackets: 4,
  };
}

/** us per close in each segment of SEGMENT closes; `fast`: through closeUntracked() (the
 * observation and its hash made before the clock starts, as the writer reads them from the
 * packed row). */
function run({ make, flowHash }: Build, fast: boolean): number[] {
  const a = make();
  const base = Date.now();
  const out: number[] = [];
  const obs = fast ? Array.from({ length: SEGMENT }, (_, i) => observation(i, base)) : [];
  const hashes = obs.map((o) => flowHash(o));
  let t = performance.now();
  for (let i = 0; i < CLOSES; i++) {
    if (fast && i % SEGMENT === 0 && i > 0) {
      const pause = performance.now();
      for (let j = 0; j < SEGMENT; j++) {
        obs[j] = observation(i + j, base);
        hashes[j] = flowHash(obs[j]!);
      }
      t += performance.now() - pause;
    }
    const now = base + i / 10;
    if (fast) {
      const o = obs[i % SEGMENT]!;
      if (!a.closeUntracked(hashes[i % SEGMENT]!, o.pid, o.comm, o.uid, o.exe, o.cgroupId, o.unit ?? null, o.proto, 4, o.localAddr, o.localPort, o.remoteAddr, o.remotePort,
        o.interface, o.direction, o.attributedBy, null, null, o.closedMs!, o.firstMs, o.txBytes, o.rxBytes, o.txPackets, o.rxPackets, now)) a.close(o, now);
    } else {
      a.close(observation(i, base), now);
    }
    if (i % 1000 === 999) a.drain();
    if ((i + 1) % SEGMENT === 0) {
      const now = performance.now();
      out.push(((now - t) * 1000) / SEGMENT);
      t = now;
    }
  }
  return out;
}

const builds = (await moduleBuilds<AccountantModule>('daemon/src/history/accountant.js', BASELINE)).map(([n, m]): [string, Build] => [n, maker(m)]);
const results = builds.map(() => [] as number[][]);
const fastResults = builds.map(() => [] as number[][]);
const listed = builds.map(() => [] as number[][]);
for (let r = 0; r < RUNS; r++) {
  builds.forEach(([, b], i) => results[i]!.push(run(b, false)));
  builds.forEach(([, b], i) => fastResults[i]!.push(run(b, true)));
  builds.forEach(([, b], i) => listed[i]!.push(listings(b.make)));
}

console.log(`bench/history/accountant - ${machine()}`);
console.log(`${CLOSES} closes in detail (distinct tuples, 600 processes), maxTracked ${65_536} (the default), medians of ${RUNS} runs, us of CPU per close`);
for (const [title, res] of [['general path (close())', results], ['fast path (closeUntracked(), as the writer thread calls it)', fastResults]] as const) {
  const table = new Table({ head: [`closes, ${title}`, ...builds.map(([n]) => n), ...(builds.length > 1 ? ['ratio'] : [])], style: { head: [], border: [] } });
  for (let s = 0; s < CLOSES / SEGMENT; s++) {
    const med = res.map((runs) => median(runs.map((x) => x[s]!)));
    table.push(ratioRow(`${s * SEGMENT + 1}-${(s + 1) * SEGMENT}`, med));
  }
  console.log(table.toString());
}
const lt = new Table({ head: [`full listing of ${LISTING_FLOWS} open flows, us per flow`, ...builds.map(([n]) => n), ...(builds.length > 1 ? ['ratio'] : [])], style: { head: [], border: [] } });
for (let k = 0; k < 3; k++) {
  const med = listed.map((runs) => median(runs.map((x) => x[k]!)));
  lt.push(ratioRow(k === 0 ? 'first (every flow new)' : `then (counts grew), #${k + 1}`, med));
}
console.log(lt.toString());
