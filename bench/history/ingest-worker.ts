// SPDX-License-Identifier: Apache-2.0
// The writer thread of bench/history's ingest runs: receives batches of closed flows from
// the main thread and writes them with one engine (or discards them: the transfer alone).
import { parentPort, workerData } from 'node:worker_threads';
import { Batcher, DuckEngine, JsonlSink, SqliteEngine, type Engine } from './engines.js';
import type { FlowSample } from './gen.js';
import { threadCpuMs } from './threadcpu.js';

const { engine, path } = workerData as { engine: 'none' | 'jsonl' | 'sqlite' | 'duckdb'; path: string };
const batcher = new Batcher();
let db: Engine | null = null;
let jsonl: JsonlSink | null = null;
if (engine === 'sqlite') db = new SqliteEngine(path);
else if (engine === 'duckdb') db = await DuckEngine.open(path);
else if (engine === 'jsonl') jsonl = new JsonlSink(path);

let rows = 0;
let maxWriteMs = 0;
const cpu0 = threadCpuMs();
// One batch at a time: a write may be async (DuckDB), and batches must not interleave.
let chain: Promise<void> = Promise.resolve();
parentPort!.on('message', (m: { type: 'batch'; samples: FlowSample[]; ack?: boolean } | { type: 'stop' }) => {
  chain = chain.then(async () => {
    if (m.type === 'batch') {
      const t0 = performance.now();
      if (engine !== 'none') {
        const b = batcher.build(m.samples);
        if (db) await db.insert(b);
        else jsonl!.insert(b);
      }
      rows += m.samples.length;
      maxWriteMs = Math.max(maxWriteMs, performance.now() - t0);
      if (m.ack) parentPort!.postMessage({ type: 'ack' });
    } else {
      const cpuMs = threadCpuMs() - cpu0;
      const size = db?.sizeBytes() ?? jsonl?.sizeBytes() ?? 0;
      await db?.close();
      jsonl?.close();
      parentPort!.postMessage({ type: 'stopped', rows, cpuMs, maxWriteMs, size });
    }
  }).catch((err: unknown) => {
    // A failed write ends the run: the bench must not report a rate for lost records.
    console.error(`writer ${engine}:`, err);
    process.exit(1);
  });
});
parentPort!.postMessage({ type: 'ready' });
