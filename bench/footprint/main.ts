// SPDX-License-Identifier: Apache-2.0
// The daemon's own footprint: resident memory and CPU (a) idle, (b) holding 100k flows
// (collected every 10 s), (c) the same while `ebpfmonctl top` refreshes every
// second. Baseline in the same run, over the same windows: an idle Node process
// (`node -e "setInterval(()=>{},1000)"`), i.e. what any Node daemon costs doing nothing.
//
//   sudo node build/js/bench/footprint/main.js [--window-s 40] [--slice-s 10] [--flows 100000]
//        [--settle-s 5] [--daemon-cpu-prof DIR] [--dirty-ring 0] [--calls 100]
//
// The daemon runs in a lab host with one veth to a peer (so the classifier is attached
// to an interface), production defaults apart from the socket, pin path, D-Bus, and
// maps.flows = 262144 (room for the flows below the LRU's eviction point). No traffic.
// Flows: synthetic open TCP flows in the real layout (test/helpers/flow-fill.ts), last seen
// now, so the GC keeps them all. CPU: the threads' run time from /proc schedstat (ns) over
// slices of `slice-s` (one GC interval each); the table shows the median slice and the
// whole window. RSS: VmRSS sampled every second (median, max) and VmHWM at the end.
// Last, `--calls` back-to-back processes.list calls as `top` makes them (`places: 1`, one
// connection), first full replies, then (when the daemon takes it) with `since`: the
// daemon's CPU per call (schedstat, over all of them) and the reply's size. With
// EBPFMON_DAEMON_MAIN pointing at another build's daemon, the same calls measure that build.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import Table from 'cli-table3';
import { withLab } from '../lib/lab.js';
import { CTL_MAIN, DAEMON_NODE_ARGS, daemonOnce, startDaemon } from '../../test/helpers/daemon.js';
import { machine, median, numArg, sleep } from '../lib/harness.js';
import { countFlows, fillFlows } from '../../test/helpers/flow-fill.js';
import { cpuProfPreload, memMiB, runMs, strArg } from '../lib/proc.js';
import { DaemonClient } from '../../client/src/rpc.js';
import { announceExternalWrite } from '../lib/daemon-probes.js';

const WINDOW_S = numArg('window-s', 40);
const SLICE_S = numArg('slice-s', 10);
const FLOWS = numArg('flows', 100_000);
/** The embedded history (on by default in the product) snapshots every open flow each
 * minute, a cost of its own (docs/history.md): off unless `--history 1`, so the figures are
 * the flow table's. */
const HISTORY = numArg('history', 0) === 1;
const SETTLE_S = numArg('settle-s', 5);
/** --dirty-ring 0: the daemon without the dirty-flow ring (flows.dirtyRing false, the walk fallback). */
const DIRTY_RING = numArg('dirty-ring', 1) === 1;
const MAP_FLOWS = 262_144;
/** --daemon-cpu-prof DIR: a V8 CPU profile of the daemon over all phases, written when it stops. */
const CPU_PROF_DIR = strArg('daemon-cpu-prof');
/** processes.list calls per kind in the last phase (0: none). */
const CALLS = numArg('calls', 100);
const TARGET_CPU_PCT = 1;
const TARGET_RSS_MIB = 150;


interface Sample { cpuPct: number[]; windowPct: number; rss: number[]; hwm: number }

interface PerCall { kind: string; calls: number; cpuMs: number; wallMs: number; bytes: number; rows: number }

/**
 * `CALLS` processes.list calls as top makes them, back to back on one connection: full
 * replies, then with `since` (null first, then each reply's cursor) unless the daemon
 * refuses it. Daemon CPU per call from its threads' schedstat over all of them.
 */
async function perCall(socketPath: string, pid: number): Promise<PerCall[]> {
  const c = await DaemonClient.connect(socketPath);
  const out: PerCall[] = [];
  try {
    for (const kind of ['full reply', 'since (incremental)']) {
      let since: string | null = null;
      const incremental = kind !== 'full reply';
      if (incremental) {
        try {
          since = (await c.call('processes.list', { places: 1, since: null })).cursor ?? null;
        } catch {
          break; // a daemon without incremental replies
        }
      }
      let bytes = 0;
      let rows = 0;
      const c0 = runMs(pid);
      const t0 = performance.now();
      for (let i = 0; i < CALLS; i++) {
        const r = await c.call('processes.list', incremental ? { places: 1, since } : { places: 1 });
        if (incremental) since = r.cursor!;
        bytes += JSON.stringify(r).length;
        rows += r.processes.length;
      }
      out.push({ kind, calls: CALLS, cpuMs: (runMs(pid) - c0) / CALLS, wallMs: (performance.now() - t0) / CALLS, bytes: bytes / CALLS, rows: rows / CALLS });
    }
  } finally {
    c.close();
  }
  return out;
}

