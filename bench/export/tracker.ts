// SPDX-License-Identifier: Apache-2.0
// The flow-record tracker of the ClickHouse export (daemon/src/export/flow-records.ts) at its
// limit: `--max` tracked flows (1,000,000 by default, the exporter's default), then
// `--closes` close events of new flows, each of which evicts the least recently touched one.
// CPU per close event in this build and, with `--baseline DIR` (another checkout, built),
// in that build, interleaved in one process; medians of `--runs`.
//
//   node build/js/bench/export/tracker.js [--baseline /tmp/base] [--max 1000000] [--closes 200000] [--runs 3]
import Table from 'cli-table3';
import { machine, median, moduleBuilds, numArg, ratioRow } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import type { CloseEventInput } from '../../daemon/src/export/api-types.js';

const MAX = numArg('max', 1_000_000);
const CLOSES = numArg('closes', 200_000);
const RUNS = numArg('runs', 3);
const BASELINE = strArg('baseline');

interface TrackerLike { closed(e: CloseEventInput): unknown; size: number }
type Make = () => TrackerLike;

interface TrackerModule { FlowRecordTracker: new (o: object) => TrackerLike }

const maker = (m: TrackerModule): Make => () => new m.FlowRecordTracker({ host: { hostName: 'bench', machineId: '0'.repeat(32) }, maxTracked: MAX });

function close(i: number): CloseEventInput {
  return {
    at: '2026-12-05T07:00:00.000Z', protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (i % 60_000),
    remoteAddr: `198.18.${Math.floor(i / 60_000) % 256}.${2 + Math.floor(i / 15_360_000)}`, remotePort: 443, interface: 'veth0', pid: 1000 + (i % 600), comm: 'bench', uid: 0,
    attributedBy: 'connect', durationMs: 3, txBytes: 1000, rxBytes: 2000, txPackets: 3, rxPackets: 4, payloadBytesSent: 900, payloadBytesReceived: 1800, flowSeen: true,
  };
}

/** us per close event once the tracker is full. */
function run(make: Make): number {
  const t = make();
  for (let i = 0; i < MAX; i++) t.closed(close(i));
  const t0 = performance.now();
  for (let i = MAX; i < MAX + CLOSES; i++) t.closed(close(i));
  const us = ((performance.now() - t0) * 1000) / CLOSES;
  if (t.size !== MAX) throw new Error(`tracker holds ${t.size}, expected ${MAX}`);
  return us;
}

const builds = (await moduleBuilds<TrackerModule>('daemon/src/export/flow-records.js', BASELINE)).map(([n, m]): [string, Make] => [n, maker(m)]);
const results = builds.map(() => [] as number[]);
for (let r = 0; r < RUNS; r++) builds.forEach(([, make], b) => results[b]!.push(run(make)));

console.log(`bench/export/tracker - ${machine()}`);
console.log(`${MAX} flows tracked, then ${CLOSES} closes of new flows (each evicts the oldest), medians of ${RUNS} runs`);
const table = new Table({ head: ['', ...builds.map(([n]) => n), ...(builds.length > 1 ? ['ratio'] : [])], style: { head: [], border: [] } });
const med = results.map((x) => median(x));
table.push(ratioRow('us of CPU per close event, tracker full', med));
console.log(table.toString());
