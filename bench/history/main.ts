// SPDX-License-Identifier: Apache-2.0
// Issue 16's embedded history: which engine, measured. SQLite (better-sqlite3) and DuckDB
// (@duckdb/node-api) with the same logical schema, next to a JSON-lines file (the
// baseline: what "just append it" costs), in the same run:
//
//   ingest  closed flows at a steady 10k connections/s through a writer thread (the main
//           thread only batches and posts every 200 ms): CPU of the whole process, split
//           main/writer, minus a run that emits the same flows and drops them; and the
//           highest sustained rate (batches of 5000, as fast as the writer acknowledges)
//   query   `--flows` (10M) closed flows over one day: a day's per-process totals (from the
//           per-minute table, and from the flow records), "what did <comm> talk to between
//           14:00 and 15:00", who talked to a /16, a user's hourly totals; file size per
//           million flows; deleting the oldest third, and the size after writing as much again
//   crash   a child writing at 10k/s with a commit every 200 ms, killed with SIGKILL at a
//           random moment, then reopened: recovery time, integrity check, flows lost
//
//   node build/js/bench/history/main.js [--sections ingest,query,crash] [--flows 10000000]
//        [--rate 10000] [--seconds 8] [--runs 3] [--reps 5] [--kills 3]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { machine, median, numArg, sleep, tempDir } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { Batcher, DuckEngine, SqliteEngine, type Engine } from './engines.js';
import { FlowGen, type FlowSample } from './gen.js';
import { processCpuMs, threadCpuMs } from './threadcpu.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SECTIONS = (strArg('sections') ?? 'ingest,query,crash').split(',');
const FLOWS = numArg('flows', 10_000_000);
const RATE = numArg('rate', 10_000);
const SECONDS = numArg('seconds', 8);
const RUNS = numArg('runs', 3);
const REPS = numArg('reps', 5);
const KILLS = numArg('kills', 3);
const POST_MS = 200;
const DAY0 = Date.UTC(2026, 10, 30); // the day the query section fills
const dir = tempDir('history');

type Kind = 'emit-only' | 'none' | 'jsonl' | 'sqlite' | 'duckdb';
const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

function startWorker(engine: Exclude<Kind, 'emit-only'>, file: string): Promise<Worker> {
  const w = new Worker(path.join(HERE, 'ingest-worker.js'), { workerData: { engine, path: file } });
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('message', () => resolve(w));
  });
}

function stopWorker(w: Worker): Promise<{ rows: number; cpuMs: number; maxWriteMs: number; size: number }> {
  return new Promise((resolve) => {
    w.on('message', (m: { type: string }) => {
      if (m.type === 'stopped') {
        void w.terminate();
        resolve(m as never);
      }
    });
    w.postMessage({ type: 'stop' });
  });
}

function fileFor(kind: Kind, tag: string): string {
  const f = path.join(dir, `${tag}.${kind === 'duckdb' ? 'duckdb' : kind === 'jsonl' ? 'jsonl' : 'db'}`);
  for (const s of ['', '-wal', '-shm', '.wal']) fs.rmSync(f + s, { force: true });
  return f;
}

// --- ingest -------------------------------------------------------------------------------

interface IngestRun { totalPct: number; mainPct: number; writerPct: number; maxWriteMs: number; rows: number; bytesPerFlow: number }

/** Emits RATE flows/s for SECONDS: pushed into a buffer on a 5 ms tick (as a decoded event
 * would be), posted to the writer every POST_MS. */
async function ingestRun(kind: Kind, samples: FlowSample[]): Promise<IngestRun> {
  const w = kind === 'emit-only' ? null : await startWorker(kind, fileFor(kind, `ingest-${kind}`));
  await sleep(200);
  let buf: FlowSample[] = [];
  let emitted = 0;
  const total = RATE * SECONDS;
  const cpu0 = processCpuMs();
  const main0 = threadCpuMs();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    let lastPost = t0;
    const t = setInterval(() => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) * RATE) / 1000));
      for (; emitted < due; emitted++) buf.push(samples[emitted % samples.length]!);
      if (now - lastPost >= POST_MS || emitted >= total) {
        if (w) w.postMessage({ type: 'batch', samples: buf });
        buf = [];
        lastPost = now;
      }
      if (emitted >= total) {
        clearInterval(t);
        resolve();
      }
    }, 5);
  });
  const res = w ? await stopWorker(w) : { rows: total, cpuMs: 0, maxWriteMs: 0, size: 0 };
  const wall = performance.now() - t0;
  const cpu = processCpuMs() - cpu0;
  const main = threadCpuMs() - main0;
  return { totalPct: (100 * cpu) / wall, mainPct: (100 * main) / wall, writerPct: (100 * res.cpuMs) / wall, maxWriteMs: res.maxWriteMs, rows: res.rows, bytesPerFlow: res.size / res.rows };
}

