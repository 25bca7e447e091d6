// SPDX-License-Identifier: Apache-2.0
// Probes the benches point at a running daemon: the event loop's stall as a client sees it,
// and the note that makes the daemon walk its flow table once after the bench wrote flows
// from user space.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { DaemonClient } from '../../client/src/rpc.js';
import { METHODS } from '../../daemon/src/contract/index.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { sleep } from './harness.js';
import { schedstat } from './proc.js';

/**
 * Calls the daemon one request at a time on one connection until stop(): `call` makes the
 * request (and checks its answer), then the loop pauses `pauseMs(round trip)`. stop() gives
 * the round trips in ms.
 */
export function timedCalls(socketPath: string, call: (c: DaemonClient) => Promise<unknown>, pauseMs: (rttMs: number) => number): { stop: () => Promise<number[]> } {
  let stopped = false;
  const rtts: number[] = [];
  const done = (async () => {
    const c = await DaemonClient.connect(socketPath);
    try {
      while (!stopped) {
        const t0 = performance.now();
        await call(c);
        const rtt = performance.now() - t0;
        rtts.push(rtt);
        await sleep(pauseMs(rtt));
      }
    } finally {
      c.close();
    }
  })();
  return { stop: async () => ((stopped = true), await done, rtts) };
}

/** One thread's time on a CPU and waiting on a run queue so far, in ms (another user's
 * threads need root). */
export type ThreadSched = NonNullable<ReturnType<typeof schedstat>>;

/** A loop probe's round trip, and what the daemon's main thread and the probing thread did
 * meanwhile: how much of a stall is the daemon's own work, and how much is waiting for a CPU. */
export interface ProbeSample { rttMs: number; daemon: ThreadSched | null; self: ThreadSched | null }

const minus = (a: ThreadSched | null, b: ThreadSched | null): ThreadSched | null => (a && b ? { cpuMs: a.cpuMs - b.cpuMs, runqMs: a.runqMs - b.runqMs } : null);

/**
 * The event loop's stall as a client sees it: one request at a time, every 10 ms, that the
 * API refuses before doing any work (flows.list with pid -1: InvalidParams). Its round trip
 * is how long the loop took to get to it, plus the prober's own delay. The prober runs in a
 * worker thread of its own (loop-probe-worker.ts): on the bench's event loop it waited
 * behind the bench's own work (a subscriber taking 10k events/s) and measured that. stop()
 * gives the round trips in ms; with `daemonPid`, samples() gives each round trip with the
 * daemon's main thread's and the prober thread's CPU and run-queue time during it.
 */
export function loopProbe(socketPath: string, daemonPid?: number): { stop: () => Promise<number[]>; samples: () => ProbeSample[] } {
  const w = new Worker(new URL('./loop-probe-worker.js', import.meta.url), { workerData: { socketPath, daemonPid } satisfies LoopProbeData });
  let got: ProbeSample[] = [];
  const done = new Promise<ProbeSample[]>((resolve, reject) => {
    w.once('message', (m: ProbeSample[]) => resolve(m));
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`loop probe worker exited (${code}) before its report`)));
  });
  return {
    stop: async () => {
      w.postMessage('stop');
      got = await done;
      await w.terminate();
      return got.map((s) => s.rttMs);
    },
    samples: () => got,
  };
}

export interface LoopProbeData { socketPath: string; daemonPid?: number | undefined }

