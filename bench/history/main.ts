// SPDX-License-Identifier: Apache-2.0
// Issue 16's embedded history, measured: SQLite (better-sqlite3) and DuckDB (@duckdb/node-api)
// with the same logical schema, next to a JSON-lines file (the baseline: what "just append
// it" costs) and to ebpfmon's own history module (DuckDB, daemon/src/history), in one run:
//
//   ingest  closed flows at a steady `--rate` (10k connections/s) for `--seconds`: the event
//           loop takes each flow as a decoded event would arrive and hands batches to a
//           writer thread. Process CPU (all threads) minus a run that only emits the flows;
//           the event loop's share; and the highest sustained rate of each raw engine
//   query   `--flows` (10M) closed flows over one day, generated inside each database (see
//           fill.ts): a day's per-process totals, "what did firefox-esr talk to between
//           14:00 and 15:00", who talked to a /16 that day, a user's hourly totals, one
//           process's flows; bytes per million flows; making room for a third more
//   crash   a child writing at `--rate`, killed with SIGKILL at a random moment, reopened:
//           time to reopen, integrity, flows lost (as milliseconds of traffic)
//   handoff the event loop's share alone: handing 100,000 flows to a thread packed
//           (history's pack.ts) or as objects (structured clone), CPU per flow
//
//   maxrate the highest close rate history keeps up with: `--seconds` at each of 10k, 20k,
//           40k, 80k, 160k closes/s (default budget), the writer's lag polled every 100 ms;
//           kept up = lag never over 500 ms and nothing dropped (a kill -9 loses what waits
//           in the event loop's buffer, up to 500 ms, plus what the writer has not written:
//           the 1 s bound holds while the lag stays under 500 ms)
//
//   node build/js/bench/history/main.js [--sections ingest,query,crash,handoff,maxrate] [--flows 10000000]
//        [--rate 10000] [--seconds 8] [--runs 3] [--reps 5] [--kills 3]
//        [--kinds emit-only,history,history-nosync,history-all,history-none] (ingest: which rows, default all) [--procs 600]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { DuckDBInstance } from '@duckdb/node-api';
import { machine, median, numArg, sleep, tempDir } from '../lib/harness.js';
import { memMiB, strArg } from '../lib/proc.js';
import { SqliteEngine, type Engine } from './engines.js';
import { FlowGen, type FlowSample } from './gen.js';
import { flowSelect, procRows, STORE_LABELS } from './fill.js';
import { processCpuMs, threadCpuMs } from './threadcpu.js';
import { History } from '../../daemon/src/history/history.js';
import { DEFAULT_ACCOUNTANT_OPTIONS } from '../../daemon/src/history/accountant.js';
import { HistoryStore, MINUTES_DDL, RECORDS_DDL } from '../../daemon/src/history/store.js';
import { HistoryWriter } from '../../daemon/src/history/writer.js';
import { parseHistoryQuery } from '../../daemon/src/history/query.js';
import type { HistoryQuery } from '../../daemon/src/history/types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SECTIONS = (strArg('sections') ?? 'ingest,maxrate,query,crash,handoff').split(',');
const FLOWS = numArg('flows', 10_000_000);
const RATE = numArg('rate', 10_000);
const SECONDS = numArg('seconds', 8);
const RUNS = numArg('runs', 3);
/** Processes the generator draws closes from (Zipf-like: a few take most). */
const PROCS = numArg('procs', 600);
const REPS = numArg('reps', 5);
const KILLS = numArg('kills', 3);
const POST_MS = 200;
const DAY = 86_400_000;
const DAY0 = Date.UTC(2026, 10, 30); // the day the query section fills
const GIB = 1 << 30;
const dir = tempDir('history');
const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const table = (head: string[]) => new Table({ style: { head: [], border: [] }, head });

