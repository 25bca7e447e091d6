// SPDX-License-Identifier: Apache-2.0
// Live capture to a file: packets/s with zero loss and CPU per packet, ebpfmon's capture
// path (the real daemon and `ebpfmonctl capture -w FILE`: engine, perf rings, pcapng
// writer in the daemon writing into the CLI's file (fd delivery), and with --stream the
// bytes copied to the file by the CLI) next to `tcpdump -w` on the same traffic in the
// same run, and next to no capture at all.
//
// Traffic: trafgen in host `gen` sends N UDP frames at a fixed rate into a veth whose other
// end is in host `mon` (where the daemon and the capture tools run). The frames are
// addressed to another MAC (PACKET_OTHERHOST), so the stack drops them right after TC
// ingress and the packet taps: what is measured is capture, not UDP. Each trial captures
// with one tool (filter `udp` for both), then counts what landed in the file against what
// the interface received (rx_packets of the veth in mon). CPU: the tool's own processes
// (their threads' time on a CPU from schedstat, in ns: utime and stime come in 4-10 ms ticks,
// 20-50 ns a frame over a 2 s trial; ebpfmon: the daemon's and the CLI's together). The
// kernel side of each tool (AF_PACKET's copy, or the classifier hand-off, engine and perf
// copy) runs in softirq, outside the tools' processes, and is not in these figures: the
// machine's busy time (/proc/stat) was tried for it and dropped, trafgen's own CPU and the
// 10 ms ticks moved it by more than the tools' whole figures (negative differences).
//
// One window for every tool: from just before trafgen starts to SETTLE_MS after it ends
// (tcpdump needs its 1 s block timeout to write the last packets; ebpfmon its latency bound,
// 250 ms by default), so the tools' start-up (Node, the session's engine program) and stop
// (final statistics, exit) are outside it for both. The daemon runs without a capture too (the monitor's own
// timers, flow refresh, history): the no-capture trial reads the daemon's CPU over the same
// window, printed as the "daemon idle" row, the part of ebpfmon's figure that is not capture:
// the "added" columns take it (the median of the same configuration's no-capture trials) from
// ebpfmon's figure, so that what a capture costs is set against what tcpdump costs, and the
// monitor's own work (which runs whether anyone captures or not) against nothing.
// --baseline DIR: a second daemon and CLI from another build (main's, in DIR) in their own
// pair of hosts, tool "ebpfmon-base", interleaved with the others in the same run.
import fs from 'node:fs';
import path from 'node:path';
import Table from 'cli-table3';
import { baselineDaemonMain, median, sleep } from '../lib/harness.js';
import { CpuWindow, cpuSplitMs, runMs, sleepsOf, waitQuiet } from '../lib/proc.js';
import type { Host, Lab, LinkInfo } from '../../test/helpers/lab.js';
import { CTL_MAIN, startDaemon, type TestDaemon } from '../../test/helpers/daemon.js';
import { readPcapRecords } from '../../test/helpers/pcap-frames.js';
import { countEpbs } from '../../test/helpers/capture-truth.js';

/** ebpfmon: the daemon writes into the CLI's file (fd delivery); ebpfmon-stream: `--stream`, the CLI copies the socket's bytes into it;
 * ebpfmon-base: fd delivery with the --baseline build's daemon and CLI. */
export type Tool = 'none' | 'tcpdump' | 'ebpfmon' | 'ebpfmon-stream' | 'ebpfmon-base';
export const TOOLS: readonly Tool[] = ['none', 'tcpdump', 'ebpfmon', 'ebpfmon-stream', 'ebpfmon-base'];

/** After the last frame is sent, every tool gets this long (same window) to write what it holds. */
const SETTLE_MS = 1200;
/** EBPFMON_BENCH_CAPTURE_ARGS: more `ebpfmonctl capture` options for both builds (e.g. "--latency 10"). */
const CAPTURE_ARGS = (process.env.EBPFMON_BENCH_CAPTURE_ARGS ?? '').split(' ').filter(Boolean);

