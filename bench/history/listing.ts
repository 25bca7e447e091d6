// SPDX-License-Identifier: Apache-2.0
// History's minute listing of the flow table with many idle flows (issues 16, 17): the
// daemon with history on (the product's default), `flows` synthetic open TCP flows in its
// pinned emon_flows (test/helpers/flow-fill.ts: idle, last seen now, kept by the GC), and
// its listing every `interval-s`. Measured over two windows of one interval each: the first
// listing (every flow is new to history in both builds) and the second (the steady state:
// a baseline build lists every flow again; this build only what changed, here nothing).
// Per window: the daemon's CPU (utime+stime, all threads: the writer thread included), its
// RSS (max of 1 s samples), the event loop's worst stall as a client sees it (a request the
// API refuses before any work, every 10 ms: its round trip), and `flows.list {pid}`
// latency (every second, a pid owning `pid-flows` flows). Builds interleaved in one run:
// `--baseline DIR` (another checkout, built) and this one.
//
//   sudo node build/js/bench/history/listing.js --baseline /tmp/base | --no-baseline [--flows 100000,1000000]
//        [--interval-s 60] [--reps 1] [--pid-flows 100] [--max-minutes 40]
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import Table from 'cli-table3';
import { withLab } from '../lib/lab.js';
import { daemonOnce, startDaemon, type TestDaemon } from '../../test/helpers/daemon.js';
import { METHODS } from '../../daemon/src/contract/index.js';
import { countFlows, fillFlows, type FillSpec } from '../../test/helpers/flow-fill.js';
import { baselineDaemonMain, machine, median, numArg, sleep } from '../lib/harness.js';
import { cpuMs, memMiB, strArg } from '../lib/proc.js';
import { announceExternalWrite, loopProbe, timedCalls } from '../lib/daemon-probes.js';

const FLOWS = (strArg('flows') ?? '100000,1000000').split(',').map(Number);
const INTERVAL_S = numArg('interval-s', 60);
const REPS = numArg('reps', 1);
const PID_FLOWS = numArg('pid-flows', 100);
const DEADLINE = Date.now() + numArg('max-minutes', 40) * 60_000;
const BASELINE = strArg('baseline');
const MAP_FLOWS = 2_097_152;
const QUERIED_PID = 3_999_999;
const STALL_TARGET_MS = 10;


interface Window { cpuPct: number; rssMax: number; stallMax: number; stallP99: number; pidMed: number; pidMax: number; pidN: number; note: string }