type Raw = 'none' | 'jsonl' | 'sqlite' | 'duckdb';
type Kind = 'emit-only' | Raw | 'history' | 'history-all' | 'history-none' | 'history-nosync';
const LABEL: Record<Kind, string> = {
  'emit-only': 'emit only (baseline)',
  none: 'post objects to a thread, drop them',
  jsonl: 'JSON lines file (baseline)',
  sqlite: 'SQLite, a row per flow',
  duckdb: 'DuckDB, a row per flow',
  history: `ebpfmon history (DuckDB, default detail budget ${DEFAULT_ACCOUNTANT_OPTIONS.detailPerSec}/s, burst ${DEFAULT_ACCOUNTANT_OPTIONS.detailBurst})`,
  'history-all': 'ebpfmon history (DuckDB, every flow in detail)',
  'history-none': 'ebpfmon history (DuckDB, no flow in detail: budget 0)',
  'history-nosync': 'ebpfmon history, default budget, journal not flushed (history.journalSync false)',
};

function fresh(tag: string): string {
  const p = path.join(dir, tag);
  fs.rmSync(p, { recursive: true, force: true });
  for (const s of ['-wal', '-shm', '.wal']) fs.rmSync(p + s, { force: true });
  return p;
}

function startWorker(engine: Raw, file: string): Promise<Worker> {
  const w = new Worker(path.join(HERE, 'ingest-worker.js'), { workerData: { engine, path: file } });
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('message', () => resolve(w));
  });
}

function stopWorker(w: Worker): Promise<{ rows: number; size: number; maxWriteMs: number }> {
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

// --- ingest -------------------------------------------------------------------------------

interface IngestRun { totalPct: number; mainPct: number; bytesPerFlow: number; records: number; maxWriteMs: number }

/** RATE flows/s for SECONDS on a 5 ms tick, each stamped with the current time as a fresh
 * close event would be; raw engines get a batch every POST_MS, history packs them. */
async function ingestRun(kind: Kind, samples: FlowSample[]): Promise<IngestRun> {
  if (process.env.BENCH_TRACE) console.error(`ingest ${kind}`);
  const file = fresh(`ingest-${kind}${kind === 'duckdb' ? '.duckdb' : ''}`);
  const w = kind === 'emit-only' || kind.startsWith('history') ? null : await startWorker(kind as Raw, file);
  const budget = kind === 'history-all' ? { detailPerSec: 1e9, detailBurst: 1e9 } : kind === 'history-none' ? { detailPerSec: 1e-9, detailBurst: 0 } : {};
  const h = kind.startsWith('history')
    ? History.start({ dir: file, maxBytes: GIB, retentionDays: 30, accountant: budget, journalSync: kind !== 'history-nosync' })
    : null;
  await sleep(kind.startsWith('history') ? 1500 : 200); // the database opens in the background
  let buf: FlowSample[] = [];
  const sink: FlowSample[] = [];
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
      const wall = Date.now();
      for (; emitted < due; emitted++) {
        const s = samples[emitted]!;
        s.firstMs = wall - (s.lastMs - s.firstMs);
        s.lastMs = s.closedMs = wall;
        if (h) h.recordClose(s, wall);
        else if (w) buf.push(s);
        else sink.push(s);
      }
      if (w && (now - lastPost >= POST_MS || emitted >= total)) {
        w.postMessage({ type: 'batch', samples: buf });
        buf = [];
        lastPost = now;
      }
      if (sink.length > 10_000) sink.length = 0;
      if (emitted >= total) {
        clearInterval(t);
        resolve();
      }
    }, 5);
  });
  let res = { rows: total, size: 0, maxWriteMs: 0 };
  if (w) res = await stopWorker(w);
  if (h) {
    await h.flush();
    const st = h.status();
    res = { rows: st.records.written, size: 0, maxWriteMs: st.lastWriteMs ?? 0 };
  }
  const wall = performance.now() - t0;
  const cpu = processCpuMs() - cpu0;
  const main = threadCpuMs() - main0;
  if (h) {
    await h.stop();
    res.size = fs.statSync(path.join(file, 'history.duckdb')).size;
  }
  return { totalPct: (100 * cpu) / wall, mainPct: (100 * main) / wall, bytesPerFlow: res.size / total, records: res.rows, maxWriteMs: res.maxWriteMs };
}

