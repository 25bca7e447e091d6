// SPDX-License-Identifier: Apache-2.0
// A process's CPU time and memory from /proc, for benches that price a tool by what its
// own process spends (bench/footprint, bench/attribution, bench/query), and a CPU
// profile of the daemon on request.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import './help.js';

let ticksPerSec: number | undefined;
function clkTck(): number {
  ticksPerSec ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSec;
}

/** utime and stime of `pid` (all its threads), in ms; clock-tick resolution (10 ms at 100 Hz). */
export function cpuSplitMs(pid: number): { user: number; sys: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(f[11]) * 1000) / clkTck(), sys: (Number(f[12]) * 1000) / clkTck() };
}

/** utime + stime of `pid` (all its threads), in ms. */
export function cpuMs(pid: number): number {
  const { user, sys } = cpuSplitMs(pid);
  return user + sys;
}

/** Resident and peak resident memory of `pid`, in MiB (VmRSS, VmHWM). */
export function memMiB(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** One thread's time on a CPU and waiting for one so far, in ms, from a schedstat file
 * (/proc/PID/task/TID/schedstat, /proc/thread-self/schedstat: the scheduler's own count, in
 * nanoseconds); null when the thread has ended. */
export function schedstat(file: string): { cpuMs: number; runqMs: number } | null {
  try {
    const [run, wait] = fs.readFileSync(file, 'utf8').split(' ');
    return { cpuMs: Number(run) / 1e6, runqMs: Number(wait) / 1e6 };
  } catch {
    return null;
  }
}

/**
 * Time on a CPU of `pid`'s threads that are alive now, in ms (schedstat()). utime and stime
 * are sampled at each timer tick (4 ms here, CONFIG_TICK_CPU_ACCOUNTING): over a window of a
 * few hundred ms of CPU they are off by several ticks. A thread that ended in the window
 * takes its time with it.
 */
export function runMs(pid: number): number {
  let ms = 0;
  for (const v of taskMs(pid).values()) ms += v;
  return ms;
}

/**
 * Waits until `pid` is quiet: `windows` windows of `windowMs` in a row in each of which its
 * threads ran less than `maxMs`. A daemon's first seconds (programs loaded, the first
 * listings, the JIT warming up) otherwise land in whatever is measured first. Gives up after
 * `timeoutMs` and says so (false): the caller prints it, nothing waits forever.
 */
export async function waitQuiet(pid: number, opts: { windowMs?: number; maxMs?: number; windows?: number; timeoutMs?: number } = {}): Promise<boolean> {
  const { windowMs = 500, maxMs = 5, windows = 2, timeoutMs = 30_000 } = opts;
  const end = performance.now() + timeoutMs;
  let quiet = 0;
  let last = runMs(pid);
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, windowMs));
    const now = runMs(pid);
    quiet = now - last < maxMs ? quiet + 1 : 0;
    last = now;
    if (quiet >= windows) return true;
  }
  return false;
}

/** How often a thread has gone to sleep of its own accord (voluntary context switches: each
 * is a wakeup later), from its status file; null when it has ended. */
