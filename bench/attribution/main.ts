// SPDX-License-Identifier: Apache-2.0
// Short TCP connections between two lab namespaces, as fast as the machine allows and at
// a fixed 10k/s, with (a) no tool, (b) libbpf-tools' tcplife, (c) the ebpfmon daemon:
// connections per second reached, the share attributed to the right pid, events lost,
// and the tool's own CPU. Every phase of one repetition gets the identical load.
//
//   sudo node build/js/bench/attribution/main.js [--reps 3] [--workers 8] [--max-conns 100000]
//        [--max-seconds 8] [--rate 10000] [--rate-conns 50000] [--max-minutes 20]
//        [--daemon-cpu-prof DIR] [--geo off,on] [--history off,on] [--history-budget N[,M...]] [--history-listing-sec N] [--history-commit-sec N] [--steady-after S] [--baseline DIR] [--only-ebpfmon] [--modes rate]
//        [--subscribers batch] [--ring-bytes N] [--no-loop-probe] [--load-nice N] [--daemon-nice N]
//
// Setup: a Lab with hosts `cli` and `srv` joined by a veth pair (198.18.0.0/15). The
// server (bench/attribution/acceptor.c) accepts and closes at once; the load generator
// (bench/attribution/connload.c) forks `workers` processes in `cli` that connect, wait
// for the server's FIN and close, each writing the local port of every connection it made
// to a file named after its pid: that is the truth, independent of any tool.
//
// ebpfmon: the real daemon in `cli` (startDaemon, production defaults apart from the
// socket, pin path and D-Bus), one events.subscribe client (close events) in this
// process, subscribed as `ebpfmonctl events` does (batches of rows, client/src/events.ts)
// and, in the `ebpfmon-event` phase, with one `events.event` notification per event; attribution = close events whose (local port, pid) match the truth; lost =
// connections without a close event, plus the daemon's loss counters. Its programs stay
// attached while the daemon runs, so its phases run after tcplife's and the deployment is
// torn down (--teardown) before the next repetition's tool-free phases.
// tcplife: global (every namespace), filtered in the kernel to the server port (-D), so
// that, like ebpfmon in its namespace, it reports one close per connection (the client
// side). Output to a pipe (fully buffered, as when redirected). Attribution = lines whose
// (LPORT, PID) match the truth; lost = connections without a line.
// Tool CPU = the tool's threads' time on a CPU (schedstat, ns) over the load and the drain
// after it;
// BPF time in the kernel is charged to the processes that trigger it, so it shows in the
// load generator's own CPU per connection (load CPU column), not in the tool's.
//
// Variants of the daemon, each run in every repetition, in an order that rotates from one
// repetition to the next: `--geo off,on` runs its phases once per `geo.enabled` setting,
// `--history off,on` once per `history.enabled` setting (the history of closed flows, on by
// default: its share of the daemon's CPU per connection);
// `--baseline DIR` also runs them with the daemon built in another checkout (DIR/build: e.g.
// main's, for a before/after in the same run). `--only-ebpfmon`, `--modes` (max, rate) and
// `--subscribers` (batch, event, none) narrow a run to the phases being compared.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import Table from 'cli-table3';
import type { Host, Lab } from '../../test/helpers/lab.js';
import { withLab } from '../lib/lab.js';
import { daemonOnce, startDaemon, type TestDaemon } from '../../test/helpers/daemon.js';
import { DaemonClient } from '../../client/src/rpc.js';
import { METHODS, NOTIFICATIONS, type EventNotification, type LostNotification, type MonitorEvent, type ProgramsListResult, type StatusResult } from '../../daemon/src/contract/index.js';
import { subscribeEvents } from '../../client/src/events.js';
import { baselineDaemonMain, compileC, machine, median, numArg, ROOT, sleep } from '../lib/harness.js';
import { CpuWindow, cpuProfPreload, strArg } from '../lib/proc.js';
import { loopProbe, stallBreakdown } from '../lib/daemon-probes.js';

const REPS = numArg('reps', 3);
const WORKERS = numArg('workers', 8);
const MAX_CONNS = numArg('max-conns', 100_000);
const MAX_SECONDS = numArg('max-seconds', 8);
const RATE = numArg('rate', 10_000);
const RATE_CONNS = numArg('rate-conns', 50_000);
const DEADLINE = Date.now() + numArg('max-minutes', 20) * 60_000;
const PORT = 30_000 + (process.pid % 30_000); // unlikely to meet anyone else's traffic in tcplife's global view
const DRAIN_MAX_MS = 15_000;
/** How long to wait after the drain for closes the collector infers (flows.closeCheckSec +
 * flows.gcIntervalSec at their defaults, and margin). */
const LATE_CLOSE_MS = 18_000;


const probeSummary = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN);
  return `max ${(s.at(-1) ?? NaN).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)}, median ${q(0.5).toFixed(1)} over ${s.length}`;
};
const SERVER_WORKERS = 4;
/** --daemon-cpu-prof DIR: the daemon writes a V8 CPU profile there when it stops (where its CPU goes). */
const CPU_PROF_DIR = strArg('daemon-cpu-prof');
/** `--NAME off,on`: the settings of an on/off variant dimension (none: the config's default). */
const onOff = (name: string): boolean[] => (strArg(name) ?? '').split(',').filter(Boolean).map((g) => {
  if (g !== 'on' && g !== 'off') throw new Error(`--${name}: expected off, on or off,on, got ${g}`);
  return g === 'on';
});
const GEO = onOff('geo');
const HISTORY = onOff('history');
/** --history-budget N[,M...]: `history.detailFlowsPerSec` of the daemons whose history is on
 * (default: the config's, 1000); several values make a history-on variant of each. */