/** Highest sustained rate: batches of 5000, two in flight, as fast as the writer acks. */
async function maxRate(kind: Raw, samples: FlowSample[], n: number): Promise<number> {
  const w = await startWorker(kind, fresh(`max-${kind}${kind === 'duckdb' ? '.duckdb' : ''}`));
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
  const all: Kind[] = ['emit-only', 'none', 'jsonl', 'sqlite', 'duckdb', 'history', 'history-nosync', 'history-all', 'history-none'];
  const only = strArg('kinds')?.split(',');
  const kinds = only ? all.filter((k) => only.includes(k)) : all;
  const runs = new Map<Kind, IngestRun[]>(kinds.map((k) => [k, []]));
  for (let r = 0; r < RUNS; r++) {
    for (const k of kinds) {
      const gen = new FlowGen(100 + r, PROCS);
      const samples = Array.from({ length: RATE * SECONDS }, (_, i) => gen.next(DAY0 + i));
      runs.get(k)!.push(await ingestRun(k, samples));
    }
  }
  const med = (k: Kind, f: (x: IngestRun) => number) => median(runs.get(k)!.map(f));
  const base = med('emit-only', (x) => x.totalPct);
  const t = table([`${RATE} closed flows/s of ${PROCS} processes for ${SECONDS} s (median of ${RUNS})`, 'process CPU, % of a core', 'minus emit-only', 'event loop %', 'records written', 'longest write ms', 'bytes/flow on disk']);
  for (const k of kinds) {
    t.push([
      LABEL[k], fmt(med(k, (x) => x.totalPct), 2), k === 'emit-only' ? '' : fmt(med(k, (x) => x.totalPct) - base, 2), fmt(med(k, (x) => x.mainPct), 2),
      k === 'emit-only' || k === 'none' ? '' : fmt(med(k, (x) => x.records), 0), k === 'emit-only' || k === 'none' || k === 'jsonl' ? '' : fmt(med(k, (x) => x.maxWriteMs), 0),
      ['emit-only', 'none'].includes(k) ? '' : fmt(med(k, (x) => x.bytesPerFlow), 0),
    ]);
  }
  console.log(t.toString());
  if (!kinds.some((k) => ['none', 'jsonl', 'sqlite', 'duckdb'].includes(k))) return;
  const gen = new FlowGen(7);
  const samples = Array.from({ length: 50_000 }, (_, i) => gen.next(DAY0 + i));
  const mt = table(['highest sustained rate, a row per flow (batches of 5000)', 'flows/s (median)', 'runs']);
  for (const k of ['none', 'jsonl', 'sqlite', 'duckdb'] as const) {
    const rs: number[] = [];
    for (let r = 0; r < RUNS; r++) rs.push(await maxRate(k, samples, 200_000));
    mt.push([LABEL[k], fmt(median(rs), 0), rs.map((x) => `${fmt(x / 1000, 0)}k`).join(' ')]);
  }
  console.log(mt.toString());
}

// --- maxrate -------------------------------------------------------------------------------

/** History (default budget) fed `rate` closes/s for SECONDS: the writer's largest lag seen
 * (status polled every 100 ms), what it dropped, and the process CPU. */
async function historyAt(rate: number): Promise<{ maxLagMs: number; dropped: number; cpuPct: number; flushMs: number }> {
  const file = fresh(`maxrate-${rate}`);
  const h = History.start({ dir: file, maxBytes: GIB, retentionDays: 30, statusMs: 100 });
  await sleep(1500);
  const gen = new FlowGen(3);
  const samples = Array.from({ length: Math.min(rate * SECONDS, 400_000) }, (_, i) => gen.next(DAY0 + i));
  const total = rate * SECONDS;
  let emitted = 0;
  let maxLagMs = 0;
  const cpu0 = processCpuMs();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
      const wall = Date.now();
      for (; emitted < due; emitted++) {
        const s = samples[emitted % samples.length]!;
        s.firstMs = wall - (s.lastMs - s.firstMs);
        s.lastMs = s.closedMs = wall;
        h.recordClose(s, wall);
      }
      maxLagMs = Math.max(maxLagMs, h.status().records.lagMs);
      if (emitted >= total) {
        clearInterval(t);
        resolve();
      }
    }, 5);
  });
  const f0 = performance.now();
  await h.flush();
  const flushMs = performance.now() - f0;
  const cpuPct = (100 * (processCpuMs() - cpu0)) / (performance.now() - t0);
  const st = h.status();
  await h.stop();
  // The lag in status comes with the writer's status messages, which a saturated writer sends
  // late: the final flush (everything fed until written) bounds the lag at the end as well.
  return { maxLagMs: Math.max(maxLagMs, st.records.lagMs, flushMs), dropped: st.records.dropped, cpuPct, flushMs };
}