export function sleepsOf(pid: number, tid = pid): number | null {
  try {
    const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** CPU used by `pid` between two points in time, as ms and as % of one core: `cpuMs` from
 * schedstat (runMs()), `sysMs` from stime (ticks). */
export class CpuWindow {
  private readonly t0 = performance.now();
  private readonly c0: { user: number; sys: number };
  private readonly s0: number | null;
  private readonly tasks0: Map<number, number>;
  constructor(readonly pid: number) {
    this.c0 = cpuSplitMs(pid);
    this.tasks0 = taskMs(pid);
    this.s0 = sleepsOf(pid);
  }
  /** `mainWakeups`: the main thread's voluntary context switches over the window. `threads`:
   * `cpuMs` split into the main thread, threads named `threadName` (a worker's name, e.g.
   * the daemon's `ebpfmon-history`) and the rest (V8's GC and compiler helpers, libuv's pool,
   * DuckDB's), the rest also by thread in `otherByName`, as NAME#N: its name and its place
   * among the threads by id, which is their order of creation (Node names none of its own
   * threads: in Node 20 V8's platform workers, which run the collector's parallel and
   * concurrent work and the optimising compiler, are #2-#5, libuv's pool, where DuckDB's
   * calls from the history writer run, #7-#10). Threads that ended in the window are in
   * none: their time is gone from /proc. */
  read(threadName?: string): { cpuMs: number; sysMs: number; ticksMs: number; wallMs: number; pctOfCore: number; mainWakeups: number | null; threads: { main: number; named: number; other: number; otherByName: Map<string, number> } } {
    const c = cpuSplitMs(this.pid);
    const sys = c.sys - this.c0.sys;
    const ticks = c.user - this.c0.user + sys;
    const t1 = taskMs(this.pid);
    const threads = { main: 0, named: 0, other: 0, otherByName: new Map<string, number>() };
    const rank = new Map([...t1.keys()].sort((a, b) => a - b).map((tid, i) => [tid, i]));
    let cpu = 0;
    for (const [tid, ms] of t1) {
      const d = ms - (this.tasks0.get(tid) ?? 0);
      cpu += d;
      if (tid === this.pid) {
        threads.main += d;
        continue;
      }
      const comm = threadComm(this.pid, tid);
      if (threadName !== undefined && comm === threadName) threads.named += d;
      else {
        threads.other += d;
        const name = `${comm ?? '?'}#${rank.get(tid)}`;
        threads.otherByName.set(name, (threads.otherByName.get(name) ?? 0) + d);
      }
    }
    const wall = performance.now() - this.t0;
    const s1 = sleepsOf(this.pid);
    return { cpuMs: cpu, sysMs: sys, ticksMs: ticks, wallMs: wall, pctOfCore: (100 * cpu) / wall, mainWakeups: s1 === null || this.s0 === null ? null : s1 - this.s0, threads };
  }
}

/** Time on a CPU of each of `pid`'s threads alive now, in ms, by thread id (schedstat()). */
function taskMs(pid: number): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) m.set(Number(t), schedstat(`/proc/${pid}/task/${t}/schedstat`)?.cpuMs ?? 0);
  return m;
}

function threadComm(pid: number, tid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** `--name value` or `--name=value` as a string, else undefined. */
export function strArg(name: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i]!.startsWith(`--${name}=`)) return argv[i]!.slice(name.length + 3);
  }
  return undefined;
}

/**
 * A preload that profiles the daemon with the inspector (from SIGUSR2 on) and writes a .cpuprofile on exit
 * (Node 20 refuses --cpu-prof in NODE_OPTIONS). Open it in Chrome DevTools or speedscope.
 */
export function cpuProfPreload(tmp: string, outDir: string): string {
  const file = path.join(tmp, 'cpuprof.cjs');
  // Made here: the daemon's exit handler cannot report a write into a missing directory.
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(file, `const inspector = require('node:inspector');
const fs = require('node:fs');
const s = new inspector.Session();
s.connect();
s.post('Profiler.enable');
// Started on SIGUSR2 once the daemon is up: V8 samples with SIGPROF, and a signal pending
// during BPF verification makes the load fail with EAGAIN.
process.on('SIGUSR2', () => s.post('Profiler.start'));
// A worker thread (signals reach only the main thread) profiles from its start, its samples
// signals to that thread, not to the one loading programs, and writes a profile every 10 s
// (its exit may come too late for the write): worker-PID-THREAD-N.cpuprofile, N from 1.
if (!require('node:worker_threads').isMainThread) {
  let n = 0;
  s.post('Profiler.start');
  setInterval(() => s.post('Profiler.stop', (err, r) => {
    if (!err) fs.writeFileSync(${JSON.stringify(outDir)} + '/worker-' + process.pid + '-' + require('node:worker_threads').threadId + '-' + ++n + '.cpuprofile', JSON.stringify(r.profile));
    s.post('Profiler.start');
  }), 10_000).unref();
}
process.on('exit', () => s.post('Profiler.stop', (err, r) => {
  // Preloads run in worker threads too (history's writer): one file per thread.
  if (!err) fs.writeFileSync(${JSON.stringify(outDir)} + '/daemon-' + process.pid + '-' + require('node:worker_threads').threadId + '.cpuprofile', JSON.stringify(r.profile));
}));
`);
  return file;
}