const HISTORY_BUDGETS = (strArg('history-budget') ?? '').split(',').filter(Boolean).map((x) => {
  const n = Number(x);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--history-budget: expected whole numbers of flows per second (0 or more), got ${x}`);
  return n;
});
/** --history-listing-sec N: `history.snapshotIntervalSec` (default: the config's, 60): listings of the flow table for history this often. */
const HISTORY_LISTING_SEC = strArg('history-listing-sec') === undefined ? undefined : numArg('history-listing-sec', 60);
/** --history-commit-sec N: `history.commitIntervalSec` (default: the config's, 10): how long records wait in the writer before DuckDB commits them. */
const HISTORY_COMMIT_SEC = strArg('history-commit-sec') === undefined ? undefined : numArg('history-commit-sec', 10);
/** --steady-after S: also the daemon's CPU from S s into each load to its end (after a
 * start's bursts: history's first 10,000 flows in detail), split by thread. */
const STEADY_AFTER_S = strArg('steady-after') === undefined ? undefined : numArg('steady-after', 5);
const BASELINE = strArg('baseline');
/** The daemon's history writer thread (daemon/src/history/worker.ts names it). */
const HISTORY_THREAD = 'ebpfmon-history';
/** --ring-bytes N: the daemons' event ring (`maps.ringBufferBytes`; default: the config's, 16 MiB). */
/**
 * --no-loop-probe: no `flows.list` every 10 ms to time the daemon's event loop. The probe's
 * own work is in the daemon's CPU (each call reads the flows changed since the last one, at
 * 10k connections/s about 100 of them): without it, the tool CPU column is the daemon's
 * cost per connection alone, as tcplife's is (tcplife is not probed).
 */
/** Keeps each phase's truth files and the close events seen (debugging a missed close). */
const KEEP_DIR = strArg('keep-dir');
const LOOP_PROBE = !process.argv.includes('--no-loop-probe');
/**
 * --load-nice N: the load generator and the acceptors run at nice N (default 0). At 19 they
 * take what CPU the tools leave: the loop probe then shows the daemon's own stall rather than
 * its wait for one of the VM's two CPUs behind a dozen load processes (stallBreakdown()).
 */
const LOAD_NICE = numArg('load-nice', 0);
/**
 * --daemon-nice N: the daemon starts at nice N (default: the unit's Nice=, as systemd starts
 * it; the daemon then keeps it for its event loop alone, daemon/src/sys/priority.ts). The
 * loop prober stays at this process's niceness, as a client would.
 */
const UNIT_NICE = Number(/^Nice=(-?\d+)$/m.exec(fs.readFileSync(path.join(ROOT, 'systemd/ebpfmon.service'), 'utf8'))?.[1] ?? 0);
const DAEMON_NICE = strArg('daemon-nice') === undefined ? UNIT_NICE : numArg('daemon-nice', 0);
/** `cmd args` as spawned, at the load's niceness. */
const niced = (cmd: string, args: string[]): [string, string[]] => (LOAD_NICE === 0 ? [cmd, args] : ['nice', ['-n', String(LOAD_NICE), cmd, ...args]]);
/** Issue 17's stall target: probes this long or longer are broken down (stallBreakdown). */
const STALL_TARGET_MS = 10;
const RING_BYTES = strArg('ring-bytes') === undefined ? undefined : numArg('ring-bytes', 0);
const ONLY_EBPFMON = process.argv.includes('--only-ebpfmon');
const MODES = listArg('modes', ['max', 'rate'] as const);
const SUBSCRIBERS = listArg('subscribers', ['batch', 'event', 'none'] as const);

function listArg<T extends string>(name: string, all: readonly T[]): T[] {
  const v = strArg(name);
  if (v === undefined) return [...all];
  const out = v.split(',').filter(Boolean);
  for (const x of out) if (!all.includes(x as T)) throw new Error(`--${name}: expected some of ${all.join(',')}, got ${x}`);
  return out as T[];
}

/** A daemon to measure: which build, and geo on or off (undefined: the config's default). */
interface Variant { name: string; main?: string; objectDir?: string; geo?: boolean; history?: boolean; budget?: number }

function variants(): Variant[] {
  const builds: Variant[] = [{ name: BASELINE ? 'this build' : '' }];
  if (BASELINE) {
    const root = path.resolve(BASELINE, 'build');
    const main = baselineDaemonMain(BASELINE);
    if (!fs.existsSync(path.join(root, 'bpf'))) throw new Error(`--baseline: ${path.join(root, 'bpf')} is missing (build that checkout first)`);
    builds.push({ name: `baseline ${path.basename(path.resolve(BASELINE))}`, main, objectDir: path.join(root, 'bpf') });
  }
  const named = (b: Variant, label: string) => [b.name, label].filter(Boolean).join(', ');
  const withGeo = GEO.length === 0 ? builds : builds.flatMap((b) => GEO.map((on) => ({ ...b, name: named(b, `geo ${on ? 'on' : 'off'}`), geo: on })));
  const withHistory = HISTORY.length === 0 ? withGeo : withGeo.flatMap((b) => HISTORY.map((on) => ({ ...b, name: named(b, `history ${on ? 'on' : 'off'}`), history: on })));
  if (HISTORY_BUDGETS.length === 0) return withHistory;
  if (HISTORY_BUDGETS.length === 1) return withHistory.map((b) => ({ ...b, budget: HISTORY_BUDGETS[0] }));
  return withHistory.flatMap((b) => (b.history === false ? [b] : HISTORY_BUDGETS.map((n) => ({ ...b, name: named(b, `budget ${n}`), budget: n }))));
}

type Tool = 'none' | 'tcplife' | 'ebpfmon' | 'ebpfmon-event' | 'ebpfmon-nosub';
/** How the bench subscribes: as the CLI does (batches of rows), one notification per event, or not at all. */
type Subscriber = 'batch' | 'event' | false;
type Mode = 'max' | 'rate';

interface LoadResult { made: number; failed: number; slow: number; badWorkers: number; elapsedNs: number; cpuUs: number; pids: number[] }

interface Phase {
  rep: number;
  tool: Tool;
  /** The daemon variant (empty when there is one). */
  variant: string;
  mode: Mode;
  made: number;
  failed: number;
  slow: number;
  rate: number;
  loadCpuUsPerConn: number;
  /** Records the tool produced for this phase's connections. */
  seen: number;
  correct: number;
  lost: number;
  /** ebpfmon: status deltas; tcplife: "lost" lines on stderr. */
  toolLoss: string;
  toolCpuMs: number;
  /** The kernel's share of toolCpuMs (stime). */
  toolSysMs?: number;
  toolPct: number;
  notes: string;
}

/** (local port, pid) -> count: the truth or what a tool reported. */
type Multiset = Map<number, Map<number, number>>;

/** Which programs the kernel skipped between two answers: " prog n, ..." or " none". */
function probeMisses(s0: ProgramsListResult, s1: ProgramsListResult): string {
  const before = new Map(s0.programs.map((p) => [p.name, p.recursionMisses]));
  const parts = s1.programs
    .map((p) => [p.name, p.recursionMisses - (before.get(p.name) ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n}`);
  return ` ${parts.length ? parts.join(', ') : 'none'}`;
}