/** Highest sustained rate: batches of 5000, two in flight, as fast as the writer acks. */
async function maxRate(kind: Exclude<Kind, 'emit-only'>, samples: FlowSample[], n: number): Promise<number> {
  const w = await startWorker(kind, fileFor(kind, `max-${kind}`));
  const B = 5000;
  let sent = 0;
  let acked = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const send = () => {
      const s = sent % samples.length;
      w.postMessage({ type: 'batch', samples: samples.slice(s, s + B), ack: true });
      sent += B;
    };
    w.on('message', (m: { type: string }) => {
      if (m.type !== 'ack') return;
      acked += B;
      if (acked >= n) resolve();
      else if (sent < n) send();
    });
    send();
    send();
  });
  const rate = (acked * 1000) / (performance.now() - t0);
  await stopWorker(w);
  return rate;
}

async function ingest(): Promise<void> {
  const gen = new FlowGen(1);
  const samples = Array.from({ length: 50_000 }, (_, i) => gen.next(DAY0 + i));
  const kinds: Kind[] = ['emit-only', 'none', 'jsonl', 'sqlite', 'duckdb'];
  const runs = new Map<Kind, IngestRun[]>(kinds.map((k) => [k, []]));
  for (let r = 0; r < RUNS; r++) for (const k of kinds) runs.get(k)!.push(await ingestRun(k, samples));
  const med = (k: Kind, f: (x: IngestRun) => number) => median(runs.get(k)!.map(f));
  const base = med('emit-only', (x) => x.totalPct);
  const t = new Table({ style: { head: [], border: [] }, head: [`${RATE}/s for ${SECONDS} s (median of ${RUNS})`, 'process CPU %', 'minus emit-only', 'main %', 'writer %', 'longest write ms', 'bytes/flow on disk'] });
  for (const k of kinds) {
    t.push([
      k === 'emit-only' ? 'emit only (baseline)' : k === 'none' ? 'post to writer, drop' : k === 'jsonl' ? 'JSON lines file (baseline)' : k === 'sqlite' ? 'SQLite' : 'DuckDB',
      fmt(med(k, (x) => x.totalPct), 2), k === 'emit-only' ? '' : fmt(med(k, (x) => x.totalPct) - base, 2), fmt(med(k, (x) => x.mainPct), 2), fmt(med(k, (x) => x.writerPct), 2),
      fmt(med(k, (x) => x.maxWriteMs), 1), k === 'emit-only' || k === 'none' ? '' : fmt(med(k, (x) => x.bytesPerFlow), 0),
    ]);
  }
  console.log(t.toString());
  const mt = new Table({ style: { head: [], border: [] }, head: ['highest sustained rate (batches of 5000)', 'flows/s (median)', 'runs'] });
  for (const k of ['none', 'jsonl', 'sqlite', 'duckdb'] as const) {
    const rs: number[] = [];
    for (let r = 0; r < RUNS; r++) rs.push(await maxRate(k, samples, 200_000));
    mt.push([k, fmt(median(rs), 0), rs.map((x) => fmt(x / 1000, 0) + 'k').join(' ')]);
  }
  console.log(mt.toString());
}

// --- query --------------------------------------------------------------------------------

/** Median wall and CPU time (every thread of the process: DuckDB queries run in its own). */
async function timeIt(fn: () => Promise<unknown[]>): Promise<{ ms: number; cpuMs: number; rows: number }> {
  const ms: number[] = [];
  const cpu: number[] = [];
  let rows = 0;
  for (let i = 0; i < REPS; i++) {
    const c0 = processCpuMs();
    const t0 = performance.now();
    rows = (await fn()).length;
    ms.push(performance.now() - t0);
    cpu.push(processCpuMs() - c0);
  }
  return { ms: median(ms), cpuMs: median(cpu), rows };
}

async function fill(db: Engine, gen: FlowGen, batcher: Batcher, n: number, from: number, span: number): Promise<number> {
  const B = 20_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i += B) {
    const batch: FlowSample[] = [];
    for (let k = i; k < Math.min(n, i + B); k++) batch.push(gen.next(from + Math.floor((k * span) / n)));
    await db.insert(batcher.build(batch));
  }
  return (n * 1000) / (performance.now() - t0);
}