/** The prober's loop (runs in loop-probe-worker.ts's thread): returns its samples at `stop`. */
export function runLoopProbe(d: LoopProbeData, stopped: Promise<void>): Promise<ProbeSample[]> {
  const daemonFile = d.daemonPid === undefined ? null : `/proc/${d.daemonPid}/task/${d.daemonPid}/schedstat`;
  const samples: ProbeSample[] = [];
  let d0: ThreadSched | null = null;
  let s0: ThreadSched | null = null;
  const t = timedCalls(d.socketPath, async (c) => {
    if (daemonFile) {
      d0 = schedstat(daemonFile);
      s0 = schedstat('/proc/thread-self/schedstat');
    }
    await c.call(METHODS.flowsList, { pid: -1 }).catch(() => undefined);
  }, (rtt) => {
    samples.push({ rttMs: rtt, daemon: daemonFile ? minus(schedstat(daemonFile), d0) : null, self: daemonFile ? minus(schedstat('/proc/thread-self/schedstat'), s0) : null });
    return 10;
  });
  return stopped.then(async () => (await t.stop(), samples));
}

/**
 * Where the longest round trips went: over the probes of at least `overMs` (the stall
 * target), the share of their time the daemon's main thread ran, waited for a CPU, and the
 * probing thread waited for one; and the same for the longest probe alone.
 */
export function stallBreakdown(samples: ProbeSample[], overMs: number): string {
  // The daemon's share of a round trip: what its main thread ran plus what it waited for a
  // CPU meanwhile. Time it was blocked is taken as idle (in epoll, where a request wakes it
  // at once); blocked on a lock (a GC safepoint) it would be missed here, so the longest
  // probes show their blocked time and the prober's, whose waits should account for it.
  const own = samples.filter((s) => s.daemon).map((s) => Math.min(s.rttMs, s.daemon!.cpuMs + s.daemon!.runqMs)).sort((a, b) => a - b);
  const bound = own.length ? `the daemon's own part of a round trip (its main thread running or waiting for a CPU meanwhile): max ${own.at(-1)!.toFixed(1)} ms, p99 ${own[Math.min(own.length - 1, Math.floor(0.99 * own.length))]!.toFixed(1)}; ` : '';
  const long = samples.filter((s) => s.rttMs >= overMs && s.daemon && s.self);
  if (long.length === 0) return `${bound}no probe of ${overMs} ms or more`;
  const sum = (f: (s: ProbeSample) => number) => long.reduce((a, s) => a + f(s), 0);
  const rtt = sum((s) => s.rttMs);
  const pct = (x: number, of: number) => `${((100 * x) / of).toFixed(0)}%`;
  const w = long.reduce((a, s) => (s.rttMs > a.rttMs ? s : a));
  // Blocked: neither on a CPU nor waiting for one (asleep: in epoll, or on a lock).
  const blocked = (t: ThreadSched, ms: number) => Math.max(0, ms - t.cpuMs - t.runqMs);
  const part = (t: ThreadSched, ms: number) => `ran ${t.cpuMs.toFixed(1)}, waited for a CPU ${t.runqMs.toFixed(1)}, blocked ${blocked(t, ms).toFixed(1)}`;
  return `${bound}${long.length} probes of ${overMs} ms or more: the daemon's main thread ran ${pct(sum((s) => s.daemon!.cpuMs), rtt)} of their time, waited for a CPU ${pct(sum((s) => s.daemon!.runqMs), rtt)}, the prober waited for one ${pct(sum((s) => s.self!.runqMs), rtt)}; the longest, ${w.rttMs.toFixed(1)} ms: daemon ${part(w.daemon!, w.rttMs)}; prober ${part(w.self!, w.rttMs)}`;
}

/** Counts one lost dirty record (CPU 0's slot of emon_stats dirtyRingFull): the daemon then
 * walks the table once (daemon/src/monitor/dirty.ts) and knows the flows the bench wrote
 * from user space (the kernel pushes only its own changes). */
export function announceExternalWrite(pinPath: string): void {
  const stats = BpfMap.fromPin(path.join(pinPath, 'maps', MAP.stats), MAP.stats);
  try {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(MONITOR_COUNTERS.indexOf('dirtyRingFull'));
    const v = stats.lookup(k)!;
    v.writeBigUInt64LE(v.readBigUInt64LE(0) + 1n, 0);
    stats.update(k, v);
  } finally {
    stats.close();
  }
}
