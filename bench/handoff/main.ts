// SPDX-License-Identifier: Apache-2.0
// What the handoff probes (bpf/handoff.bpf.c) cost: every send and receive on the machine
// runs them. Measured in the same run, with the real daemon in lab host `a` (its socket
// probes record the owner of each socket, so sends take the path they take in production):
//
//  1. per call: a C sender (bench/handoff/blast.c) in `a` makes <calls> sendto() of 64-byte
//     UDP datagrams and <calls> 64-byte write()s on a TCP connection to sinks in `b`, with
//     (none) no handoff probe, (empty) empty programs on the same BTF tracepoints (the
//     floor: test/fixtures/bpf/sock_length_floor.bpf.c), (tp-btf) the BTF tracepoints,
//     (tracepoint) the classic ones;
//     the mean time per call and, from kernel.bpf_stats_enabled, the probes' own time per run.
//     Phase order rotates between repetitions; medians over repetitions.
//  2. once per handoff of a bound datagram socket: the first recvfrom() by the new user walks
//     the flow table (bpf_for_each_map_elem) to move the flows of the socket's port. The
//     fixture test/fixtures/net/udp_handoff times each of its recvfrom() calls; the flow table
//     holds <K> other flows (filled from here).
//
//   sudo node build/js/bench/handoff/main.js [--reps 5] [--calls 200000] [--capacity 262144]
//        [--flows 0,65536,262144] [--handoff-only]
import fs from 'node:fs';
import path from 'node:path';
import Table from 'cli-table3';
import { jsonLines, type Host } from '../../test/helpers/lab.js';
import { withLab } from '../lib/lab.js';
import { compileC, machine, median, numArg, ROOT, sleep, tempDir } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { daemonOnce, OBJECT_DIR, PEER, startDaemon, type TestDaemon } from '../../test/helpers/daemon.js';
import { HandoffProbe, type HandoffHook } from './probe.js';
import { HANDOFF_COMPONENT } from '../../daemon/src/monitor/components.js';
import { probeId } from '../../daemon/src/bpf/component.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { progInfo } from '../../daemon/src/bpf/info.js';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { FLOW, FLOW_KEY } from '../../daemon/src/monitor/wire.js';
import { CLOCK_MONOTONIC, clockNs } from '../../daemon/src/sys/libc.js';

const REPS = numArg('reps', 5);
const CALLS = numArg('calls', 200_000);
const CAPACITY = numArg('capacity', 262_144);
const FLOW_SIZES = (strArg('flows') ?? `0,65536,${CAPACITY}`).split(',').map(Number);
const SKIP_CALLS = process.argv.includes('--handoff-only');
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

type Mode = 'none' | 'empty' | HandoffHook;
const MODES: Mode[] = ['none', 'empty', 'tp-btf', 'tracepoint'];

/** What the send-path stats are read from: the handoff probe, or the empty floor programs. */
interface Attached { sendStats(): { ns: bigint; cnt: bigint }; slow(): number; close(): void }

function attach(mode: Mode, pinPath: string): Attached | null {
  if (mode === 'none') return null;
  if (mode === 'empty') {
    const obj = BpfObject.open(path.join(OBJECT_DIR, 'fixtures/sock_length_floor.bpf.o'));
    obj.load();
    const links = obj.programs().map((p) => {
      const l = L.bpf_program__attach(p.ptr);
      if (!l) throw new Error(`attaching ${p.name} failed`);
      return l;
    });
    return {
      sendStats: () => {
        const i = progInfo(obj.progFd('floor_send'), 'floor_send');
        return { ns: i.runTimeNs, cnt: i.runCount };
      },
      slow: () => 0,
      close: () => {
        for (const l of links) L.bpf_link__destroy(l);
        obj.close();
      },
    };
  }
  const p = HandoffProbe.attach({ pinPath, objectDir: OBJECT_DIR, hook: mode });
  return { sendStats: () => sendStats(p), slow: () => p.stats().slowPath, close: () => p.close() };
}

interface Sample { udpNs: number; tcpNs: number; progNs: number | null; runs: number; slow: number }

async function blast(host: Host, bin: string, proto: 'udp' | 'tcp', addr: string, port: number): Promise<number> {
  const r = await host.exec(bin, [proto, addr, String(port), String(CALLS), '64'], { timeoutMs: 120_000 });
  return (JSON.parse(r.stdout.trim()) as { nsPerCall: number }).nsPerCall;
}