async function maxrate(): Promise<void> {
  const t = table([`history, default budget, ${SECONDS} s at each rate (median of ${RUNS})`, 'process CPU, % of a core', 'largest lag ms', 'final flush ms', 'dropped', 'kept up (lag < 500 ms)']);
  let best = 0;
  for (const rate of [10_000, 20_000, 40_000, 80_000, 160_000]) {
    const rs = [];
    for (let r = 0; r < RUNS; r++) rs.push(await historyAt(rate));
    const lag = median(rs.map((x) => x.maxLagMs));
    const dropped = median(rs.map((x) => x.dropped));
    const ok = lag < 500 && dropped === 0;
    if (ok && rate > best) best = rate;
    t.push([`${rate / 1000}k closes/s`, fmt(median(rs.map((x) => x.cpuPct)), 2), `${fmt(lag, 0)} (${rs.map((x) => fmt(x.maxLagMs, 0)).join(' ')})`, fmt(median(rs.map((x) => x.flushMs)), 0), fmt(dropped, 0), ok ? 'yes' : 'no']);
    if (!ok && lag > 5000) break; // far behind: higher rates only fall further
  }
  console.log(t.toString());
  console.log(`highest rate kept up with: ${best / 1000}k closes/s`);
}

// --- query --------------------------------------------------------------------------------

async function timeIt(fn: () => Promise<unknown>): Promise<string> {
  const ms: number[] = [];
  const cpu: number[] = [];
  let rows = 0;
  for (let i = 0; i < REPS; i++) {
    const c0 = processCpuMs();
    const t0 = performance.now();
    const r = await fn();
    ms.push(performance.now() - t0);
    cpu.push(processCpuMs() - c0);
    rows = Array.isArray(r) ? r.length : ((r as { groups?: unknown[]; flows?: unknown[] }).groups ?? (r as { flows?: unknown[] }).flows ?? []).length;
  }
  return `${fmt(median(ms), 0)} / ${fmt(median(cpu), 0)} (${rows} rows)`;
}

const RECORD_COLS = ['id', 'flow', 'kind', 'conns', 'proc', 'proto', 'family', 'laddr4', 'laddr6', 'lport', 'raddr4', 'raddr6', 'rport', 'iface', 'dir', 'how', 'first_ms', 'end_ms', 'tx_bytes', 'rx_bytes', 'tx_packets', 'rx_packets', 'name', 'attrs'];
const SQLITE_COLS = ['id', 'flow', 'proc', 'first_ms', 'end_ms', 'kind', 'conns', 'proto', 'family', 'laddr', 'lport', 'raddr', 'rport', 'iface', 'dir', 'how', 'tx_bytes', 'rx_bytes', 'tx_packets', 'rx_packets', 'name', 'attrs'];
const CHUNK = 1_000_000;

async function fillSqlite(db: SqliteEngine, n: number, day0: number, offset = 0): Promise<number> {
  const t0 = performance.now();
  if (offset === 0) db.exec(`INSERT INTO procs VALUES ${procRows().map((p) => `(${p.id}, ${p.pid}, '${p.comm}', ${p.uid}, '${p.exe}', '${p.cgroupId}', NULL)`).join(', ')}`);
  for (let i = 0; i < n; i += CHUNK) db.exec(`BEGIN; INSERT INTO records ${flowSelect('sqlite', SQLITE_COLS, i, Math.min(n, i + CHUNK), n, day0, false)}; COMMIT;`);
  db.exec(`INSERT INTO minutes SELECT id / 61440000 AS minute, proc, sum(tx_bytes), sum(rx_bytes), sum(tx_packets), sum(rx_packets), sum(conns) FROM records
    WHERE id >= ${day0 * 1024} GROUP BY 1, 2 ON CONFLICT (minute, proc) DO UPDATE SET tx_bytes = tx_bytes + excluded.tx_bytes, conns = conns + excluded.conns`);
  return (n * 1000) / (performance.now() - t0);
}

