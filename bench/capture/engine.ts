// SPDX-License-Identifier: Apache-2.0
// Per-packet cost in TC of capture and mirror sessions (BPF_PROG_TEST_RUN, kernel-measured
// ns per run), each row next to the classifier WITHOUT the hook chain (the same source built
// with EMON_NO_HOOKS: build/bpf/fixtures/flows_nohooks.bpf.o, what ebpfmon was before the
// chain and capture) measured in the same repetition on the same frame, in alternating order. The frame is
// a 64-byte IPv4 TCP packet of an existing flow (port 40000 -> 443), as in
// bench/classifier. Rows:
//   - the shipped classifier (hook chain + the own-packet mark test) and no session on
//     the interface: what every packet pays once the feature exists (target: noise);
//   - sessions present, the packet selected by none (targets: <= 10 ns added): pid
//     sessions (the owner does not match), expression sessions (the filter runs and
//     says no), for the generated engine and for the interpreter;
//   - the packet selected and captured (perf ring), or mirrored (bpf_clone_redirect to a
//     veth; target <= 150 ns added; the tunnel key is set later, on the tunnel device), and
//     mirrored to a veth whose peer is down (its transmit drops the copy at once);
//   - the floors: a bare clone to each of the two, against an empty program.
// Every delivering row is checked: per-session counters and records read back must equal
// the runs made.
import path from 'node:path';
import Table from 'cli-table3';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { PerfRingReader } from '../../daemon/src/capture/perfbuf.js';
import { CAP_MAPS } from '../../daemon/src/capture/wire.js';
import { IFACE } from '../../daemon/src/monitor/wire.js';
import { machine, median, ROOT } from '../lib/harness.js';
import { PACKETS } from '../classifier/packets.js';
import { TcTestRunner } from '../classifier/testrun.js';
import { CapturePath, filtersFor, u32 } from './setup.js';
import type { Lab } from '../../test/helpers/lab.js';

const TEST_RUN_IFINDEX = 1;
const NOT_OWNER = 4242;
/** Expressions that do not match the bench frame (IPv4 TCP 40000 -> 443). */
const MISSING = ['tcp port 9000', 'udp port 53', 'icmp', 'host 10.1.2.3', 'ip6 and tcp', 'tcp[tcpflags] & tcp-rst != 0', 'net 192.0.2.0/24', 'greater 1000'];

export interface EngineRow {
  name: string;
  target: number | null;
  base: number[];
  ns: number[];
  check: string;
}

interface Config {
  name: string;
  target: number | null;
  repeat: number;
  /** Sets the maps for this row (called before every measurement: rows share maps). */
  apply: () => void;
  /** Called after each measured run with the runs made (drains rings, checks counts). */
  after?: (runs: number) => void;
  check?: () => string;
}