export interface LiveTrial {
  tool: Tool;
  rate: number;
  frameBytes: number;
  sent: number;
  received: number;
  captured: number;
  /** What the tool itself says it lost (tcpdump: dropped by kernel; ebpfmon: ring full). */
  toolDrops: number;
  /** Time on a CPU of the tool's processes (schedstat); `toolSysMs` the kernel's part (stime ticks). */
  toolCpuMs: number;
  toolSysMs: number;
  wallMs: number;
  /** ebpfmon: the daemon's and the CLI's shares of toolCpuMs. */
  daemonCpuMs?: number;
  cliCpuMs?: number;
  /** The no-capture trial: the daemon's CPU over the same window (and the baseline daemon's). */
  daemonIdleMs?: number;
  baseDaemonIdleMs?: number;
  /** ebpfmon and none: the daemon's CPU over the window by thread (main, the history
   * writer, the rest: V8's helpers, libuv's pool), ms. */
  daemonThreads?: { main: number; writer: number; other: number };
  /** Times a second the tool's main thread went to sleep over the window (its wakeups): tcpdump's,
   * the daemon's (ebpfmon; none: the idle daemon's). A wakeup costs the event loop 100-300 us
   * of CPU on this VM (docs/benchmarks.md), so this column explains much of the CPU column. */
  wakeupsPerSec: number;
  /** Frames the CPU window covers: `sent`, or with a warm-up the frames received from its end on. */
  cpuPackets: number;
}

/** A trafgen configuration: one UDP frame of `bytes` to a MAC nobody has. */
function trafgenConfig(bytes: number): string {
  const ipLen = bytes - 14;
  const payload = ipLen - 28;
  return `{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x99,  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x08, 0x00,
  0x45, 0x00, const16(${ipLen}), const16(1), const16(0x4000), 0x40, 17, csumip(14, 33),
  198, 18, 250, 1,  198, 18, 250, 2,
  const16(40000), const16(9000), const16(${payload + 8}), const16(0),
  fill(0x61, ${payload})
}\n`;
}

async function rxPackets(host: Host, ifname: string): Promise<{ packets: number; dropped: number }> {
  const r = await host.exec('ip', ['-j', '-s', 'link', 'show', 'dev', ifname]);
  const s = (JSON.parse(r.stdout) as Array<{ stats64: { rx: { packets: number; dropped: number } } }>)[0]!.stats64.rx;
  return { packets: s.packets, dropped: s.dropped };
}


interface Rig {
  daemon: TestDaemon | null;
  mon: Host;
  gen: Host;
  link: LinkInfo;
  ctl: string;
}

export class LiveBench {
  private rigs: Rig[] = [];
  private dir!: string;
  private cfgFiles = new Map<number, string>();
  /** --warmup: the CPU window starts this long after the traffic does (0: before it). A
   * session's one-time work (its code compiled, the first collections after it started)
   * then stays out of a per-frame figure, for every tool alike. */
  warmupMs = 0;

  /** `baseline`: the root of another build (its build/js and build/bpf) run as tool ebpfmon-base. */
  constructor(private readonly lab: Lab, private readonly pages = 1024, private readonly baseline?: string, private readonly basePages = pages) {}

  private rig(tool: Tool): Rig {
    return this.rigs[tool === 'ebpfmon-base' ? 1 : 0]!;
  }

  async setup(): Promise<void> {
    this.dir = this.lab.tmpdir();
    await this.addRig('', undefined);
    if (this.baseline) {
      const b = path.resolve(this.baseline);
      const main = baselineDaemonMain(b);
      // A baseline built before the client was bundled has only the compiled tree.
      const ctl = ['build/js/client/src/ebpfmonctl.js', 'build/js/client/src/main.js'].map((f) => path.join(b, f)).find((f) => fs.existsSync(f))!;
      await this.addRig('b', { main, ctl, objects: path.join(b, 'build/bpf') });
    }
  }