/** Fills the store's own file: partitions of CHUNK records (r<N>, m<N>) as the store writes them. */
async function fillStore(dirPath: string, n: number): Promise<number> {
  const s = await HistoryStore.open({ dir: dirPath, maxBytes: 4 * GIB, retentionDays: 3650 });
  s.close(); // schema and r1/m1 created
  const t0 = performance.now();
  const inst = await DuckDBInstance.create(path.join(dirPath, 'history.duckdb'), { threads: '1', memory_limit: '256MB' });
  const c = await inst.connect();
  await c.run(`INSERT INTO procs VALUES ${procRows().map((p) => `(${p.id}, ${p.pid}, '${p.comm}', ${p.uid}, '${p.exe}', '${p.cgroupId}', NULL)`).join(', ')}`);
  await c.run(`INSERT INTO labels VALUES ${STORE_LABELS.map(([id, name]) => `(${id}, '${name}')`).join(', ')}`);
  for (let i = 0, k = 1; i < n; i += CHUNK, k++) {
    if (k > 1) {
      await c.run(RECORDS_DDL(`r${k}`));
      await c.run(MINUTES_DDL(`m${k}`));
    }
    await c.run(`INSERT INTO r${k} ${flowSelect('duckdb', RECORD_COLS, i, Math.min(n, i + CHUNK), n, DAY0, true)}`);
    await c.run(`INSERT INTO m${k} SELECT id // 61440000 AS minute, proc, sum(tx_bytes), sum(rx_bytes), sum(tx_packets), sum(rx_packets), sum(conns) FROM r${k} GROUP BY ALL ORDER BY minute`);
  }
  await c.run('CHECKPOINT');
  c.closeSync();
  inst.closeSync();
  return (n * 1000) / (performance.now() - t0);
}