/** Sum of run_time_ns and run_cnt of the probe's send program. */
function sendStats(p: HandoffProbe): { ns: bigint; cnt: bigint } {
  const i = p.programs().find((x) => x.name.includes('send'))!;
  return { ns: i.runTimeNs, cnt: i.runCount };
}

await withLab('handoff', async (lab) => {
  const a = await lab.host('a');
  const b = await lab.host('b');
  const link = await lab.link(a, b);
  const tmp = tempDir('handoff');
  const blastBin = compileC(path.join(ROOT, 'bench/handoff/blast.c'), tmp);
  const fixture = path.join(OBJECT_DIR, 'fixtures/net/udp_handoff');
  const statsBefore = fs.readFileSync(STATS_SYSCTL, 'utf8').trim();
  let daemon: TestDaemon | undefined;
  try {
    fs.writeFileSync(STATS_SYSCTL, '1');
    // The daemon's own handoff component is off: this bench attaches each alternative itself (probe.ts).
    const noHandoff = HANDOFF_COMPONENT.groups[0]!.alternatives.map((alt) => probeId(HANDOFF_COMPONENT.groups[0]!, alt));
    daemon = await startDaemon(a, { config: { maps: { flows: CAPACITY }, flows: { gcIntervalSec: 3600, idleTimeoutSec: 3600 }, probes: { disable: noHandoff } } });
    // Sinks in b: a bound UDP socket nobody reads (datagrams are dropped once its buffer is
    // full, and no ICMP comes back), and a TCP server reading to EOF.
    const udpSink = b.spawn(fixture, [link.b.ip4, '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const udpPort = Number((await jsonLines(udpSink).next((o) => o.event === 'bound')).port);
    const tcpSink = b.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0', '0']);
    const tcpPort = Number((await jsonLines(tcpSink).next((o) => o.event === 'listening')).port);

    // --- 1. per call ------------------------------------------------------------------
    const samples = new Map<Mode, Sample[]>(MODES.map((m) => [m, []]));
    await blast(a, blastBin, 'udp', link.b.ip4, udpPort); // warm-up
    for (let rep = 0; rep < (SKIP_CALLS ? 0 : REPS); rep++) {
      const order = MODES.map((_, i) => MODES[(i + rep) % MODES.length]!);
      for (const mode of order) {
        const probe = attach(mode, daemon.pinPath);
        try {
          const s0 = probe ? probe.sendStats() : null;
          const udpNs = await blast(a, blastBin, 'udp', link.b.ip4, udpPort);
          const tcpNs = await blast(a, blastBin, 'tcp', link.b.ip4, tcpPort);
          const s1 = probe ? probe.sendStats() : null;
          const runs = s0 && s1 ? Number(s1.cnt - s0.cnt) : 0;
          const slow = probe ? probe.slow() : 0;
          samples.get(mode)!.push({ udpNs, tcpNs, progNs: s0 && s1 && runs ? Number(s1.ns - s0.ns) / runs : null, runs, slow });
          if (process.env.BENCH_VERBOSE) console.error(JSON.stringify({ rep, mode, udpNs, tcpNs, runs, slow }));
        } finally {
          probe?.close();
        }
      }
    }
    const med = (m: Mode, f: (s: Sample) => number | null) => median(samples.get(m)!.map(f).filter((x): x is number => x !== null));
    const base = { udp: med('none', (s) => s.udpNs), tcp: med('none', (s) => s.tcpNs) };
    const t1 = new Table({ head: ['handoff probes', 'UDP sendto ns/call', 'delta', 'TCP write ns/call', 'delta', 'send probe ns/run (bpf_stats)', 'send runs per rep', 'slow-path runs per rep'], style: { head: [], border: [] } });
    for (const m of MODES) {
      const u = med(m, (s) => s.udpNs);
      const t = med(m, (s) => s.tcpNs);
      const p = med(m, (s) => s.progNs);
      t1.push([m, u.toFixed(0), m === 'none' ? '-' : `${(u - base.udp).toFixed(0)} (${((u / base.udp - 1) * 100).toFixed(1)}%)`, t.toFixed(0), m === 'none' ? '-' : `${(t - base.tcp).toFixed(0)} (${((t / base.tcp - 1) * 100).toFixed(1)}%)`, Number.isNaN(p) ? '-' : p.toFixed(1), m === 'none' ? '-' : String(median(samples.get(m)!.map((s) => s.runs))), m === 'none' ? '-' : String(median(samples.get(m)!.map((s) => s.slow)))]);
    }

    // --- 2. once per handoff of a bound socket ------------------------------------------
    const flowsMap = BpfMap.fromPin(path.join(daemon.pinPath, 'maps', 'emon_flows'), 'emon_flows');
    const rows: string[][] = [];
    try {
      let filled = 0;
      const key = Buffer.alloc(FLOW_KEY.size);
      const val = Buffer.alloc(FLOW.size);
      for (const k of FLOW_SIZES) {
        // Other flows: UDP from 198.51.100.0/22-ish documentation addresses to port 9 (never the
        // fixture's port), recent enough that nothing expires them.
        val.writeBigUInt64LE(clockNs(CLOCK_MONOTONIC), FLOW.fields.last_ns.offset);
        for (; filled < k; filled++) {
          key.fill(0);
          key[FLOW_KEY.fields.family.offset] = 2;
          key[FLOW_KEY.fields.proto.offset] = 17;
          key.writeUInt16LE(9, FLOW_KEY.fields.lport.offset);
          key.writeUInt16LE(1024 + (filled & 0xffff) % 60_000, FLOW_KEY.fields.rport.offset);
          key.writeUInt32BE((0xc6336400 | (filled >>> 8)) >>> 0, FLOW_KEY.fields.raddr.offset);
          flowsMap.update(key, val);
        }
        let present = 0;
        await flowsMap.forEachChunkAsync(({ count }) => (present += count));
        // With and without the probe, alternating: the first recvfrom() of a freshly forked
        // child costs page faults of its own, which the run without the probe shows.
        const firstNs: Record<'probe' | 'none', number[]> = { probe: [], none: [] };
        const nextNs: number[] = [];
        for (let rep = 0; rep < REPS; rep++) {
          for (const variant of ['none', 'probe'] as const) {
            const probe = variant === 'probe' ? HandoffProbe.attach({ pinPath: daemon.pinPath, objectDir: OBJECT_DIR }) : null;
            try {
              const svc = a.spawn(fixture, [link.a.ip4, '3'], { stdio: ['pipe', 'pipe', 'pipe'] });
              const out = jsonLines(svc);
              const port = Number((await out.next((o) => o.event === 'bound')).port);
              const c = b.spawn(process.execPath, [PEER, 'udp-client', link.a.ip4, String(port), '3', '64']);
              await jsonLines(c).next((o) => o.event === 'done');
              await sleep(100);
              svc.stdin!.write('go\n');
              await out.next((o) => o.event === 'done');
              const d = out.lines.filter((o) => o.event === 'datagram').map((o) => Number(o.recvNs));
              firstNs[variant].push(d[0]!);
              if (!probe) continue;
              nextNs.push(median(d.slice(1)));
              const rec = probe.records().find((r) => !r.connected && r.userPid !== r.original.pid && r.original.comm === 'udp_handoff' && r.flowsPatched > 0);
              if (!rec || rec.flowsPatched !== 1) throw new Error(`handoff not seen as expected: ${JSON.stringify(rec, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
            } finally {
              probe?.close();
            }
          }
        }
        const f = { probe: median(firstNs.probe), none: median(firstNs.none) };
        rows.push([String(present), f.none.toFixed(0), f.probe.toFixed(0), median(nextNs).toFixed(0), ((f.probe - f.none) / 1000).toFixed(1), present ? ((f.probe - f.none) / present).toFixed(0) : '-']);
      }
    } finally {
      flowsMap.close();
    }
    const t2 = new Table({ head: ['flows in the table', 'first recvfrom ns, no probe', 'first recvfrom ns, probe (handoff)', 'next recvfrom ns, probe', 'handoff cost us', 'ns per flow'], style: { head: [], border: [] } });
    for (const r of rows) t2.push(r);

    console.log(`\nbench/handoff - ${machine()}`);
    console.log(`${CALLS} calls of 64 bytes per run, ${REPS} repetitions, medians; the daemon's socket probes attached in every phase (baseline: none)`);
    if (!SKIP_CALLS) console.log(t1.toString());
    console.log(`One handoff of a bound UDP socket (3 datagrams queued, then a forked child reads them); flow table capacity ${CAPACITY}; medians over repetitions`);
    console.log(t2.toString());
  } finally {
    fs.writeFileSync(STATS_SYSCTL, statsBefore);
    if (daemon) {
      await daemon.stop('SIGKILL');
      await daemonOnce(daemon.host, daemon.configPath, ['--teardown']);
    }
  }
});