function add(m: Multiset, port: number, pid: number): void {
  let byPid = m.get(port);
  if (!byPid) m.set(port, (byPid = new Map()));
  byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
}

/** How many reported (port, pid) pairs the truth holds (each truth entry counts once). */
function matched(truth: Multiset, seen: Multiset): number {
  let n = 0;
  for (const [port, byPid] of seen) {
    const t = truth.get(port);
    if (!t) continue;
    for (const [pid, c] of byPid) n += Math.min(c, t.get(pid) ?? 0);
  }
  return n;
}

/** Up to `max` truth entries the tool missed or named another pid for: "port pid (tool said: pids)". */
function misses(truth: Multiset, seen: Multiset, max = 5): string[] {
  const out: string[] = [];
  for (const [port, byPid] of truth) {
    for (const [pid, c] of byPid) {
      const got = seen.get(port)?.get(pid) ?? 0;
      if (got >= c) continue;
      const other = [...(seen.get(port)?.keys() ?? [])].filter((p) => p !== pid);
      out.push(`port ${port} pid ${pid}${other.length ? ` (reported as ${other.join(',')})` : ' (no record)'}`);
      if (out.length >= max) return out;
    }
  }
  return out;
}

function readTruth(dir: string): Multiset {
  const m: Multiset = new Map();
  for (const f of fs.readdirSync(dir)) {
    const pid = Number(f.replace(/\.ports$/, ''));
    const b = fs.readFileSync(path.join(dir, f));
    for (let i = 0; i + 1 < b.length; i += 2) add(m, b.readUInt16LE(i), pid);
  }
  return m;
}

/** Waits for `child` to exit, SIGKILLing it (by pid) after `ms`. */
function waitExit(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), ms);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

class Bench {
  readonly phases: Phase[] = [];
  private phaseN = 0;
  private constructor(
    readonly lab: Lab,
    readonly cli: Host,
    readonly srv: Host,
    readonly cliIp: string,
    readonly srvIp: string,
    readonly connload: string,
    readonly tmp: string,
  ) {}