  private async addRig(suffix: string, other: { main: string; ctl: string; objects: string } | undefined): Promise<void> {
    const mon = await this.lab.host(`mon${suffix}`);
    const gen = await this.lab.host(`gen${suffix}`);
    const link = await this.lab.link(gen, mon);
    const rig: Rig = { daemon: null, mon, gen, link, ctl: other?.ctl ?? CTL_MAIN };
    this.rigs.push(rig);
    // EBPFMON_BENCH_DAEMON_PROF=DIR: a V8 CPU profile of the daemon (written when it stops,
    // SIGTERM; from the end of set-up). --cpu-prof is not allowed in NODE_OPTIONS: a wrapper starts the profiler
    // through node:inspector, then loads the daemon.
    const dprof = process.env.EBPFMON_BENCH_DAEMON_PROF;
    let main: string | undefined = other?.main;
    if (dprof && !other) {
      main = path.join(this.dir, 'prof-main.mjs');
      const daemonMain = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../daemon/src/main.js');
      fs.writeFileSync(main, `import inspector from 'node:inspector'; import fs from 'node:fs';
// Started on SIGUSR2 once the programs are loaded (the profiler's signals interrupt the verifier: EAGAIN).
const s = new inspector.Session(); s.connect(); s.post('Profiler.enable');
process.on('SIGUSR2', () => s.post('Profiler.start'));
process.on('exit', () => s.post('Profiler.stop', (err, r) => { if (!err) fs.writeFileSync(${JSON.stringify(dprof)} + '/daemon-' + process.pid + '.cpuprofile', JSON.stringify(r.profile)); }));
process.argv.splice(1, 1, ${JSON.stringify(daemonMain)});
await import(${JSON.stringify(daemonMain)});
`);
    }
    const daemon = await startDaemon(mon, { config: { interfaces: [link.b.ifname], capture: { perfPagesPerCpu: other ? this.basePages : this.pages }, ...(other ? { bpfObjectDir: other.objects } : {}) }, ...(main ? { main } : {}), ...(other ? { pinPath: this.lab.pinPath(`pins${suffix}`) } : {}) });
    rig.daemon = daemon;
    if (dprof && !other) process.kill(daemon.pid, 'SIGUSR2');
    const t0 = Date.now();
    while (!(await daemon.call('status')).interfaces.some((i) => i.name === link.b.ifname)) {
      if (Date.now() - t0 > 15_000) throw new Error('the daemon did not attach to the bench interface');
      await sleep(100);
    }
    // The first trial's window must not hold the daemon's start-up (it made "added" negative).
    if (!(await waitQuiet(daemon.pid))) console.log(`bench/capture: daemon ${daemon.pid} was not quiet within 30 s of starting; the first trials include its start-up`);
  }

  private cfg(bytes: number): string {
    let f = this.cfgFiles.get(bytes);
    if (!f) {
      f = path.join(this.dir, `udp${bytes}.cfg`);
      fs.writeFileSync(f, trafgenConfig(bytes));
      this.cfgFiles.set(bytes, f);
    }
    return f;
  }