/** Watches several pids over the same window: CPU per slice, RSS every second. */
async function watch(pids: Record<string, number>): Promise<Record<string, Sample>> {
  const names = Object.keys(pids);
  const out: Record<string, Sample> = Object.fromEntries(names.map((n) => [n, { cpuPct: [], windowPct: 0, rss: [], hwm: 0 }]));
  const start = Object.fromEntries(names.map((n) => [n, runMs(pids[n]!)]));
  const t0 = performance.now();
  const sliceStart = { ...start };
  let sliceT = t0;
  for (let s = 1; s <= WINDOW_S; s++) {
    await sleep(t0 + s * 1000 - performance.now());
    for (const n of names) out[n]!.rss.push(memMiB(pids[n]!).rss);
    if (s % SLICE_S === 0 || s === WINDOW_S) {
      const now = performance.now();
      for (const n of names) {
        const c = runMs(pids[n]!);
        out[n]!.cpuPct.push((100 * (c - sliceStart[n]!)) / (now - sliceT));
        sliceStart[n] = c;
      }
      sliceT = now;
    }
  }
  const wall = performance.now() - t0;
  for (const n of names) {
    out[n]!.windowPct = (100 * (runMs(pids[n]!) - start[n]!)) / wall;
    out[n]!.hwm = memMiB(pids[n]!).hwm;
  }
  return out;
}

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    process.kill(child.pid!, signal);
  });
}