async function query(): Promise<void> {
  const day = { from: DAY0, to: DAY0 + DAY };
  const hour = { from: DAY0 + 14 * 3_600_000, to: DAY0 + 15 * 3_600_000 };
  const lo = Buffer.from([23, 0, 0, 0]);
  const hi = Buffer.from([23, 0, 255, 255]);
  const pid = procRows()[3]!.pid;
  const rows: Record<string, Record<string, string>> = { SQLite: {}, 'ebpfmon history (DuckDB)': {} };

  // SQLite: one table, id = time * 1024 as its primary key, per-minute table beside it.
  {
    const file = fresh('query.db');
    const db = new SqliteEngine(file);
    const r = rows.SQLite!;
    r['load, flows/s (SQL-generated)'] = fmt(await fillSqlite(db, FLOWS, DAY0), 0);
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    const size = db.sizeBytes();
    r['bytes per flow on disk'] = fmt(size / FLOWS, 1);
    r["a day's per-process totals"] = await timeIt(() => db.processTotals(day));
    r["  the same from the flow records"] = await timeIt(() => db.processTotalsFromFlows(day));
    r['what did firefox-esr talk to, 14:00-15:00'] = await timeIt(() => db.remotesOf('firefox-esr', hour));
    r['who talked to 23.0.0.0/16 that day'] = await timeIt(() => db.whoTalkedTo(lo, hi, day));
    r["uid 1000's hourly totals that day"] = await timeIt(() => db.hourly(1000, day));
    r["one process's flows that day (top 100)"] = await timeIt(() => db.flowsOf(pid, day));
    const t0 = performance.now();
    await db.deleteBefore(DAY0 + 8 * 3_600_000);
    r['make room: delete the oldest third, ms'] = fmt(performance.now() - t0, 0);
    await fillSqlite(db, Math.floor(FLOWS / 3), DAY0 + DAY, 1);
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    r['file size: full / after a third replaced, MB'] = `${fmt(size / 1e6, 0)} / ${fmt(db.sizeBytes() / 1e6, 0)}`;
    r['process RSS after the queries, MiB'] = fmt(memMiB(process.pid).rss, 0);
    await db.close();
    fresh('query.db');
  }
  // ebpfmon's store: partitions of 1M records, queried through HistoryStore.query.
  {
    const d = fresh('query-store');
    const r = rows['ebpfmon history (DuckDB)']!;
    r['load, flows/s (SQL-generated)'] = fmt(await fillStore(d, FLOWS), 0);
    const s = await HistoryStore.open({ dir: d, maxBytes: 4 * GIB, retentionDays: 3650, threads: 1 });
    const u = await s.usage();
    r['bytes per flow on disk'] = fmt(u.fileBytes / FLOWS, 1);
    const q = (p: Record<string, unknown>): HistoryQuery => parseHistoryQuery({ limit: 100, ...p } as never, DAY0 + DAY, () => null);
    const dayQ = { since: DAY0, until: DAY0 + DAY };
    r["a day's per-process totals"] = await timeIt(() => s.query(q({ ...dayQ, by: 'process', limit: 1000 }), 'all'));
    r["  the same from the flow records"] = await timeIt(() => s.query(q({ ...dayQ, by: 'process', limit: 1000, remote: '::/0' }), 'all').then(async (a) => [...a.groups!, ...(await s.query(q({ ...dayQ, by: 'process', limit: 1000, remote: '0.0.0.0/0' }), 'all')).groups!]));
    r['what did firefox-esr talk to, 14:00-15:00'] = await timeIt(() => s.query(q({ since: hour.from, until: hour.to, comm: 'firefox-esr', by: 'remote' }), 'all'));
    r['who talked to 23.0.0.0/16 that day'] = await timeIt(() => s.query(q({ ...dayQ, remote: '23.0.0.0/16', by: 'process' }), 'all'));
    r["uid 1000's hourly totals that day"] = await timeIt(() => s.query(q({ ...dayQ, user: 1000, by: 'hour' }), 'all'));
    r["one process's flows that day (top 100)"] = await timeIt(() => s.query(q({ ...dayQ, pid }), 'all'));
    // Make room for a third: the size limit set to two thirds of what is used.
    s.close();
    const s3 = await HistoryStore.open({ dir: d, maxBytes: Math.floor((u.usedBytes * 2) / 3 / 0.9), retentionDays: 3650 });
    const t0 = performance.now();
    await s3.enforceRetention(DAY0 + DAY);
    r['make room: delete the oldest third, ms'] = fmt(performance.now() - t0, 0);
    const after = await s3.usage();
    r['file size: full / after a third replaced, MB'] = `${fmt(u.fileBytes / 1e6, 0)} / ${fmt(after.fileBytes / 1e6, 0)} (used ${fmt(after.usedBytes / 1e6, 0)})`;
    r['process RSS after the queries, MiB'] = fmt(memMiB(process.pid).rss, 0);
    s3.close();
    fresh('query-store');
  }
  const names = Object.keys(rows);
  const t = table([`${fmt(FLOWS / 1e6, 1)}M flows over one day; queries: wall ms / CPU ms, median of ${REPS}`, ...names]);
  for (const k of Object.keys(rows[names[0]!]!)) t.push([k, ...names.map((nm) => rows[nm]![k] ?? '')]);
  console.log(t.toString());
}

// --- crash --------------------------------------------------------------------------------

interface Line { event: string; committed?: number; fed?: number; at?: number }

