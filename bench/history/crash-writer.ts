// SPDX-License-Identifier: Apache-2.0
// Child process of bench/history's crash runs: writes closed flows at a steady rate with
// one engine, committing every `commitMs`, and prints a JSON line after each commit with
// how many flows are committed. The bench kills it with SIGKILL at a random moment.
import { Batcher, DuckEngine, SqliteEngine, type Engine } from './engines.js';
import { FlowGen, type FlowSample } from './gen.js';

const [engine = 'sqlite', path = '', rateS = '10000', commitS = '200', t0S = '0'] = process.argv.slice(2);
const rate = Number(rateS);
const commitMs = Number(commitS);
const db: Engine = engine === 'duckdb' ? await DuckEngine.open(path) : new SqliteEngine(path);
const gen = new FlowGen(7);
const batcher = new Batcher();
let pending: FlowSample[] = [];
let emitted = 0;
let committed = 0;
const start = performance.now();
let ts = Number(t0S);
process.stdout.write(`${JSON.stringify({ event: 'started' })}\n`);
setInterval(() => {
  const due = Math.floor(((performance.now() - start) * rate) / 1000);
  for (; emitted < due; emitted++) pending.push(gen.next(Math.floor((ts += 1000 / rate))));
}, 5);
let busy = false;
setInterval(() => {
  if (busy || pending.length === 0) return;
  busy = true;
  const batch = pending;
  pending = [];
  void db.insert(batcher.build(batch)).then(() => {
    committed += batch.length;
    busy = false;
    process.stdout.write(`${JSON.stringify({ event: 'committed', committed, emitted, at: performance.now() - start })}\n`);
  });
}, commitMs);
