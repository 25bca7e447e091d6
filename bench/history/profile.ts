// SPDX-License-Identifier: Apache-2.0
// Where history's CPU goes per closed flow: feeds ebpfmon's History `--rate` closes/s (the
// bench's generator, stamped as fresh close events) for `--seconds`, and splits the
// process's CPU by thread from /proc/self/task/*/stat: the event loop (the main thread), the
// threads that existed before History started (V8's GC helpers, which both isolates share),
// and the threads it started (its writer thread, the largest of them; DuckDB's and libuv's).
// Run it under `node --cpu-prof` to profile both isolates (one .cpuprofile each).
//
//   node [--cpu-prof --cpu-prof-dir D] build/js/bench/history/profile.js [--rate 10000]
//        [--seconds 6] [--procs 600] [--emit-only] (the harness alone) [--all] (every flow in detail) [--budget N] (detail flows/s) [--burst N]
//        [--flush-ms 500] (how often batches go to the writer: each is one transaction, so this
//        measures the cost per transaction; the daemon's 500 ms is what its kill -9 bound needs)
import fs from 'node:fs';
import { numArg, sleep, tempDir } from '../lib/harness.js';
import { FlowGen } from './gen.js';
import { schedstat } from '../lib/proc.js';
import { History } from '../../daemon/src/history/history.js';

const RATE = numArg('rate', 10_000);
const SECONDS = numArg('seconds', 6);
const ALL = process.argv.includes('--all');
const EMIT_ONLY = process.argv.includes('--emit-only');
const BUDGET = numArg('budget', 1000);
const BURST = numArg('burst', 10_000);
const FLUSH_MS = numArg('flush-ms', 500);

/** CPU time of each thread so far, in ms (schedstat's nanoseconds: stat's utime+stime come
 * in ticks, too coarse for the few hundred ms a run of a few seconds gives a thread). */
function tasks(): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of fs.readdirSync('/proc/self/task')) {
    const s = schedstat(`/proc/self/task/${t}/schedstat`);
    if (s) m.set(Number(t), s.cpuMs);
  }
  return m;
}

const before = tasks();
const dir = tempDir('history-profile');
const h = EMIT_ONLY ? null : History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, flushMs: FLUSH_MS, ...(ALL ? { accountant: { detailPerSec: 1e9, detailBurst: 1e9 } } : { detailFlowsPerSec: BUDGET, accountant: { detailBurst: BURST } }) });
await sleep(1500);
const gen = new FlowGen(100, numArg('procs', 600));
const total = RATE * SECONDS;
const samples = Array.from({ length: total }, (_, i) => gen.next(i));
const t0cpu = tasks();
const u0 = process.cpuUsage();
const t0 = performance.now();
let emitted = 0;
const sink: unknown[] = [];
await new Promise<void>((resolve) => {
  const t = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * RATE) / 1000));
    const wall = Date.now();
    for (; emitted < due; emitted++) {
      const s = samples[emitted]!;
      s.firstMs = wall - (s.lastMs - s.firstMs);
      s.lastMs = s.closedMs = wall;
      if (h) h.recordClose(s, wall);
      else sink.push(s);
      if (sink.length > 10_000) sink.length = 0;
    }
    if (emitted >= total) {
      clearInterval(t);
      resolve();
    }
  }, 5);
});
await h?.flush();
const wall = performance.now() - t0;
const u = process.cpuUsage(u0);
const t1 = tasks();
const st = h?.status();
await h?.stop();


const rows: Array<[string, number]> = [];
let gcHelpers = 0;
let started: Array<[number, number]> = [];
for (const [tid, ms] of t1) {
  const d = ms - (t0cpu.get(tid) ?? 0);
  if (tid === process.pid) rows.push(['event loop (main thread)', d]);
  else if (before.has(tid)) gcHelpers += d;
  else started.push([tid, d]);
}
started = started.sort((a, b) => b[1] - a[1]);
// Threads that existed before History started: V8's platform workers (GC helpers, created at
// start: the lowest tids after the main thread) and libuv's pool (created by the module
// loader's first async read: the next four), where DuckDB's node-api runs its calls
// (appender flush, BEGIN/COMMIT).
const pre = [...before.keys()].filter((t) => t !== process.pid).sort((a, b) => a - b);
const v8 = pre.slice(0, 4);
const uv = pre.slice(4);
const sumOf = (ts: number[]) => ts.reduce((a, t) => a + (t1.get(t) ?? 0) - (t0cpu.get(t) ?? 0), 0);
rows.push(['V8 platform threads (GC helpers), the 4 first', sumOf(v8)]);
rows.push([`libuv pool (DuckDB calls), the ${uv.length} next`, sumOf(uv)]);
void gcHelpers;
if (started[0]) rows.push([`writer thread (tid ${started[0][0]}, the busiest started)`, started[0][1]]);
rows.push(['other threads started by history (DuckDB, libuv)', started.slice(1).reduce((a, b) => a + b[1], 0)]);
const proc = (u.user + u.system) / 1000;
console.log(`history profile: ${RATE}/s for ${SECONDS} s (${total} flows), ${EMIT_ONLY ? 'emit only (no history)' : ALL ? "every flow in detail" : `detail budget ${BUDGET}/s, burst ${BURST}`}, a batch every ${FLUSH_MS} ms; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
if (st) console.log(`records written ${st.records.written}, rolled up ${st.records.rolledUp}, dropped ${st.records.dropped}, lagMs at end ${st.records.lagMs}`);
for (const [name, ms] of rows) console.log(`${name.padEnd(56)} ${ms.toFixed(0).padStart(6)} ms  ${((100 * ms) / wall).toFixed(2).padStart(6)} % of a core  ${((1000 * ms) / total).toFixed(2).padStart(6)} us/flow`);
console.log(`${'process (getrusage)'.padEnd(56)} ${proc.toFixed(0).padStart(6)} ms  ${((100 * proc) / wall).toFixed(2).padStart(6)} % of a core  ${((1000 * proc) / total).toFixed(2).padStart(6)} us/flow`);