async function crash(): Promise<void> {
  const t = table([`kill -9 while writing ${RATE} flows/s (${KILLS} kills)`, 'reopen ms (median)', 'integrity', 'flows lost, as ms of traffic (median, max)', 'acknowledged flows missing']);
  for (const kind of ['sqlite', 'duckdb', 'history'] as const) {
    const reopen: number[] = [];
    const lostMs: number[] = [];
    const checks: string[] = [];
    let missing = 0;
    for (let k = 0; k < KILLS; k++) {
      const target = fresh(`crash-${kind}-${k}${kind === 'duckdb' ? '.duckdb' : ''}`);
      const script = kind === 'history' ? 'crash-history.js' : 'crash-writer.js';
      const child = spawn(process.execPath, [path.join(HERE, script), kind, target, String(RATE), String(POST_MS), String(DAY0)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      while (!out.includes('"started"')) await sleep(20);
      const t0 = performance.now();
      await sleep(2000 + Math.random() * 2000);
      const killedAt = performance.now() - t0;
      process.kill(child.pid!, 'SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Line);
      const acked = lines.filter((e) => e.event === 'committed').at(-1)?.committed ?? 0;
      const o0 = performance.now();
      let stored: number;
      if (kind === 'history') {
        // Reopened as the daemon does (HistoryWriter: the store, then the journal replayed
        // into it; reopen ms includes the replay).
        const s = new HistoryWriter({ dir: target, maxBytes: GIB, retentionDays: 3650 });
        await s.open();
        reopen.push(performance.now() - o0);
        const all = await s.query({ since: 0, until: Date.now() + DAY, limit: 1 }, 'all');
        stored = all.totals.connections;
        const byProc = await s.query({ since: 0, until: Date.now() + DAY, limit: 1000, by: 'process' }, 'all');
        const st = s.status();
        checks.push(st.state !== 'ok' || st.movedAside.length ? `state ${st.state}` : byProc.totals.txBytes === all.totals.txBytes && byProc.totals.connections === stored ? 'ok' : 'minutes != records');
        await s.close();
      } else {
        const db: Engine = kind === 'sqlite' ? new SqliteEngine(target) : await (await import('./engines.js')).DuckEngine.open(target);
        stored = await db.count();
        reopen.push(performance.now() - o0);
        checks.push(await db.check());
        await db.close();
      }
      const emitted = (killedAt * RATE) / 1000;
      lostMs.push(((emitted - stored) * 1000) / RATE);
      if (stored < acked) missing += acked - stored;
    }
    t.push([kind === 'history' ? LABEL.history : kind === 'sqlite' ? 'SQLite, commit every 200 ms' : 'DuckDB, commit every 200 ms', fmt(median(reopen), 0), checks.join(' '),
      `${fmt(median(lostMs), 0)}, ${fmt(Math.max(...lostMs), 0)}`, String(missing)]);
  }
  console.log(t.toString());
}

// --- handoff ------------------------------------------------------------------------------

async function handoff(): Promise<void> {
  const { MessageChannel } = await import('node:worker_threads');
  const { ObservationPacker, OP } = await import('../../daemon/src/history/pack.js');
  const N = 100_000;
  const gen = new FlowGen(5);
  const flows = Array.from({ length: N }, () => gen.next(Date.now()));
  const { port1, port2 } = new MessageChannel();
  port2.on('message', () => {});
  const packed: number[] = [];
  const cloned: number[] = [];
  for (let r = 0; r < Math.max(5, RUNS); r++) {
    const p = new ObservationPacker();
    let c0 = threadCpuMs();
    for (let i = 0; i < N; i++) {
      p.add(OP.close, flows[i]!, 1);
      if (i % 2000 === 1999) {
        const b = p.take()!;
        port1.postMessage(b, [b.rows]);
      }
    }
    packed.push(((threadCpuMs() - c0) * 1000) / N);
    c0 = threadCpuMs();
    for (let i = 0; i < N; i += 2000) port1.postMessage(flows.slice(i, i + 2000));
    cloned.push(((threadCpuMs() - c0) * 1000) / N);
    await sleep(200);
  }
  port1.close();
  const t = table(['handing flows to a thread (event loop only)', 'CPU us per flow (median)', 'runs']);
  t.push(['packed (pack.ts), transferred', fmt(median(packed), 2), packed.map((x) => fmt(x, 2)).join(' ')]);
  t.push(['objects, structured clone', fmt(median(cloned), 2), cloned.map((x) => fmt(x, 2)).join(' ')]);
  console.log(t.toString());
}

console.log(`bench/history on ${machine()}; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
if (SECTIONS.includes('ingest')) await ingest();
if (SECTIONS.includes('maxrate')) await maxrate();
if (SECTIONS.includes('query')) await query();
if (SECTIONS.includes('crash')) await crash();
if (SECTIONS.includes('handoff')) await handoff();
console.log(`load average at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