/** flows.list {pid} every second: latencies in ms. */
function pidProbe(socketPath: string, flows: number): { stop: () => Promise<number[]> } {
  return timedCalls(socketPath, async (c) => {
    const r = await c.call(METHODS.flowsList, { pid: QUERIED_PID });
    if (r.flows.length !== Math.min(flows, PID_FLOWS)) throw new Error(`flows.list {pid}: ${r.flows.length} flows, expected ${PID_FLOWS}`);
  }, (rtt) => 1000 - Math.min(1000, rtt));
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

async function measure(d: TestDaemon, until: number, flows: number): Promise<Window> {
  const c0 = cpuMs(d.pid);
  const t0 = performance.now();
  const loop = loopProbe(d.socketPath);
  const pid = pidProbe(d.socketPath, flows);
  const rss: number[] = [];
  while (Date.now() < until) {
    await sleep(Math.min(1000, until - Date.now()));
    rss.push(memMiB(d.pid).rss);
  }
  const stalls = await loop.stop();
  const pids = await pid.stop();
  const cpu = cpuMs(d.pid) - c0;
  const full = await d.call(METHODS.status);
  const st = full.history;
  const res = (full as { resources?: { heapTotalBytes: number; externalBytes: number } }).resources;
  const l = (st as { listings?: { full: number; changesOnly: number; last: { full: boolean; flows: number; ms: number } | null } } | undefined)?.listings;
  return {
    cpuPct: (100 * cpu) / (performance.now() - t0), rssMax: Math.max(...rss), stallMax: Math.max(...stalls), stallP99: q(stalls, 0.99),
    pidMed: median(pids), pidMax: Math.max(...pids), pidN: pids.length,
    note: `written ${st?.records.written ?? '?'}, pending ${st?.records.pending ?? '?'}, tracked ${st?.openFlowsTracked ?? '?'}` +
      (l ? `; listings ${l.full} full + ${l.changesOnly} changes, last ${l.last ? `${l.last.full ? 'full' : 'changes'} ${l.last.flows} flows in ${l.last.ms} ms` : '-'}` : '') +
      // Where the memory is, as status says (builds that report it).
      (st?.writerHeapBytes !== undefined ? `; writer heap ${mib(st.writerHeapBytes)} MiB, outside it ${mib(st.writerExternalBytes ?? 0)}` : '') +
      (st?.writerCollections ? `, ${st.writerCollections} collections` : '') +
      (st?.engineMemory ? `; DuckDB ${mib(st.engineMemory.usedBytes)} MiB` : '') +
      (res ? `; event loop heap ${mib(res.heapTotalBytes)} MiB, outside it ${mib(res.externalBytes)}` : ''),
  };
}

const mib = (b: number) => (b / 1048576).toFixed(0);

async function main(): Promise<void> {
  // --no-baseline: this build alone (where its memory goes; not a comparison).
  const alone = process.argv.includes('--no-baseline');
  if (!BASELINE && !alone) throw new Error('--baseline DIR: a built checkout to compare with (its build/js/daemon/src/ebpfmon.js)');
  const baseMain = alone ? '' : baselineDaemonMain(BASELINE!);
  const variants = [
    ...(alone ? [] : [{ name: `baseline ${path.basename(path.resolve(BASELINE!))}`, main: baseMain as string | undefined }]),
    { name: 'this build', main: undefined as string | undefined },
  ];
  const rows: Array<{ flows: number; variant: string; rep: number; phase: string; w: Window }> = [];
  const load0 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const t0 = new Date().toISOString();
  await withLab('bench/history-listing', async (lab) => {
    for (const flows of FLOWS) {
      for (let rep = 0; rep < REPS; rep++) {
        for (const v of rep % 2 ? [...variants].reverse() : variants) {
          if (Date.now() > DEADLINE) {
            console.error('deadline reached: stopping');
            return;
          }
          const host = await lab.host(`l${rows.length}`);
          const dir = lab.tmpdir();
          const d = await startDaemon(host, {
            ...(v.main ? { main: v.main } : {}),
            config: { maps: { flows: MAP_FLOWS }, flows: { gcIntervalSec: 10 }, history: { enabled: true, path: dir, snapshotIntervalSec: INTERVAL_S } },
          });
          const started = Date.now(); // the listing timer starts with the daemon: listings at k * interval
          try {
            const mapPath = path.join(d.pinPath, 'maps/emon_flows');
            const spec: FillSpec = { count: flows, owners: 1000, ownerBase: 3_000_000, queriedPid: QUERIED_PID, queriedFlows: PID_FLOWS };
            const tf = performance.now();
            fillFlows(mapPath, spec);
            announceExternalWrite(d.pinPath);
            const present = countFlows(mapPath);
            if (present !== flows) throw new Error(`${present} flows present after writing ${flows}`);
            console.error(`${v.name}, ${flows} flows, rep ${rep + 1}: filled in ${((performance.now() - tf) / 1000).toFixed(1)} s`);
            const I = INTERVAL_S * 1000;
            if (Date.now() > started + I - 5000) throw new Error('the fill took longer than the first interval: use a longer --interval-s');
            await sleep(started + I - 5000 - Date.now());
            for (const [k, phase] of [[1, 'first listing (all new)'], [2, 'second listing (steady)']] as const) {
              const w = await measure(d, started + (k + 1) * I - 5000, flows);
              rows.push({ flows, variant: v.name, rep, phase, w });
              console.error(`  ${phase}: CPU ${w.cpuPct.toFixed(1)}%, RSS max ${w.rssMax.toFixed(0)} MiB, stall max ${w.stallMax.toFixed(0)} ms (p99 ${w.stallP99.toFixed(1)}), flows.list {pid} median ${w.pidMed.toFixed(1)} max ${w.pidMax.toFixed(0)} ms (${w.pidN}); ${w.note}`);
            }
            const hwm = memMiB(d.pid).hwm;
            rows.at(-1)!.w.note += `; VmHWM ${hwm.toFixed(0)} MiB`;
          } finally {
            await d.stop();
            const td = await daemonOnce(host, d.configPath, ['--teardown']);
            if (td.code !== 0) console.error(`teardown failed: ${td.stderr}`);
          }
        }
      }
    }
  });
  const table = new Table({ head: ['flows', 'build', 'window (one interval)', 'CPU % of a core', 'RSS max MiB', 'worst stall ms (p99)', 'flows.list {pid} ms median (max)', 'history status at the end'], style: { head: [], border: [] } });
  for (const r of rows) {
    table.push([r.flows, `${r.variant}${REPS > 1 ? ` #${r.rep + 1}` : ''}`, r.phase, r.w.cpuPct.toFixed(1), r.w.rssMax.toFixed(0), `${r.w.stallMax.toFixed(0)} (${r.w.stallP99.toFixed(1)})`, `${r.w.pidMed.toFixed(1)} (${r.w.pidMax.toFixed(0)})`, r.w.note]);
  }
  const load1 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`\nbench/history/listing - ${machine()}`);
  console.log(`${t0} .. ${new Date().toISOString()}; load average ${load0} at the start, ${load1} at the end; history listing every ${INTERVAL_S} s; idle synthetic open TCP flows, ${PID_FLOWS} of them owned by the queried pid.`);
  console.log(table.toString());
  const steady = rows.filter((r) => r.variant === 'this build' && r.phase.startsWith('second'));
  if (steady.length) console.log(`stall target (no stall over ${STALL_TARGET_MS} ms during a steady listing, this build): ${steady.every((r) => r.w.stallMax <= STALL_TARGET_MS) ? 'met' : 'NOT met'} (worst ${Math.max(...steady.map((r) => r.w.stallMax)).toFixed(0)} ms)`);
}

await main();
