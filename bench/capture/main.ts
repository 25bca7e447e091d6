// SPDX-License-Identifier: Apache-2.0
// bench/capture: what capture and mirror sessions cost (issue 13).
//
//   sudo node build/js/bench/capture/main.js [--part engine|live|all] [--max-minutes 15]
//     engine: [--reps 5] [--repeat 1000000] [--deliver-repeat 50000]
//     live:   [--live-reps 3] [--seconds 2] [--warmup 0] [--max-packets 600000] [--pages 1024]
//             [--trials-json FILE] (every trial, the daemon's CPU by thread included)
//             [--only-bytes 64|1500] [--only-rate PPS|0] [--configs BYTES:PPS,...] [--tools none,tcpdump,ebpfmon,ebpfmon-stream,ebpfmon-base]
//             [--baseline DIR] [--baseline-pages N] (another checkout, built: its daemon and CLI as tool ebpfmon-base)
//     env:    EBPFMON_BENCH_OUT_DIR=/dev/shm (where the files go; default a lab temp dir),
//             EBPFMON_BENCH_CAPTURE_ARGS="--latency 10" (more `ebpfmonctl capture` options, both builds),
//
// engine: per-packet cost in TC (BPF_PROG_TEST_RUN) next to the classifier without the hook chain in the
//         same repetitions (bench/capture/engine.ts).
// live:   packets/s captured to a pcapng file with zero loss and CPU per packet, next to
//         `tcpdump -w` on the same traffic in the same run (bench/capture/live.ts).
import fs from 'node:fs';
import { Lab } from '../../test/helpers/lab.js';
import { machine, numArg } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { engineBench, engineTable } from './engine.js';
import { LiveBench, liveTable, TOOLS, type LiveTrial, type Tool } from './live.js';

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
      console.log(`${reps} repetitions after a warm-up, medians; "added" is the median of per-repetition differences from the classifier built without the hook chain (flows_nohooks), run in the same repetition`);
      console.log('(the floor row: from an empty TC program).');
      console.log(engineTable(rows));
    }
    if (PART === 'live' || PART === 'all') {
      const baseline = strArg('baseline');
      const live = new LiveBench(lab, numArg('pages', 1024), baseline, numArg('baseline-pages', numArg('pages', 1024)));
      live.warmupMs = numArg('warmup', 0) * 1000;
      if (live.warmupMs && live.warmupMs >= numArg('seconds', 2) * 1000) throw new Error(`--warmup ${live.warmupMs / 1000} must be shorter than --seconds ${numArg('seconds', 2)} (the CPU window starts after the warm-up, within the traffic)`);
      await live.setup();
      const trials: LiveTrial[] = [];
      const seconds = numArg('seconds', 2);
      const only = numArg('only-bytes', 0);
      const onlyRate = strArg('only-rate');
      // --configs 64:100000,64:0,1500:100000 (frame bytes:pps, 0 = max) instead of the default list.
      const listed = strArg('configs')?.split(',').map((c): [number, number] => {
        const m = /^(\d+):(\d+)$/.exec(c.trim());
        if (!m) throw new Error(`--configs: ${c} is not BYTES:PPS (e.g. 64:100000, 64:0 for the maximum)`);
        return [Number(m[1]), Number(m[2])];
      });
      const configs = (listed ?? [[64, 100_000], [64, 200_000], [64, 300_000], [64, 0], [1500, 50_000], [1500, 100_000], [1500, 0]] as Array<[number, number]>)
        .filter(([b, r]) => (!only || b === only) && (onlyRate === undefined || r === Number(onlyRate)));
      const toolsWanted = (strArg('tools') ?? `none,tcpdump,ebpfmon,ebpfmon-stream${baseline ? ',ebpfmon-base' : ''}`).split(',');
      for (const w of toolsWanted) if (!TOOLS.includes(w as Tool)) throw new Error(`--tools: unknown tool ${w} (${TOOLS.join(', ')})`);
      if (toolsWanted.includes('ebpfmon-base') && !baseline) throw new Error('--tools ebpfmon-base needs --baseline DIR');
      const liveReps = numArg('live-reps', 3);
      try {
        for (let rep = 0; rep < liveReps && Date.now() < DEADLINE; rep++) {
          for (const [bytes, rate] of configs) {
            const packets = rate ? rate * seconds : numArg('max-packets', 600_000);
            // Rotate the order so that no tool always runs first at a rate.
            const wanted = TOOLS.filter((t) => toolsWanted.includes(t));
            const tools = wanted.map((_, i, a) => a[(i + rep) % a.length]!);
            for (const tool of tools) trials.push(await live.trial(tool, rate, bytes, packets));
          }
          console.error(`capture live: rep ${rep + 1} done`);
        }
      } finally {
        await live.close();
      }
      const trialsJson = strArg('trials-json');
      if (trialsJson) fs.writeFileSync(trialsJson, JSON.stringify(trials, null, 1));
      console.log(`\nlive capture to a file: trafgen -> veth -> host with the daemon (ebpfmonctl capture -w); filter "udp" in both tools; ${seconds} s per trial at a fixed rate ("max": ${numArg('max-packets', 600_000)} frames as fast as trafgen goes);`);
      console.log(live.warmupMs
        ? `medians of the repetitions; "zero loss" counts trials where every frame sent is in the file; CPU per frame received in the window, every tool over the same window: from ${live.warmupMs / 1000} s after trafgen's start (a warm-up) to 1.2 s after its end`
        : 'medians of the repetitions; "zero loss" counts trials where every frame sent is in the file; CPU per frame sent, every tool over the same window: from trafgen\'s start to 1.2 s after its end');
      console.log('("none: daemon idle": the daemon\'s CPU over that window without a capture, part of every ebpfmon figure; "added": a tool\'s CPU minus that, medians (tcpdump\'s process runs only to capture: nothing is taken from it); "main thread wakeups/s": how often tcpdump\'s process or the daemon\'s main thread went to sleep over the window). ebpfmon: perf rings of ' + `${numArg('pages', 1024)} pages per CPU${baseline ? `; ebpfmon-base: the daemon and CLI of ${baseline}, ${numArg('baseline-pages', numArg('pages', 1024))} pages per CPU` : ''}. load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
      console.log(liveTable(trials));
    }
  } finally {
    await lab.destroy();
  }
}

await main();