  /** Starts a tool and waits until it captures; `cpu()` reads its CPU (ms, all its processes), `stop()` ends it and counts. */
  private async startTool(tool: Tool, file: string): Promise<{ cpu: () => { run: number; sys: number; daemon?: number; cli?: number }; stop: () => Promise<{ captured: number; drops: number }>; mainPid: number }> {
    if (tool === 'none') return { cpu: () => ({ run: 0, sys: 0 }), stop: async () => ({ captured: 0, drops: 0 }), mainPid: this.rigs[0]!.daemon!.pid };
    const rig = this.rig(tool);
    if (tool === 'tcpdump') {
      const p = rig.mon.spawn('tcpdump', ['-i', rig.link.b.ifname, '-n', '-s', '0', '-w', file, 'udp']);
      let err = '';
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
        p.stderr!.setEncoding('utf8').on('data', (d: string) => {
          err += d;
          if (err.includes('listening on')) { clearTimeout(t); resolve(); }
        });
      });
      return {
        mainPid: p.pid!,
        cpu: () => ({ run: runMs(p.pid!), sys: cpuSplitMs(p.pid!).sys }),
        stop: async () => {
          const exited = new Promise((r) => p.once('exit', r));
          process.kill(p.pid!, 'SIGINT');
          await exited;
          const drops = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? NaN);
          return { captured: readPcapRecords(file).records.length, drops };
        },
      };
    }
    const d = rig.daemon!;
    // EBPFMON_BENCH_CPU_PROF=DIR: a V8 CPU profile of the CLI per trial (where its CPU goes).
    const prof = process.env.EBPFMON_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.EBPFMON_BENCH_CPU_PROF}`] : [];
    const p = rig.mon.spawn(process.execPath, [...prof, rig.ctl, '--socket', d.socketPath, 'capture', '-i', rig.link.b.ifname, '-w', file, '--stats-interval', '0', ...(tool === 'ebpfmon-stream' ? ['--stream'] : []), ...CAPTURE_ARGS, 'udp']);
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`ebpfmonctl capture did not start: ${err}`)), 20_000);
      p.stderr!.setEncoding('utf8').on('data', (x: string) => {
        err += x;
        if (err.includes('capturing on')) { clearTimeout(t); resolve(); }
      });
      p.once('exit', () => reject(new Error(`ebpfmonctl capture exited: ${err}`)));
    });
    return {
      mainPid: d.pid,
      cpu: () => {
        const cli = runMs(p.pid!);
        const daemon = runMs(d.pid);
        return { run: cli + daemon, sys: cpuSplitMs(p.pid!).sys + cpuSplitMs(d.pid).sys, cli, daemon };
      },
      stop: async () => {
        const st = (await d.call('status')).capture?.sessions[0]?.counters;
        const exited = new Promise((r) => p.once('exit', r));
        process.kill(p.pid!, 'SIGINT');
        await exited;
        return { captured: countEpbs(file), drops: (st?.dropped ?? NaN) + (st?.clientDropped ?? 0) };
      },
    };
  }

  async trial(tool: Tool, rate: number, frameBytes: number, packets: number): Promise<LiveTrial> {
    if (tool === 'ebpfmon-base' && this.rigs.length < 2) throw new Error('tool ebpfmon-base needs --baseline DIR');
    const rig = this.rig(tool);
    const file = path.join(process.env.EBPFMON_BENCH_OUT_DIR ?? this.dir, `${tool}.${tool.startsWith('ebpfmon') ? 'pcapng' : 'pcap'}`);
    fs.rmSync(file, { force: true });
    const t = await this.startTool(tool, file);
    const rx0 = await rxPackets(rig.mon, rig.link.b.ifname);
    // The window (every tool the same): from here (or the warm-up's end) to SETTLE_MS after the last frame.
    const idle = () => this.rigs.map((r) => runMs(r.daemon!.pid));
    const byThread = tool === 'ebpfmon' || tool === 'none' ? rig.daemon! : null;
    let win: CpuWindow | null = null;
    const sample = () => {
      if (byThread) win = new CpuWindow(byThread.pid);
      return { c: t.cpu(), i: idle(), s: sleepsOf(t.mainPid) ?? NaN, at: performance.now() };
    };
    let start = this.warmupMs ? null : sample();
    const w0 = performance.now();
    let genDone = false;
    const gen = rig.gen.exec('trafgen', ['-o', rig.link.a.ifname, '-i', this.cfg(frameBytes), '-n', String(packets), ...(rate ? ['-b', `${rate}pps`] : []), '-P', '1', '-C'], { timeoutMs: 120_000 })
      .finally(() => (genDone = true));
    let rxStart = rx0.packets;
    if (!start) {
      await sleep(this.warmupMs);
      if (genDone) {
        await t.stop();
        throw new Error(`--warmup ${this.warmupMs / 1000} s: the traffic (${packets} frames) ended before the warm-up did (raise --seconds)`);
      }
      rxStart = (await rxPackets(rig.mon, rig.link.b.ifname)).packets;
      start = sample();
    }
    await gen;
    const wall = performance.now() - w0;
    await sleep(SETTLE_MS);
    const split = (win as CpuWindow | null)?.read('ebpfmon-history').threads;
    const end = sample();
    const rxEnd = this.warmupMs ? (await rxPackets(rig.mon, rig.link.b.ifname)).packets : 0;
    const { c: c0, i: i0, s: s0 } = start;
    const { c: c1, i: i1 } = end;
    const wakeupsPerSec = (end.s - s0) / ((end.at - start.at) / 1000);
    const r = await t.stop();
    const rx1 = await rxPackets(rig.mon, rig.link.b.ifname);
    fs.rmSync(file, { force: true });
    return {
      tool, rate, frameBytes, sent: packets, received: rx1.packets - rx0.packets, captured: r.captured, toolDrops: r.drops,
      toolCpuMs: c1.run - c0.run, toolSysMs: c1.sys - c0.sys, wallMs: wall, wakeupsPerSec, cpuPackets: this.warmupMs ? rxEnd - rxStart : packets,
      ...(c1.daemon !== undefined ? { daemonCpuMs: c1.daemon - c0.daemon!, cliCpuMs: c1.cli! - c0.cli! } : {}),
      ...(split ? { daemonThreads: { main: split.main, writer: split.named, other: split.other } } : {}),
      ...(tool === 'none' ? { daemonIdleMs: i1[0]! - i0[0]!, ...(i1.length > 1 ? { baseDaemonIdleMs: i1[1]! - i0[1]! } : {}) } : {}),
    };
  }

  async close(): Promise<void> {
    for (const r of this.rigs) await r.daemon?.stop(process.env.EBPFMON_BENCH_DAEMON_PROF ? 'SIGTERM' : 'SIGKILL');
  }
}

export function liveTable(trials: LiveTrial[]): string {
  const t = new Table({
    head: ['frame', 'offered pps', 'achieved pps', 'tool', 'received (sent + ARP/ND)', 'captured (median)', 'zero loss in', 'tool CPU ns/pkt (min..max)', 'of which kernel (sys) ns/pkt', 'daemon / CLI ns/pkt', 'CPU vs tcpdump',
      'added over no capture ns/pkt', 'added vs tcpdump', 'main thread wakeups/s', 'daemon main thread ns/pkt (min..max)'],
    style: { head: [], border: [] },
  });
  const keys = [...new Set(trials.map((x) => `${x.frameBytes}|${x.rate}`))];
  const per = (xs: LiveTrial[], f: (x: LiveTrial) => number) => xs.map((x) => (f(x) * 1e6) / x.cpuPackets);
  const range = (v: number[]) => `${median(v).toFixed(0)} (${Math.min(...v).toFixed(0)}..${Math.max(...v).toFixed(0)})`;
  // The daemon's main thread alone: where a trial's spread shows (its kernel time varies
  // from trial to trial on this VM, docs/benchmarks.md).
  const mainThread = (xs: LiveTrial[]) => (xs.every((x) => x.daemonThreads) ? range(per(xs, (x) => x.daemonThreads!.main)) : '-');
  for (const k of keys) {
    const [bytes, rate] = k.split('|').map(Number);
    const tcpdumpCpu = trials.filter((x) => x.frameBytes === bytes && x.rate === rate && x.tool === 'tcpdump').map((x) => (x.toolCpuMs * 1e6) / x.cpuPackets);
    // What runs without a capture (this configuration's no-capture trials, medians): the
    // daemons' own CPU per frame sent, taken from ebpfmon's figures.
    const none = trials.filter((x) => x.frameBytes === bytes && x.rate === rate && x.tool === 'none');
    const noneIdle = none.length ? median(per(none, (x) => x.daemonIdleMs ?? 0)) : NaN;
    const noneBaseIdle = none.length ? median(per(none, (x) => x.baseDaemonIdleMs ?? 0)) : NaN;
    const added = (tool: Tool, xs: LiveTrial[]) => median(per(xs, (x) => x.toolCpuMs)) - (tool === 'tcpdump' ? 0 : tool === 'ebpfmon-base' ? noneBaseIdle : noneIdle);
    const tcpdumpTrials = trials.filter((x) => x.frameBytes === bytes && x.rate === rate && x.tool === 'tcpdump');
    const tcpdumpAdded = tcpdumpTrials.length ? added('tcpdump', tcpdumpTrials) : null;
    for (const tool of TOOLS) {
      const xs = trials.filter((x) => x.frameBytes === bytes && x.rate === rate && x.tool === tool);
      if (!xs.length) continue;
      if (tool === 'none') {
        // The baseline row: the daemons' CPU over the same window without a capture, per frame sent.
        const idle = per(xs, (x) => x.daemonIdleMs ?? 0);
        const baseIdle = xs.some((x) => x.baseDaemonIdleMs !== undefined) ? ` (baseline daemon ${range(per(xs, (x) => x.baseDaemonIdleMs ?? 0))})` : '';
        t.push([`${bytes} B`, rate === 0 ? 'max' : String(rate), median(xs.map((x) => x.sent / (x.wallMs / 1000))).toFixed(0), 'none: daemon idle', String(median(xs.map((x) => x.received))), '-', '-',
          `${range(idle)}${baseIdle}`, '-', '-', '-', '-', '-', median(xs.map((x) => x.wakeupsPerSec)).toFixed(0), mainThread(xs)]);
        continue;
      }
      const zero = xs.filter((x) => x.captured === x.sent).length;
      const cpu = per(xs, (x) => x.toolCpuMs);
      const a = added(tool, xs);
      t.push([
        `${bytes} B`, rate === 0 ? 'max' : String(rate), median(xs.map((x) => x.sent / (x.wallMs / 1000))).toFixed(0), tool, String(median(xs.map((x) => x.received))),
        `${median(xs.map((x) => x.captured))} (drops ${median(xs.map((x) => x.toolDrops))})`,
        `${zero} of ${xs.length}`,
        range(cpu),
        median(per(xs, (x) => x.toolSysMs)).toFixed(0),
        tool.startsWith('ebpfmon') ? `${median(per(xs, (x) => x.daemonCpuMs ?? 0)).toFixed(0)} / ${median(per(xs, (x) => x.cliCpuMs ?? 0)).toFixed(0)}` : '-',
        tool.startsWith('ebpfmon') && tcpdumpCpu.length ? `${(median(cpu) / median(tcpdumpCpu)).toFixed(1)}x` : '-',
        a.toFixed(0),
        tool.startsWith('ebpfmon') && tcpdumpAdded ? `${(a / tcpdumpAdded).toFixed(1)}x` : '-',
        median(xs.map((x) => x.wakeupsPerSec)).toFixed(0),
        tool === 'ebpfmon' ? mainThread(xs) : '-',
      ]);
    }
  }
  return t.toString();
}
