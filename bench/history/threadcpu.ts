// SPDX-License-Identifier: Apache-2.0
// CPU time of the calling thread (main or worker) from /proc/thread-self/stat, so that a
// bench can split a process's CPU between its event loop and its writer thread.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let tck: number | undefined;

/** utime + stime of the calling thread, in ms (clock-tick resolution). */
export function threadCpuMs(): number {
  tck ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = fs.readFileSync('/proc/thread-self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / tck;
}

/** utime + stime of the whole process (every thread), in ms, at microsecond resolution. */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
