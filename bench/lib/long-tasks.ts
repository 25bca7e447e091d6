// SPDX-License-Identifier: Apache-2.0
// A preload for the daemon (`EBPFMON_DAEMON_NODE_ARGS="--max-semi-space-size=4 --import
// ./build/js/bench/lib/long-tasks.js"`, with EBPFMON_LONG_TASKS_DIR set): times every
// callback the main thread's event loop runs (async_hooks before/after, outermost only) and
// writes those of LONG_MS or more, with their start on the monotonic clock in microseconds
// (the clock of a V8 CPU profile's samples), to DIR/long-tasks-PID.json at exit.
// long-tasks-report.ts puts them next to a profile of the same run (--daemon-cpu-prof):
// what ran in each. Why: the loop probe says how long a request waited, a CPU profile what
// ran, neither where one task ended; a stall is the longest task (docs/benchmarks.md,
// "The stall's longest tasks"). A diagnostic: the hooks cost the daemon CPU (promise hooks
// on every await), so no figure of a run with it stands for the daemon's cost.
import { createHook } from 'node:async_hooks';
import fs from 'node:fs';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';

/** Tasks shorter than this are not kept. */
const LONG_MS = 8;

export interface LongTask {
  /** Start, monotonic clock, microseconds. */
  us: number;
  ms: number;
  /** The async resource whose callback it was (Timeout, Immediate, PIPEWRAP, PROMISE...). */
  type: string;
}

const dir = process.env.EBPFMON_LONG_TASKS_DIR;
if (isMainThread && dir) {
  const types = new Map<number, string>();
  const out: LongTask[] = [];
  let depth = 0;
  let start = 0n;
  let top = '';
  createHook({
    init(id, type) {
      if (type !== 'PROMISE') types.set(id, type);
    },
    before(id) {
      if (depth++ === 0) {
        start = process.hrtime.bigint();
        top = types.get(id) ?? 'PROMISE';
      }
    },
    after() {
      if (--depth !== 0) return;
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (ms >= LONG_MS) out.push({ us: Number(start / 1000n), ms: Math.round(ms * 100) / 100, type: top });
    },
    destroy(id) {
      types.delete(id);
    },
  }).enable();
  process.on('exit', () => fs.writeFileSync(path.join(dir, `long-tasks-${process.pid}.json`), JSON.stringify(out)));
}