async function main(): Promise<void> {
  await withLab('bench/footprint', async (lab) => {
    const host = await lab.host('mon');
    const peer = await lab.host('peer');
    await lab.link(host, peer);
    const idleNode = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
    lab.track(idleNode);
    const daemon = await startDaemon(host, {
      config: { maps: { flows: MAP_FLOWS }, flows: { gcIntervalSec: 10, ...(DIRTY_RING ? {} : { dirtyRing: false }) }, history: { enabled: HISTORY } },
      ...(CPU_PROF_DIR ? { env: { NODE_OPTIONS: `--require ${cpuProfPreload(lab.tmpdir(), CPU_PROF_DIR)}` } } : {}),
    });
    if (CPU_PROF_DIR) process.kill(daemon.pid, 'SIGUSR2');
    const rows: Array<{ phase: string; who: string; s: Sample; target: boolean }> = [];
    try {
      const status = await daemon.call('status');
      console.error(`daemon pid ${daemon.pid} up, classifier on ${status.interfaces.map((i) => i.name).join(', ') || 'nothing'}; idle node pid ${idleNode.pid}; settling ${SETTLE_S} s`);
      await sleep(SETTLE_S * 1000);

      console.error(`idle: watching ${WINDOW_S} s`);
      let w = await watch({ daemon: daemon.pid, node: idleNode.pid! });
      rows.push({ phase: 'idle, no flows, no traffic', who: 'ebpfmon daemon', s: w.daemon!, target: true });
      rows.push({ phase: 'idle, no flows, no traffic', who: 'baseline: idle node', s: w.node!, target: false });

      const mapPath = path.join(daemon.pinPath, 'maps/emon_flows');
      fillFlows(mapPath, { count: FLOWS, owners: 1000, ownerBase: 3_000_000, queriedPid: 0, queriedFlows: 0 });
      // Written from user space, these flows pushed no dirty records: say so as any writer
      // outside the programs must (one lost record counted: the daemon walks the table once
      // and keeps its totals from there, as it would have from the classifier's pushes).
      announceExternalWrite(daemon.pinPath);
      const present = countFlows(mapPath);
      // A few real flows may exist too (IPv6 neighbour discovery on the link).
      if (present < FLOWS || present > FLOWS + 100) throw new Error(`${present} flows present after writing ${FLOWS}`);
      console.error(`${present} flows: watching ${WINDOW_S} s`);
      w = await watch({ daemon: daemon.pid, node: idleNode.pid! });
      const flowsPhase = `${present} flows (GC every 10 s)`;
      rows.push({ phase: flowsPhase, who: 'ebpfmon daemon', s: w.daemon!, target: false });
      rows.push({ phase: flowsPhase, who: 'baseline: idle node', s: w.node!, target: false });

      const top = spawn(process.execPath, [CTL_MAIN, '--socket', daemon.socketPath, 'top', '--interval', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      lab.track(top);
      let refreshes = 0;
      top.stdout!.setEncoding('utf8').on('data', (d: string) => (refreshes += d.split('ebpfmon top - ').length - 1));
      await sleep(2000); // started and connected
      console.error(`${present} flows + ebpfmonctl top (pid ${top.pid}): watching ${WINDOW_S} s`);
      const r0 = refreshes;
      w = await watch({ daemon: daemon.pid, node: idleNode.pid!, top: top.pid! });
      const tops = refreshes - r0;
      await stop(top, 'SIGINT');
      const after = countFlows(mapPath);
      // The daemon's answers covered the filled flows (else the CPU figure would be of an empty table).
      const seen = (await daemon.call('processes.list', {})).processes.reduce((n, p) => n + p.flows, 0);
      if (seen < FLOWS) throw new Error(`processes.list counted ${seen} flows of ${present}`);
      const calls = CALLS > 0 ? await perCall(daemon.socketPath, daemon.pid) : [];
      const fi = (await daemon.call('status')).flowIndex as { mode: string; fullWalks: number; refreshes: number; flowsRead: number } | undefined;
      const ph = `${present} flows + ebpfmonctl top (${tops} refreshes)`;
      rows.push({ phase: ph, who: 'ebpfmon daemon', s: w.daemon!, target: false });
      rows.push({ phase: ph, who: 'ebpfmonctl top (client)', s: w.top!, target: false });
      rows.push({ phase: ph, who: 'baseline: idle node', s: w.node!, target: false });

      const table = new Table({
        head: ['phase', 'process', `CPU % of a core: median ${SLICE_S} s slice (min..max)`, 'CPU % whole window', 'RSS MiB median (max)', 'peak RSS MiB', `CPU < ${TARGET_CPU_PCT}% idle`, `RSS < ${TARGET_RSS_MIB} MiB`],
        style: { head: [], border: [] },
      });
      let pass = true;
      for (const r of rows) {
        const daemonRow = r.who === 'ebpfmon daemon';
        const cpuOk = median(r.s.cpuPct) < TARGET_CPU_PCT && r.s.windowPct < TARGET_CPU_PCT;
        const rssOk = Math.max(...r.s.rss, r.s.hwm) < TARGET_RSS_MIB;
        if (daemonRow && ((r.target && !cpuOk) || !rssOk)) pass = false;
        table.push([
          r.phase, r.who,
          `${median(r.s.cpuPct).toFixed(2)} (${Math.min(...r.s.cpuPct).toFixed(2)}..${Math.max(...r.s.cpuPct).toFixed(2)})`,
          r.s.windowPct.toFixed(2),
          `${median(r.s.rss).toFixed(1)} (${Math.max(...r.s.rss).toFixed(1)})`,
          r.s.hwm.toFixed(1),
          daemonRow && r.target ? (cpuOk ? 'PASS' : 'FAIL') : '-',
          daemonRow ? (rssOk ? 'PASS' : 'FAIL') : '-',
        ]);
      }
      console.log(`\nbench/footprint - ${machine()}`);
      console.log(`${WINDOW_S} s per phase, CPU in ${SLICE_S} s slices (schedstat, ns), RSS every second; the idle node baseline is watched over the same windows. Shared 2-core VM.`);
      console.log(table.toString());
      const d = rows.filter((r) => r.who === 'ebpfmon daemon');
      const b = rows.filter((r) => r.who === 'baseline: idle node');
      console.log(`daemon: ${process.env.EBPFMON_DAEMON_MAIN ?? 'this build'} (node ${DAEMON_NODE_ARGS.join(' ') || 'defaults'}); history ${HISTORY ? 'on' : 'off'}; processes.list counted ${seen} flows; flow reads: ${fi ? `${fi.mode}, ${fi.fullWalks} full walks, ${fi.refreshes} refreshes reading ${fi.flowsRead} flows` : 'n/a'}`);
      if (calls.length) {
        const t = new Table({ head: ['processes.list { places: 1 } at 100k flows', 'calls', 'daemon CPU ms per call', 'wall ms per call', 'reply bytes', 'rows per reply'], style: { head: [], border: [] } });
        for (const x of calls) t.push([x.kind, x.calls, x.cpuMs.toFixed(2), x.wallMs.toFixed(2), Math.round(x.bytes), Math.round(x.rows)]);
        console.log(t.toString());
      }
      console.log(`daemon / idle node RSS: ${d.map((r, i) => (median(r.s.rss) / median(b[i]!.s.rss)).toFixed(1)).join(', ')} (per phase); flows still present after the top phase: ${after}`);
      console.log(`targets (daemon): idle CPU under ${TARGET_CPU_PCT}%, RSS under ${TARGET_RSS_MIB} MiB in every phase: ${pass ? 'PASS' : 'FAIL'}`);
    } finally {
      await daemon.stop();
      const td = await daemonOnce(host, daemon.configPath, ['--teardown']);
      if (td.code !== 0) console.error(`teardown failed: ${td.stderr}`);
      await stop(idleNode);
    }
  });
}

await main();