export async function engineBench(opts: { reps: number; repeat: number; deliverRepeat: number; lab: Lab; deadline: number }): Promise<{ rows: EngineRow[]; reps: number }> {
  const runner = new TcTestRunner();
  const frame = PACKETS[0]!.frame;
  const shipped = BpfObject.open(path.join(ROOT, 'build/bpf/fixtures/flows_nohooks.bpf.o'));
  shipped.load();
  const v = Buffer.alloc(IFACE.size);
  v.writeUInt32LE(TEST_RUN_IFINDEX, 0);
  v.writeUInt16LE(14, 4);
  shipped.map('emon_ifaces').update(u32(TEST_RUN_IFINDEX), v);
  const cap = new CapturePath();
  const perf = new PerfRingReader(cap.capMap(CAP_MAPS.events).fd, 4096);
  let perfSamples = 0;
  const drainPerf = () => {
    while (perf.drain(() => void perfSamples++, 1000) > 0);
  };

  // A veth in this namespace for the mirror rows; its peer lives in a lab host and drops what arrives.
  const sink = await opts.lab.host('sink');
  const link = await opts.lab.link(opts.lab.root, sink);
  const mirrorIfindex = Number((await opts.lab.root.exec('cat', [`/sys/class/net/${link.a.ifname}/ifindex`])).stdout.trim());
  // A veth whose peer is down beside it: its transmit drops the copy at once, so the rows that
  // clone to it price the clone without the hand-over to a receiver (what of the floor is the
  // receiving side's). This kernel has no dummy driver.
  const deadEnd = await opts.lab.deadEnd();

  const gen = (sessions: Parameters<CapturePath['useGenerated']>[0]) => () => {
    cap.iface(TEST_RUN_IFINDEX, 14, true);
    cap.useGenerated(sessions);
  };
  const pidSessions = (n: number) => Array.from({ length: n }, (_, i) => ({ slot: i, tgids: [NOT_OWNER + i], filters: filtersFor(null) }));
  const exprSessions = (n: number) => Array.from({ length: n }, (_, i) => ({ slot: i, filters: filtersFor(MISSING[i % MISSING.length]!) }));

  const delivered = (slot: number, runs: () => number, what: string, field: 'captured' | 'matched') => () => {
    const c = cap.counters(slot);
    if (c.matched !== runs() || c[field] !== runs() || c.dropped || c.failed) throw new Error(`${what}: counters ${JSON.stringify(c)} for ${runs()} runs`);
    return `${what}: matched${field === 'matched' ? '' : ` = ${field}`} = ${c[field]} = runs, 0 failed`;
  };
  let perfRuns = 0;
  let mirrorRuns = 0;
  let deadEndRuns = 0;

  const configs: Config[] = [
    { name: 'hook chain compiled in, no session on the interface', target: 3, repeat: opts.repeat, apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, false); cap.useGenerated(null); } },
    { name: 'interface on, engine slot empty (tail call misses)', target: null, repeat: opts.repeat, apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.useGenerated(null); } },
    { name: 'generated: 1 pid session, packet not selected', target: 10, repeat: opts.repeat, apply: gen(pidSessions(1)) },
    { name: 'generated: 8 pid sessions, packet not selected', target: 10, repeat: opts.repeat, apply: gen(pidSessions(8)) },
    { name: `generated: 1 expression session (${MISSING[0]}), no match`, target: 10, repeat: opts.repeat, apply: gen(exprSessions(1)) },
    { name: 'generated: 8 expression sessions, no match', target: null, repeat: opts.repeat, apply: gen(exprSessions(8)) },
    { name: 'interpreter: 1 pid session, packet not selected', target: 10, repeat: opts.repeat, apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.useInterpreter([{ tgids: [NOT_OWNER], expr: null }]); } },
    { name: `interpreter: 1 expression session (${MISSING[0]}), no match`, target: 10, repeat: opts.repeat, apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.useInterpreter([{ expr: MISSING[0]! }]); } },
    {
      name: 'generated: tcp port 443 matches, captured (perf ring)', target: null, repeat: opts.deliverRepeat,
      apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.session(0, 'CAPTURE'); cap.useDeliver('tc_cap_deliver'); cap.useGenerated([{ slot: 0, filters: filtersFor('tcp port 443') }]); },
      after: (runs) => { perfRuns += runs; drainPerf(); },
      check: () => { const c = delivered(0, () => perfRuns, 'perf', 'captured')(); if (perfSamples !== perfRuns || perf.stats.lost) throw new Error(`perf: ${perfSamples} samples, ${perf.stats.lost} lost for ${perfRuns} runs`); return `${c}; ${perfSamples} samples read`; },
    },
    {
      name: 'generated: tcp port 443 matches, mirrored (clone to a veth)', target: 150, repeat: opts.deliverRepeat,
      apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.session(2, 'MIRROR', 262144, mirrorIfindex); cap.useDeliver('tc_cap_deliver'); cap.useGenerated([{ slot: 2, filters: filtersFor('tcp port 443') }]); },
      after: (runs) => { mirrorRuns += runs; },
      check: () => delivered(2, () => mirrorRuns, 'mirror', 'matched')(),
    },
    {
      name: 'generated: tcp port 443 matches, mirrored (clone to a veth whose peer is down)', target: null, repeat: opts.deliverRepeat,
      apply: () => { cap.iface(TEST_RUN_IFINDEX, 14, true); cap.session(1, 'MIRROR', 262144, deadEnd.ifindex); cap.useDeliver('tc_cap_deliver'); cap.useGenerated([{ slot: 1, filters: filtersFor('tcp port 443') }]); },
      after: (runs) => { deadEndRuns += runs; },
      check: () => delivered(1, () => deadEndRuns, 'mirror to the dead end', 'matched')(),
    },
  ];

  // Counters and run tallies both count from here, warm-up included (each delivering row has its own slot).
  cap.resetCounters();
  const rows: EngineRow[] = configs.map((c) => ({ name: c.name, target: c.target, base: [], ns: [], check: '' }));
  // The floor of a mirror: a bare clone to the same veth, next to the empty program.
  const empty = BpfObject.open(path.join(ROOT, 'build/bpf/fixtures/tc_empty.bpf.o'));
  empty.load();
  const clone = BpfObject.open(path.join(ROOT, 'build/bpf/fixtures/tc_clone.bpf.o'));
  clone.load();
  clone.map('emon_clone_cfg').update(u32(0), u32(mirrorIfindex));
  const floor: EngineRow = { name: 'floor: bpf_clone_redirect alone to the same veth (vs an empty program)', target: null, base: [], ns: [], check: '' };
  const floorDeadEnd: EngineRow = { name: 'floor: bpf_clone_redirect alone to the veth whose peer is down (vs an empty program)', target: null, base: [], ns: [], check: '' };
  const shippedFd = shipped.progFd('tc_ingress');
  // Clones each floor made and those bpf_clone_redirect reported failed (non-zero: the veth
  // whose peer is down drops every copy in its transmit, which returns NET_XMIT_DROP).
  const refusedSoFar = () => clone.map('emon_clone_cfg').lookup(u32(1))!.readUInt32LE(0);
  const cloneRuns = [0, 0];
  const refused = [0, 0];
  let reps = 0;
  try {
    for (let rep = -1; rep < opts.reps && Date.now() < opts.deadline; rep++) {
      for (const [i, c] of configs.entries()) {
        c.apply();
        const order = (rep + i) % 2 === 0 ? ['shipped', 'row'] : ['row', 'shipped'];
        for (const which of order) {
          if (which === 'shipped') {
            const r = runner.run(shippedFd, 'tc_ingress', frame, c.repeat);
            if (rep >= 0) rows[i]!.base.push(r.durationNs);
          } else {
            const r = runner.run(cap.flows.progFd('tc_ingress'), 'tc_ingress (hook chain)', frame, c.repeat);
            if (r.retval !== -1) throw new Error(`${c.name}: retval ${r.retval}`);
            c.after?.(c.repeat);
            if (rep >= 0) rows[i]!.ns.push(r.durationNs);
          }
        }
        // Delivering rows leave their session set up: clear it for the next row.
        for (const slot of [0, 1, 2]) cap.session(slot, 'NONE');
        cap.useDeliver(null);
      }
      for (const [k, [row, ifindex]] of ([[floor, mirrorIfindex], [floorDeadEnd, deadEnd.ifindex]] as const).entries()) {
        clone.map('emon_clone_cfg').update(u32(0), u32(ifindex));
        for (const which of rep % 2 === 0 ? ['empty', 'clone'] : ['clone', 'empty']) {
          const before = refusedSoFar();
          const r = which === 'empty' ? runner.run(empty.progFd('tc_empty'), 'tc_empty', frame, opts.deliverRepeat) : runner.run(clone.progFd('tc_clone'), 'tc_clone', frame, opts.deliverRepeat);
          if (which === 'clone') { cloneRuns[k]! += opts.deliverRepeat; refused[k]! += refusedSoFar() - before; }
          if (rep >= 0) (which === 'empty' ? row.base : row.ns).push(r.durationNs);
        }
      }
      if (rep >= 0) reps = rep + 1;
      console.error(`capture engine: ${rep < 0 ? 'warm-up' : `rep ${rep + 1}`} done`);
    }
  } finally {
    // nothing to release here: every object is closed below
  }
  for (const [i, c] of configs.entries()) rows[i]!.check = c.check?.() ?? 'retval -1 every run';
  floor.check = `${refused[0]} of ${cloneRuns[0]} clones reported failed`;
  floorDeadEnd.check = `${refused[1]} of ${cloneRuns[1]} clones reported failed (dropped by the transmit)`;
  rows.push(floor, floorDeadEnd);
  clone.close();
  empty.close();
  perf.close();
  cap.close();
  shipped.close();
  return { rows, reps };
}

export function engineTable(rows: EngineRow[]): string {
  const t = new Table({ head: ['case', 'classifier without the chain ns (min..max)', 'with capture ns (min..max)', 'added ns (min..max)', 'target', 'check'], style: { head: [], border: [] } });
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}..${Math.max(...xs).toFixed(0)}`;
  for (const r of rows) {
    const d = r.ns.map((n, i) => n - r.base[i]!);
    const md = median(d);
    t.push([r.name, `${median(r.base).toFixed(1)} (${range(r.base)})`, `${median(r.ns).toFixed(1)} (${range(r.ns)})`, `${md.toFixed(1)} (${range(d)})`,
      r.target === null ? '-' : `<= ${r.target}: ${md <= r.target ? 'PASS' : 'FAIL'}`, r.check]);
  }
  return t.toString();
}

export { machine };