async function query(): Promise<void> {
  const lo = Buffer.from([23, 0, 0, 0]);
  const hi = Buffer.from([23, 0, 255, 255]);
  const day = { from: DAY0, to: DAY0 + 86_400_000 };
  const hour = { from: DAY0 + 14 * 3_600_000, to: DAY0 + 15 * 3_600_000 };
  const rows: Record<string, Record<string, string>> = {};
  for (const kind of ['sqlite', 'duckdb'] as const) {
    const file = fileFor(kind, 'query');
    const db = kind === 'sqlite' ? new SqliteEngine(file) : await DuckEngine.open(file, 2);
    const r: Record<string, string> = (rows[db.name] = {});
    const gen = new FlowGen(3);
    const batcher = new Batcher();
    const loadRate = await fill(db, gen, batcher, FLOWS, DAY0, 86_400_000);
    if (kind === 'duckdb') await (db as DuckEngine).close().then(() => {});
    const db2 = kind === 'sqlite' ? db : await DuckEngine.open(file, 2);
    r['bulk load, flows/s'] = fmt(loadRate, 0);
    const size = db2.sizeBytes();
    r['file size per 1M flows, MB'] = fmt(size / (FLOWS / 1e6) / 1e6, 1);
    const q = async (name: string, fn: () => Promise<unknown[]>) => {
      const t = await timeIt(fn);
      r[name] = `${fmt(t.ms, 0)} / ${fmt(t.cpuMs, 0)} cpu (${t.rows} rows)`;
    };
    await q("a day's per-process totals (per-minute table), ms", () => db2.processTotals(day));
    await q("a day's per-process totals (flow records), ms", () => db2.processTotalsFromFlows(day));
    await q('what did firefox-esr talk to, 14:00-15:00, ms', () => db2.remotesOf('firefox-esr', hour));
    await q('who talked to 23.0.0.0/16 that day, ms', () => db2.whoTalkedTo(lo, hi, day));
    await q("uid 1000's hourly totals that day, ms", () => db2.hourly(1000, day));
    const t0 = performance.now();
    await db2.deleteBefore(DAY0 + 8 * 3_600_000);
    r['delete the oldest third, ms'] = fmt(performance.now() - t0, 0);
    r['size after delete, MB'] = fmt(db2.sizeBytes() / 1e6, 0);
    await fill(db2, gen, batcher, Math.floor(FLOWS / 3), DAY0 + 86_400_000, 8 * 3_600_000);
    r['size after writing a third again, MB'] = fmt(db2.sizeBytes() / 1e6, 0);
    r['size before delete, MB'] = fmt(size / 1e6, 0);
    await db2.close();
    for (const s of ['', '-wal', '-shm', '.wal']) fs.rmSync(file + s, { force: true });
  }
  const names = Object.keys(rows);
  const t = new Table({ style: { head: [], border: [] }, head: [`${(FLOWS / 1e6).toFixed(1)}M flows over one day (median of ${REPS}; query times: wall ms / CPU ms)`, ...names] });
  for (const k of Object.keys(rows[names[0]!]!)) t.push([k, ...names.map((n) => rows[n]![k] ?? '')]);
  console.log(t.toString());
}

// --- crash --------------------------------------------------------------------------------

async function crash(): Promise<void> {
  const t = new Table({ style: { head: [], border: [] }, head: [`kill -9 while writing ${RATE}/s, commits every ${POST_MS} ms`, 'reopen ms', 'check', 'flows lost after last commit ack (ms of traffic)', 'committed flows missing'] });
  for (const kind of ['sqlite', 'duckdb'] as const) {
    const reopen: number[] = [];
    const lostMs: number[] = [];
    let checks = '';
    let missing = 0;
    for (let k = 0; k < KILLS; k++) {
      const file = fileFor(kind, `crash-${k}`);
      const child = spawn(process.execPath, [path.join(HERE, 'crash-writer.js'), kind, file, String(RATE), String(POST_MS), String(DAY0)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      while (!out.includes('"started"')) await sleep(20);
      const t0 = performance.now();
      await sleep(2000 + Math.random() * 2000);
      const killedAt = performance.now() - t0;
      process.kill(child.pid!, 'SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const last = out.trim().split('\n').map((l) => JSON.parse(l) as { event: string; committed?: number }).filter((e) => e.event === 'committed').at(-1);
      const o0 = performance.now();
      const db = kind === 'sqlite' ? new SqliteEngine(file) : await DuckEngine.open(file);
      const n = await db.count();
      reopen.push(performance.now() - o0);
      checks += `${await db.check()} `;
      await db.close();
      const emitted = (killedAt * RATE) / 1000;
      lostMs.push(((emitted - n) * 1000) / RATE);
      if (last?.committed !== undefined && n < last.committed) missing += last.committed - n;
    }
    t.push([kind, fmt(median(reopen), 0), checks.trim(), `${fmt(median(lostMs), 0)} (max ${fmt(Math.max(...lostMs), 0)})`, String(missing)]);
  }
  console.log(t.toString());
}

console.log(`bench/history on ${machine()}`);
if (SECTIONS.includes('ingest')) await ingest();
if (SECTIONS.includes('query')) await query();
if (SECTIONS.includes('crash')) await crash();
