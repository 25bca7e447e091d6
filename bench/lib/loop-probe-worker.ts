// SPDX-License-Identifier: Apache-2.0
// The loop prober's thread (daemon-probes.ts loopProbe()): probes until the parent says
// stop, then posts its samples.
import { parentPort, workerData } from 'node:worker_threads';
import { runLoopProbe, type LoopProbeData } from './daemon-probes.js';

const port = parentPort!;
const stopped = new Promise<void>((resolve) => port.once('message', () => resolve()));
port.postMessage(await runLoopProbe(workerData as LoopProbeData, stopped));
