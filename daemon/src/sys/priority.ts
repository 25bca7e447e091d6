// SPDX-License-Identifier: Apache-2.0
// Which of the daemon's threads go first. The unit starts the daemon at Nice=-10
// (systemd/ebpfmon.service, docs/packaging.md): on a busy machine its event loop, which
// drains the kernel's rings and answers clients, then gets a CPU before the monitored
// workload's same-priority threads instead of queueing behind them (measured: the event
// loop's stall under 10k connections/s was mostly that wait, docs/benchmarks.md "Where the
// stall went"). Only the event loop keeps the boost: every other thread goes back to
// nice 0 (V8's helpers, libuv's pool with DuckDB's calls, the history writer and the
// threads DuckDB starts from it), so that background work never runs ahead of the
// machine's own. Raising a nice value needs no privilege (setpriority(2)); nothing here
// lowers one, and a daemon started at nice 0 or above (tests, a container) is left as it is.
import fs from 'node:fs';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const setpriority = libc.func('int setpriority(int which, unsigned int who, int prio)') as (which: number, who: number, prio: number) => number;
const PRIO_PROCESS = 0; // with a thread id: that thread only (Linux)
/** Where background threads run: the niceness of a daemon the unit did not boost. */
export const BACKGROUND_NICE = 0;

const gettid = libc.func('int gettid(void)') as () => number;

/** The calling thread's id (a worker thread's too): gettid(2), glibc 2.30 and later. */
export function threadId(): number {
  return gettid();
}

/** The process's threads now. */
export function threadIds(): Set<number> {
  return new Set(fs.readdirSync('/proc/self/task').map(Number));
}

/** A thread's nice value (field 19 of its stat line), null when it has ended. */
export function niceOf(tid: number): number | null {
  try {
    const s = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[16]);
  } catch {
    return null;
  }
}

/**
 * Moves thread `tid` to the background: nice 0 if it runs below (boosted), and the name
 * `name` (what `top -H` and `ps -L` show; at most 15 bytes). Returns whether its priority
 * changed. A refused call (a seccomp filter, a thread that ended) leaves it as it was.
 */
export function toBackground(tid: number, name?: string): boolean {
  if (name !== undefined) {
    try {
      fs.writeFileSync(`/proc/self/task/${tid}/comm`, name.slice(0, 15));
    } catch {
      /* cosmetic */
    }
  }
  const nice = niceOf(tid);
  if (nice === null || nice >= BACKGROUND_NICE) return false;
  return setpriority(PRIO_PROCESS, tid, BACKGROUND_NICE) === 0;
}

/**
 * Moves every thread but the calling one (the event loop) to the background. Threads the
 * event loop starts later inherit its priority: the history writer moves itself. Returns
 * how many threads moved.
 */
export function othersToBackground(): number {
  const self = threadId();
  let moved = 0;
  let tids: Set<number>;
  try {
    tids = threadIds();
  } catch {
    return 0; // no /proc of our own (a sandbox without it): every thread keeps its priority
  }
  for (const tid of tids) if (tid !== self && toBackground(tid)) moved++;
  return moved;
}
