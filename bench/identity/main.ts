// SPDX-License-Identifier: Apache-2.0
// How to get from a cgroup id (what flows carry) to its path, measured side by side on the
// same tree: a walk of the hierarchy indexed by inode, open_by_handle_at per id, and
// /proc/<pid>/cgroup + stat when a live pid is known; plus the whole resolver, cold and
// cached. Baseline in the same run: one stat() from Node (the floor of any syscall here).
//
//   sudo node build/js/bench/identity/main.js [--reps 5] [--sizes 100,1000,5000] [--pids 50]
//
// The tree: <N> cgroups below a directory of this run under the cgroup2 mount, shaped like
// a busy host (services in system.slice, scopes of containers, user apps); removed at exit.
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import Table from 'cli-table3';
import { machine, median, numArg, onExit } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { TestCgroups } from '../../test/helpers/cgroups.js';
import { CgroupIndex, cgroupIdOf, cgroupPathOfPid } from '../../daemon/src/identity/cgroupfs.js';
import { HandleResolver } from '../../daemon/src/identity/handle.js';
import { IdentityResolver } from '../../daemon/src/identity/resolver.js';

const REPS = numArg('reps', 5);
const SIZES = (strArg('sizes') ?? '100,1000,5000').split(',').map(Number);
const PIDS = numArg('pids', 50);

function shape(i: number): string {
  const hex = (i.toString(16).padStart(8, '0')).repeat(8);
  switch (i % 4) {
    case 0: return `system.slice/svc${i}.service`;
    case 1: return `system.slice/docker-${hex}.scope`;
    case 2: return `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${i.toString(16).padStart(8, '0')}_a56e_4278_987a_22de18008dbe.slice/cri-containerd-${hex}.scope`;
    default: return `user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.example.App${i}-${i}.scope`;
  }
}

function perCallUs(fn: () => void, calls: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1000 / calls;
}

const rows: string[][] = [];
const cgs = await TestCgroups.create();
const procs: ChildProcess[] = [];
onExit(() => {
  for (const p of procs) if (p.pid && p.exitCode === null) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
});
try {
  let made = 0;
  const paths: string[] = [];
  for (const n of SIZES) {
    for (; made < n; made++) paths.push(cgs.mkdir(shape(made)));
    const ids = paths.map((p) => cgroupIdOf(cgs.root, p)!);
    // pids in PIDS of the cgroups
    while (procs.length < Math.min(PIDS, n)) {
      const p = spawn('sleep', ['600'], { stdio: 'ignore' });
      procs.push(p);
      cgs.move(p.pid!, paths[procs.length - 1]!);
    }
    const pids = procs.map((p) => p.pid!);
    const some = ids.slice(0, Math.min(ids.length, 1000));

    const stat: number[] = [];
    const walk: number[] = [];
    const walkAsync: number[] = [];
    const stall: number[] = [];
    const handle: number[] = [];
    const viaPid: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    let dirs = 0;
    for (let rep = 0; rep < REPS; rep++) {
      stat.push(perCallUs(() => fs.statSync(path.join(cgs.root, paths[0]!), { bigint: true }), 2000));
      const idx = new CgroupIndex(cgs.root, { minRewalkMs: 0 });
      const t0 = process.hrtime.bigint();
      idx.walk();
      walk.push(Number(process.hrtime.bigint() - t0) / 1e6);
      dirs = idx.lastWalkDirs;
      const aidx = new CgroupIndex(cgs.root, { minRewalkMs: 0 });
      const h0 = monitorEventLoopDelay({ resolution: 1 });
      h0.enable();
      const ta = process.hrtime.bigint();
      await aidx.walkAsync();
      walkAsync.push(Number(process.hrtime.bigint() - ta) / 1e6);
      h0.disable();
      stall.push(h0.max / 1e6);
      if (aidx.lastWalkDirs !== dirs) throw new Error(`async walk saw ${aidx.lastWalkDirs} dirs, sync ${dirs}`);
      const h = new HandleResolver(cgs.root);
      let i = 0;
      handle.push(perCallUs(() => {
        if (h.lookup(some[i++ % some.length]!) === null) throw new Error('open_by_handle_at found nothing (no CAP_DAC_READ_SEARCH?)');
      }, some.length));
      h.close();
      let j = 0;
      viaPid.push(perCallUs(() => {
        const p = cgroupPathOfPid(pids[j++ % pids.length]!);
        if (p === null || cgroupIdOf(cgs.root, p) === null) throw new Error('pid lookup failed');
      }, 2000));
      const r = new IdentityResolver({ useHandles: true, maxEntries: some.length * 2 });
      let k = 0;
      cold.push(perCallUs(() => void r.resolve({ cgroupId: some[k++]! }), some.length));
      k = 0;
      warm.push(perCallUs(() => void r.resolve({ cgroupId: some[k++ % some.length]! }), some.length * 5));
      r.close();
    }
    rows.push([
      String(n), String(dirs), median(stat).toFixed(2), `${median(walk).toFixed(1)} ms (${((median(walk) * 1000) / dirs).toFixed(1)} us/dir)`,
      `${median(walkAsync).toFixed(1)} ms, loop stall max ${median(stall).toFixed(1)} ms`,
      median(handle).toFixed(2), median(viaPid).toFixed(2), median(cold).toFixed(1), median(warm).toFixed(2),
    ]);
  }
} finally {
  for (const p of procs) if (p.pid && p.exitCode === null) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  await cgs.destroy();
}

const t = new Table({
  head: ['cgroups created', 'dirs walked', 'stat() us (baseline)', 'full walk, sync', 'full walk, async (8 at a time)', 'open_by_handle_at us/id', '/proc/<pid>/cgroup + stat us', 'resolver cold us/id (handle + parse + names)', 'resolver cached us/id'],
  style: { head: [], border: [] },
});
for (const r of rows) t.push(r);
console.log(`\nbench/identity - ${machine()}`);
console.log(`${REPS} repetitions, medians; per-id figures over up to 1000 ids; ${PIDS} live pids for the /proc column`);
console.log(t.toString());
