// SPDX-License-Identifier: Apache-2.0
// The writer thread: the event loop posts packed observations and queries; everything that
// touches the database (accounting, writes, retention, queries) runs here, so a slow disk,
// a checkpoint or a one-second query never holds the daemon's event loop.
import v8 from 'node:v8';
import vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { HistoryWriter, type WriterOptions } from './writer.js';
import type { ToWorker, FromWorker } from './protocol.js';
import { threadId, toBackground } from '../sys/priority.js';

// Writes can wait: this thread (and the threads DuckDB starts from it) runs at nice 0 when
// the unit boosted the daemon (sys/priority.ts), named for `top -H`.
toBackground(threadId(), 'ebpfmon-history');
const opts = workerData as WriterOptions & { flushMs: number; maintainMs: number; statusMs: number };
const w = new HistoryWriter(opts);
// V8's gc() for the writer's collections after large write sets (writer.ts collectGarbage):
// the flag is process-wide, and gives gc() to contexts created after it, as this one. A V8
// that refuses flags after start leaves `gc` undefined: no collections, history unharmed
// (a bare `gc` reference would throw and end this thread).
try {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined') as unknown;
  if (typeof gc === 'function') w.collectGarbage = gc as () => void;
} catch {
  /* no collections */
}
const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);
w.onOpen = () => send({ type: 'opened' });

await w.open();
send({ type: 'status', status: w.status() });

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'batch':
      try {
        w.ingest(m.batch);
      } catch (err) {
        send({ type: 'log', level: 'error', msg: `history: a batch could not be read: ${(err as Error).message}` });
      }
      if (m.ack !== undefined) w.endPending();
      // Read (ingest keeps nothing of it): back to the packer, transferred.
      port.postMessage({ type: 'buffer', rows: m.batch.rows } satisfies FromWorker, [m.batch.rows]);
      if (m.ack === undefined) void w.commitIfDue();
      else {
        void w.flush().then(() => {
          send({ type: 'status', status: w.status() });
          send({ type: 'flushed', id: m.ack! });
        });
      }
      break;
    case 'query':
      w.query(m.q, m.scope).then(
        (result) => send({ type: 'result', id: m.id, result }),
        (err: Error & { code?: string }) => send({ type: 'result', id: m.id, error: { code: err.code ?? 'internal', message: err.message } }),
      );
      break;
    case 'flush':
      w.endPending();
      void w.flush().then(() => {
        send({ type: 'status', status: w.status() });
        send({ type: 'flushed', id: m.id });
      });
      break;
    case 'limits':
    case 'maintain':
      // New limits apply at once: retention runs now.
      if (m.type === 'limits') w.setLimits(m);
      void w.maintain().then(() => {
        send({ type: 'status', status: w.status() });
        send({ type: 'flushed', id: m.id });
      });
      break;
    case 'close':
      clearInterval(timers);
      void w.close().then(() => {
        send({ type: 'status', status: w.status() });
        send({ type: 'closed' });
        clearInterval(timers);
        port.close();
      });
      break;
  }
});

let tick = 0;
const timers = setInterval(() => {
  tick++;
  // Commits when due; retries a full disk or an unopenable file.
  void w.commitIfDue();
  if ((tick * opts.statusMs) % opts.maintainMs < opts.statusMs) void w.maintain();
  else if (tick % 5 === 0) void w.refresh();
  send({ type: 'status', status: w.status() });
}, opts.statusMs);
