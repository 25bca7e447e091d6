// SPDX-License-Identifier: Apache-2.0
// bench/capture: what capture and mirror sessions cost (issue 13).
//
//   sudo node build/js/bench/capture/main.js [--part engine|live|all] [--reps 5]
//        [--repeat 1000000] [--deliver-repeat 50000] [--max-minutes 15]
//
// engine: per-packet cost in TC (BPF_PROG_TEST_RUN) next to the shipped classifier in the
//         same repetitions (bench/capture/engine.ts).
// live:   packets/s captured to a pcapng file with zero loss and CPU per packet, next to
//         `tcpdump -w` on the same traffic in the same run (bench/capture/live.ts).
import { Lab } from '../../test/helpers/lab.js';
import { machine, numArg } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { engineBench, engineTable } from './engine.js';

const PART = strArg('part') ?? 'all';
const REPS = numArg('reps', 5);
const DEADLINE = Date.now() + numArg('max-minutes', 15) * 60_000;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/capture needs root');
  const lab = await Lab.create();
  try {
    console.log(`bench/capture - ${machine()}`);
    if (PART === 'engine' || PART === 'all') {
      const { rows, reps } = await engineBench({ reps: REPS, repeat: numArg('repeat', 1_000_000), deliverRepeat: numArg('deliver-repeat', 50_000), lab, deadline: DEADLINE });
      console.log(`\nper-packet cost in TC: BPF_PROG_TEST_RUN, kernel-measured ns per run, IPv4 TCP 64 B frame of an existing flow, ingress;`);
      console.log(`${reps} repetitions after a warm-up, medians; "added" is the median of per-repetition differences from the shipped classifier run in the same repetition.`);
      console.log(engineTable(rows));
    }
  } finally {
    await lab.destroy();
  }
}

await main();
