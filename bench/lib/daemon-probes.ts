// SPDX-License-Identifier: Apache-2.0
// Probes the benches point at a running daemon: the event loop's stall as a client sees it,
// and the note that makes the daemon walk its flow table once after the bench wrote flows
// from user space.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DaemonClient } from '../../client/src/rpc.js';
import { METHODS } from '../../daemon/src/contract/index.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { sleep } from './harness.js';

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

/**
 * The event loop's stall as a client sees it: one request at a time, every 10 ms, that the
 * API refuses before doing any work (flows.list with pid -1: InvalidParams). Its round trip
 * is how long the loop took to get to it, plus this process's own delay. stop() gives the
 * round trips in ms.
 */
export function loopProbe(socketPath: string): { stop: () => Promise<number[]> } {
  return timedCalls(socketPath, (c) => c.call(METHODS.flowsList, { pid: -1 }).catch(() => undefined), () => 10);
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