  /** Everything lives in the lab (namespaces, processes, temp dir, pins): lab.destroy() removes it. */
  static async create(lab: Lab): Promise<Bench> {
    const tmp = lab.tmpdir();
    const connload = compileC(path.join(ROOT, 'bench/attribution/connload.c'), tmp, []);
    const acceptor = compileC(path.join(ROOT, 'bench/attribution/acceptor.c'), tmp, []);
    const b = await (async () => {
      const cli = await lab.host('cli');
      const srv = await lab.host('srv');
      const link = await lab.link(cli, srv, { ipv6: false });
      // Room for a phase's connections without reusing ports too soon (this namespace only).
      await cli.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
      const server = srv.spawn(...niced(acceptor, [link.b.ip4, String(PORT), String(SERVER_WORKERS)]));
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error('acceptor did not start')), 10_000);
        server.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('ready')) {
            clearTimeout(t);
            resolve();
          }
        });
        server.once('exit', (c) => reject(new Error(`acceptor exited (${c})`)));
      });
      return new Bench(lab, cli, srv, link.a.ip4, link.b.ip4, connload, tmp);
    })();
    return b;
  }

  /** Client sockets to the server that have not reached CLOSE yet (TIME_WAIT has). */
  async openSockets(): Promise<number> {
    const r = await this.cli.exec('ss', ['-Htan', 'dst', this.srvIp, 'dport', '=', `:${PORT}`]);
    return r.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('TIME-WAIT')).length;
  }

  /** TCP segments the client namespace retransmitted so far (lost FINs/ACKs delay closes). */
  async retrans(): Promise<number> {
    const r = await this.cli.exec('nstat', ['-asz', 'TcpRetransSegs']);
    return Number(/TcpRetransSegs\s+(\d+)/.exec(r.stdout)?.[1] ?? NaN);
  }

  /**
   * After a load: waits until every client socket has closed (the kernel's truth, so that
   * a close delayed by a retransmission is not mistaken for a lost event), bounded.
   */
  async waitClosed(): Promise<number> {
    const t0 = Date.now();
    let n = await this.openSockets();
    while (n > 0 && Date.now() - t0 < DRAIN_MAX_MS) {
      await sleep(100);
      n = await this.openSockets();
    }
    return n;
  }

  /** One load run; the truth files land in a fresh directory. */
  async load(mode: Mode): Promise<{ r: LoadResult; truth: Multiset }> {
    const dir = path.join(this.tmp, `phase${this.phaseN++}`);
    fs.mkdirSync(dir);
    const [total, rate, maxMs] = mode === 'max' ? [MAX_CONNS, 0, MAX_SECONDS * 1000] : [RATE_CONNS, RATE, Math.ceil((RATE_CONNS / RATE) * 1000 * 1.5)];
    const child = this.cli.spawn(...niced(this.connload, [this.srvIp, String(PORT), String(WORKERS), String(total), String(rate), String(maxMs), dir]));
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await waitExit(child, maxMs + 30_000);
    if (code !== 0) throw new Error(`connload exited with ${code}: ${err.trim()}`);
    const r = JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
    const truth = readTruth(dir);
    if (KEEP_DIR) fs.cpSync(dir, path.join(KEEP_DIR, path.basename(dir)), { recursive: true });
    fs.rmSync(dir, { recursive: true, force: true });
    return { r, truth };
  }

  private record(rep: number, tool: Tool, mode: Mode, r: LoadResult, x: Omit<Phase, 'rep' | 'tool' | 'mode' | 'made' | 'failed' | 'slow' | 'rate' | 'loadCpuUsPerConn' | 'variant'>, truth?: Multiset, seen?: Multiset, variant = ''): void {
    if (truth && seen && x.correct < r.made) console.error(`  rep ${rep + 1} ${tool} ${mode}: e.g. ${misses(truth, seen).join('; ')}`);
    const p: Phase = {
      rep, tool, mode, variant, made: r.made, failed: r.failed, slow: r.slow,
      rate: r.made / (r.elapsedNs / 1e9), loadCpuUsPerConn: r.cpuUs / Math.max(1, r.made), ...x,
    };
    this.phases.push(p);
    console.error(`rep ${rep + 1} ${tool}${variant ? ` [${variant}]` : ''} ${mode}: ${p.made} conns at ${p.rate.toFixed(0)}/s (${p.failed} failed, ${p.slow} slow), seen ${p.seen}, right pid ${p.correct}, lost ${p.lost}, tool CPU ${p.toolCpuMs.toFixed(0)} ms (${p.toolPct.toFixed(1)}% of a core${p.toolSysMs !== undefined ? `, ${p.toolSysMs.toFixed(0)} ms in the kernel` : ''}) ${p.toolLoss} ${p.notes}`);
  }

  async none(rep: number, mode: Mode): Promise<void> {
    const rt = await this.retrans();
    const { r } = await this.load(mode);
    const open = await this.waitClosed();
    this.record(rep, 'none', mode, r, { seen: 0, correct: 0, lost: 0, toolLoss: '', toolCpuMs: 0, toolPct: 0, notes: `retransmits ${(await this.retrans()) - rt}${open ? `, ${open} still open` : ''}` });
  }

  async tcplife(rep: number, mode: Mode): Promise<void> {
    const child = spawn('tcplife', ['-D', String(PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.lab.track(child);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    await waitTcplifeReady(child);
    const rt = await this.retrans();
    const cpu = new CpuWindow(child.pid!);
    const { r, truth } = await this.load(mode);
    const open = await this.waitClosed();
    // Its poll loop wakes every 100 ms; give it time to print everything before SIGINT
    // (on SIGINT it stops polling at once).
    await sleep(1500);
    const used = cpu.read();
    process.kill(child.pid!, 'SIGINT');
    await waitExit(child, 10_000);
    const seen: Multiset = new Map();
    let n = 0;
    for (const line of out.split('\n')) {
      // PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS (COMM has no spaces here)
      const f = line.trim().split(/\s+/);
      if (f.length < 9 || f[2] !== this.cliIp || f[4] !== this.srvIp || Number(f[5]) !== PORT) continue;
      add(seen, Number(f[3]), Number(f[0]));
      n++;
    }
    const lostLines = [...err.matchAll(/lost (\d+) events/gi)].reduce((s, m) => s + Number(m[1]), 0);
    this.record(rep, 'tcplife', mode, r, {
      seen: n, correct: matched(truth, seen), lost: Math.max(0, r.made - n),
      toolLoss: `perf buffer lost ${lostLines}`, toolCpuMs: used.cpuMs, toolSysMs: used.sysMs, toolPct: (100 * used.cpuMs) / (r.elapsedNs / 1e6),
      notes: `retransmits ${(await this.retrans()) - rt}${open ? `, ${open} still open` : ''}`,
    }, truth, seen);
  }

  async ebpfmon(rep: number, modes: Array<{ mode: Mode; subscribe: Subscriber }>, variant: Variant = { name: '' }): Promise<void> {
    const daemon: TestDaemon = await startDaemon(this.cli, {
      config: {
        flows: { gcIntervalSec: 10 },
        ...(RING_BYTES !== undefined ? { maps: { ringBufferBytes: RING_BYTES } } : {}),
        ...(variant.geo !== undefined ? { geo: { enabled: variant.geo } } : {}),
        ...(variant.history !== undefined ? { history: { enabled: variant.history, ...(variant.budget !== undefined ? { detailFlowsPerSec: variant.budget } : {}), ...(HISTORY_LISTING_SEC !== undefined ? { snapshotIntervalSec: HISTORY_LISTING_SEC } : {}),
          ...(HISTORY_COMMIT_SEC !== undefined ? { commitIntervalSec: HISTORY_COMMIT_SEC } : {}) } } : {}),
        ...(variant.objectDir ? { bpfObjectDir: variant.objectDir } : {}),
      },
      ...(variant.main ? { main: variant.main } : {}),
      nice: DAEMON_NICE,
      ...(CPU_PROF_DIR ? { env: { NODE_OPTIONS: `--require ${cpuProfPreload(this.tmp, CPU_PROF_DIR)}` } } : {}),
    });
    let client: DaemonClient | null = null;
    if (CPU_PROF_DIR) process.kill(daemon.pid, 'SIGUSR2');
    try {
      client = await DaemonClient.connect(daemon.socketPath);
      let events: Array<{ port: number; pid: number | null; by: string }> = [];
      let lostNotified = 0;
      const onEvent = (e: MonitorEvent) => {
        if (e.type === 'close' && e.localAddr === this.cliIp && e.remoteAddr === this.srvIp && e.remotePort === PORT) {
          events.push({ port: e.localPort, pid: e.pid, by: e.attributedBy });
        }
      };
      const onLost = (lost: number) => (lostNotified += lost);
      for (const { mode, subscribe } of modes) {
        events = [];
        lostNotified = 0;
        let sub: string | null = null;
        if (subscribe === 'batch') {
          sub = await subscribeEvents(client, { types: ['close'] }, { onEvent, onLost });
        } else if (subscribe === 'event') {
          client.onNotification(NOTIFICATIONS.event, (p) => onEvent((p as EventNotification).event));
          client.onNotification(NOTIFICATIONS.lost, (p) => onLost((p as LostNotification).lost));
          sub = (await client.call(METHODS.eventsSubscribe, { types: ['close'] })).subscription;
        }
        const s0 = await client.call(METHODS.status);
        const p0 = await client.call(METHODS.programsList);
        const idleProbe = LOOP_PROBE ? loopProbe(daemon.socketPath) : { stop: async () => [] as number[] };
        await sleep(1000);
        const idleRtts = await idleProbe.stop();
        const rt = await this.retrans();
        const cpu = new CpuWindow(daemon.pid);
        const probe = LOOP_PROBE ? loopProbe(daemon.socketPath, daemon.pid) : { stop: async () => [] as number[], samples: () => [] };
        const steady: { w: CpuWindow | null } = { w: null };
        const steadyTimer = STEADY_AFTER_S !== undefined ? setTimeout(() => (steady.w = new CpuWindow(daemon.pid)), STEADY_AFTER_S * 1000) : null;
        const { r, truth } = await this.load(mode);
        if (steadyTimer) clearTimeout(steadyTimer);
        const steadyUsed = steady.w?.read(HISTORY_THREAD);
        const open = await this.waitClosed();
        // Drain: until every connection has its close event, or nothing new for 2 s.
        // Without a subscriber, the daemon's own count of decoded close events says it.
        const received = async () => (sub ? events.length : (await client!.call(METHODS.status)).events.received.close! - s0.events.received.close!);
        const t0 = Date.now();
        let last = -1;
        let lastChange = Date.now();
        for (let n = await received(); n < r.made && Date.now() - t0 < DRAIN_MAX_MS && Date.now() - lastChange < 2000; n = await received()) {
          if (n !== last) {
            last = n;
            lastChange = Date.now();
          }
          await sleep(sub ? 50 : 250);
        }
        const used = cpu.read(HISTORY_THREAD);
        // A close the kernel did not report is inferred by the collector once the flow has
        // been silent flows.closeCheckSec (5 s) and a collection (every 10 s) ran: wait for
        // it, outside the CPU window.
        const beforeLate = await received();
        for (let n = beforeLate; n < r.made && Date.now() - lastChange < LATE_CLOSE_MS; n = await received()) {
          if (n !== last) {
            last = n;
            lastChange = Date.now();
          }
          await sleep(250);
        }
        const late = (await received()) - beforeLate;
        const loadRtts = await probe.stop();
        const s1 = await client.call(METHODS.status);
        const p1 = await client.call(METHODS.programsList);
        const byThread = (u: ReturnType<CpuWindow['read']>) =>
          `main ${Math.round(u.threads.main)}, history writer ${Math.round(u.threads.named)}, other ${Math.round(u.threads.other)} (${[...u.threads.otherByName].sort((a, b) => b[1] - a[1]).map(([n, ms]) => `${n} ${Math.round(ms)}`).join(', ')})`;
        const inWindow = steadyUsed ? (r.made * steadyUsed.wallMs) / (r.elapsedNs / 1e6) : 0;
        const hl = s1.history?.listings;
        const listings = hl ? `; history listings so far: ${hl.full} full, ${hl.changesOnly} of changes, ${hl.flows} flows and ${hl.gone} gone listed${hl.last ? ` (the last at ${hl.last.at}: ${hl.last.flows} flows, ${hl.last.gone} gone, ${hl.last.ms} ms)` : ''}; records written ${s1.history!.records.written}, rolled up ${s1.history!.records.rolledUp}` : '';
        const net = `CPU ms by thread: ${byThread(used)}${listings}${steadyUsed ? `; steady from ${STEADY_AFTER_S} s to the load's end (${Math.round(steadyUsed.wallMs)} ms, about ${Math.round(inWindow)} conns): ${((1000 * steadyUsed.cpuMs) / inWindow).toFixed(2)} us/conn, ms by thread ${byThread(steadyUsed)}` : ''}; retransmits ${(await this.retrans()) - rt}${open ? `, ${open} still open` : ''}; ${LOOP_PROBE ? `loop probe under load: ${probeSummary(loadRtts)} (idle daemon before: ${probeSummary(idleRtts)}); ${stallBreakdown(probe.samples(), STALL_TARGET_MS)}` : 'no loop probe'}`;
        if (sub) await client.call(METHODS.eventsUnsubscribe, { subscription: sub });
        if (!sub) {
          const n = s1.events.received.close! - s0.events.received.close!;
          this.record(rep, 'ebpfmon-nosub', mode, r, {
            seen: n, correct: 0, lost: Math.max(0, r.made - n),
            toolLoss: `ringbuf full ${s1.loss.ringbufFull - s0.loss.ringbufFull}, kernel probe misses ${s1.loss.probeMisses - s0.loss.probeMisses} (skipped runs${probeMisses(p0, p1)}; rescued ${s1.counters.stateChangesRescued! - s0.counters.stateChangesRescued!}), close events decoded ${n}, closes inferred ${s1.counters.closesInferred! - s0.counters.closesInferred!} (${late} after the drain), at a tuple's reuse ${(s1.counters.closesInferredAtReuse ?? 0) - (s0.counters.closesInferredAtReuse ?? 0)}`,
            toolCpuMs: used.cpuMs, toolSysMs: used.sysMs, toolPct: (100 * used.cpuMs) / (r.elapsedNs / 1e6), notes: net,
          }, undefined, undefined, variant.name);
          continue;
        }
        if (KEEP_DIR) fs.writeFileSync(path.join(KEEP_DIR, `phase${this.phaseN - 1}.seen`), events.map((e) => `${e.port} ${e.pid}`).join('\n'));
        const seen: Multiset = new Map();
        const how = new Map<string, number>();
        for (const e of events) {
          add(seen, e.port, e.pid ?? -1);
          how.set(e.by, (how.get(e.by) ?? 0) + 1);
        }
        const d = (f: (s: StatusResult) => number) => f(s1) - f(s0);
        this.record(rep, subscribe === 'event' ? 'ebpfmon-event' : 'ebpfmon', mode, r, {
          seen: events.length, correct: matched(truth, seen), lost: Math.max(0, r.made - events.length),
          toolLoss: `ringbuf full ${d((s) => s.loss.ringbufFull)}, subscriber dropped ${d((s) => s.loss.subscriberDropped)} (+${lostNotified} notified), kernel close events ${d((s) => s.counters.closeEvents!)}, kernel probe misses ${d((s) => s.loss.probeMisses)} (skipped runs${probeMisses(p0, p1)}; rescued ${d((s) => s.counters.stateChangesRescued!)}), flows evicted ${d((s) => s.loss.flowsEvicted)}, closes inferred ${d((s) => s.counters.closesInferred!)} (${late} after the drain), at a tuple's reuse ${d((s) => s.counters.closesInferredAtReuse ?? 0)}, longest drain so far ${s1.events.maxDrainMs} ms; main thread's wakeups ${used.mainWakeups ?? '?'}; flow index: ${d((s) => s.flowIndex.dirtyRecords)} dirty-ring records, ${d((s) => s.flowIndex.fullWalks)} full walks (resyncs: ring full ${d((s) => s.flowIndex.resyncs.ringFull)}, near full ${d((s) => s.flowIndex.resyncs.nearFull)}), ${d((s) => s.flowIndex.refreshes)} refreshes reading ${d((s) => s.flowIndex.flowsRead)} flows`,
          toolCpuMs: used.cpuMs, toolSysMs: used.sysMs, toolPct: (100 * used.cpuMs) / (r.elapsedNs / 1e6),
          notes: `${net}; by ${[...how].map(([k, v]) => `${k} ${v}`).join(', ')}`,
        }, truth, seen, variant.name);
      }
    } finally {
      client?.close();
      await daemon.stop();
      const td = await daemonOnce(this.cli, daemon.configPath, ['--teardown']);
      if (td.code !== 0) console.error(`teardown failed: ${td.stderr}`);
    }
  }
}

/** tcplife opens its perf buffer (one perf_event fd per CPU) after attaching its tracepoint: then it is live. */
async function waitTcplifeReady(child: ChildProcess): Promise<void> {
  const t0 = Date.now();
  const want = 1 + os.cpus().length; // the tracepoint's perf event + one per CPU for the buffer
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tcplife exited (${child.exitCode})`);
    let perf = 0;
    try {
      for (const fd of fs.readdirSync(`/proc/${child.pid}/fd`)) {
        try {
          if (fs.readlinkSync(`/proc/${child.pid}/fd/${fd}`).includes('perf_event')) perf++;
        } catch {
          /* closed meanwhile */
        }
      }
    } catch {
      /* not started yet */
    }
    if (perf >= want) break;
    if (Date.now() - t0 > 20_000) throw new Error('tcplife not ready after 20 s');
    await sleep(50);
  }
  await sleep(300);
}

function summarize(phases: Phase[], tool: Tool, mode: Mode, variant?: string) {
  const ps = phases.filter((p) => p.tool === tool && p.mode === mode && (variant === undefined || p.variant === variant));
  if (ps.length === 0) return null;
  const range = (xs: number[], dp = 0) => `${median(xs).toFixed(dp)} (${Math.min(...xs).toFixed(dp)}..${Math.max(...xs).toFixed(dp)})`;
  return {
    n: ps.length,
    rate: median(ps.map((p) => p.rate)),
    rateS: range(ps.map((p) => p.rate)),
    made: ps.reduce((s, p) => s + p.made, 0),
    failed: ps.reduce((s, p) => s + p.failed + p.slow, 0),
    loadCpu: range(ps.map((p) => p.loadCpuUsPerConn), 1),
    attributed: ps.map((p) => (p.made ? (100 * p.correct) / p.made : 0)),
    lost: ps.map((p) => p.lost),
    cpuMs: median(ps.map((p) => p.toolCpuMs)),
    cpuS: range(ps.map((p) => p.toolCpuMs)),
    pct: median(ps.map((p) => p.toolPct)),
    usPerConn: median(ps.map((p) => (1000 * p.toolCpuMs) / Math.max(1, p.made))),
    loss: ps.map((p) => p.toolLoss).filter(Boolean),
  };
}

async function main(): Promise<void> {
  await withLab('bench/attribution', async (lab) => {
    const bench = await Bench.create(lab);
    console.error(`machine: ${machine()}; server port ${PORT}; client ${bench.cliIp} -> server ${bench.srvIp}`);
    for (let rep = 0; rep < REPS && Date.now() < DEADLINE; rep++) {
      // Alternate which tool goes first, so that neither always meets a fresher machine.
      const plain = async () => {
        if (ONLY_EBPFMON) return;
        for (const mode of MODES) {
          await bench.none(rep, mode);
          await bench.tcplife(rep, mode);
        }
      };
      const phases = ([
        { mode: 'max', subscribe: 'batch' }, { mode: 'max', subscribe: 'event' },
        { mode: 'rate', subscribe: 'batch' }, { mode: 'rate', subscribe: 'event' }, { mode: 'rate', subscribe: false },
      ] as const).filter((p) => MODES.includes(p.mode) && SUBSCRIBERS.includes(p.subscribe === false ? 'none' : p.subscribe) && (p.subscribe !== false || p.mode === 'rate'));
      const vs = variants();
      // Rotate the variants' order from one repetition to the next (interleaved).
      const order = vs.map((_, i) => vs[(i + rep) % vs.length]!);
      const withDaemon = async () => {
        for (const v of order) await bench.ebpfmon(rep, [...phases], v);
      };
      if (rep % 2 === 0) {
        await plain();
        await withDaemon();
      } else {
        await withDaemon();
        await plain();
      }
    }
    const phases = bench.phases;
    const reps = Math.max(...phases.map((p) => p.rep)) + 1;
    const variantNames = [...new Set(phases.map((p) => p.variant))];
    const table = new Table({
      head: ['load', 'tool', 'conn/s, median (min..max)', 'vs no tool', 'right pid %, per rep', 'lost, per rep', 'tool CPU ms (min..max)', 'tool % of a core', 'tool us/conn', 'load CPU us/conn'],
      style: { head: [], border: [] },
    });
    const ratio = (a: number, b: number) => (b ? (a / b).toFixed(2) : '-');
    for (const mode of ['max', 'rate'] as const) {
      const base = summarize(phases, 'none', mode);
      for (const tool of ['none', 'tcplife', 'ebpfmon', 'ebpfmon-event', 'ebpfmon-nosub'] as const) for (const variant of tool.startsWith('ebpfmon') ? variantNames : ['']) {
        const s = summarize(phases, tool, mode, variant);
        if (!s) continue;
        table.push([
          mode === 'max' ? `max (${MAX_CONNS / 1000}k conns / ${MAX_SECONDS} s)` : `${RATE / 1000}k/s (${RATE_CONNS / 1000}k conns)`,
          ({ none: 'none', tcplife: `tcplife -D ${PORT}`, ebpfmon: 'ebpfmon + 1 subscriber (row batches, as the CLI)', 'ebpfmon-event': 'ebpfmon + 1 subscriber (events.event)', 'ebpfmon-nosub': 'ebpfmon, no subscriber' } as const)[tool] + (variant ? ` [${variant}]` : ''),
          s.rateS, ratio(s.rate, base?.rate ?? 0),
          tool === 'none' || tool === 'ebpfmon-nosub' ? '-' : s.attributed.map((a) => a.toFixed(3)).join(' / '),
          tool === 'none' ? '-' : s.lost.join(' / '),
          tool === 'none' ? '-' : s.cpuS,
          tool === 'none' ? '-' : s.pct.toFixed(1),
          tool === 'none' ? '-' : s.usPerConn.toFixed(1),
          s.loadCpu,
        ]);
      }
    }
    console.log(`\nbench/attribution - ${machine()}`);
    console.log(`${WORKERS} client processes in one lab namespace -> ${SERVER_WORKERS} acceptors in another (veth), connect / server closes / close${LOAD_NICE ? `, the load at nice ${LOAD_NICE}` : ''}, the daemon at nice ${DAEMON_NICE}${DAEMON_NICE === UNIT_NICE ? " (the unit's)" : ''}; ${reps} repetitions, medians; each repetition runs every tool on the same load.`);
    console.log('Shared 2-core VM: rates and CPU vary 20-30% between runs. CPU: the tool\'s threads\' time on a CPU (schedstat, ns) over load + drain; "in the kernel": its stime (4 ms ticks).');
    console.log(table.toString());
    const failed = phases.reduce((s, p) => s + p.failed + p.slow, 0);
    if (failed) console.log(`note: ${failed} connections failed or took > 200 ms to connect across all phases`);
    for (const tool of ['ebpfmon', 'ebpfmon-event', 'ebpfmon-nosub', 'tcplife'] as const) for (const mode of ['max', 'rate'] as const) for (const variant of tool === 'tcplife' ? [''] : variantNames) {
      const s = summarize(phases, tool, mode, variant);
      if (s) console.log(`${tool}${variant ? ` [${variant}]` : ''} ${mode} loss detail: ${s.loss.join(' | ')}`);
    }
    if (variantNames.length > 1) console.log(`variants ran in every repetition, their order rotating: ${variantNames.join('; ')}`);
    // One verdict per ebpfmon variant (history on and off, a baseline build...): a median
    // over all of them would be a figure for none.
    const tm = summarize(phases, 'tcplife', 'max');
    const t = summarize(phases, 'tcplife', 'rate');
    for (const variant of [...new Set(phases.filter((p) => p.tool === 'ebpfmon').map((p) => p.variant))]) {
      const label = variant ? ` [${variant}]` : '';
      const em = summarize(phases, 'ebpfmon', 'max', variant);
      if (em && tm) {
        const none = em.lost.every((l) => l === 0);
        const cpu = em.usPerConn <= tm.usPerConn;
        console.log(`target at the maximum rate${label}: zero lost for one subscriber: ${none ? 'PASS' : `FAIL (${em.lost.join(' / ')})`}; ` +
          `CPU per connection at or below tcplife's (${em.usPerConn.toFixed(1)} vs ${tm.usPerConn.toFixed(1)} us): ${cpu ? 'PASS' : 'FAIL'}`);
      }
      const e = summarize(phases, 'ebpfmon', 'rate', variant);
      if (e && t) {
        const reached = e.rate >= RATE * 0.95;
        const all = e.attributed.every((a) => a === 100);
        const none = e.lost.every((l) => l === 0);
        const cpu = e.cpuMs <= t.cpuMs;
        console.log(`target at ${RATE / 1000}k conn/s${label}: ${reached ? `reached (${e.rate.toFixed(0)}/s)` : `NOT reached: ${e.rate.toFixed(0)}/s`}; ` +
          `100% attributed: ${all ? 'PASS' : 'FAIL'}; zero lost: ${none ? 'PASS' : 'FAIL'}; CPU at or below tcplife's (${e.cpuMs.toFixed(0)} vs ${t.cpuMs.toFixed(0)} ms${LOOP_PROBE ? "; the daemon's figure includes the loop probe's 100 requests/s, which tcplife does not get: --no-loop-probe for its own cost" : ''}): ${cpu ? 'PASS' : 'FAIL'} -> ${reached && all && none && cpu ? 'PASS' : 'FAIL'}`);
      }
    }
  });
}

await main();
