// SPDX-License-Identifier: Apache-2.0
// Per-packet cost of the shipped flow classifier (build/bpf/flows.bpf.o: tc_ingress and
// tc_egress) with BPF_PROG_TEST_RUN, next to an empty TC program (test/fixtures/bpf/
// tc_empty.bpf.c) measured in the same run, on the same frames, in alternating order.
//
//   sudo node build/js/bench/classifier/main.js [--reps 7] [--repeat 1000000]
//        [--new-flows 200000] [--spread 50000] [--one-shot 20000] [--max-minutes 10]
//        [--compare-obj OTHER_BUILD_OF_flows.bpf.o] [--hooks-only]
//        [--only hot,spread,new,oneshot,profile,hooks]
//
// Rows:
//  - existing flow: one frame, `repeat` runs. The first run creates the flow, every other
//    run takes the existing-flow path (lookup, counters), with the flow hot in the caches.
//  - existing flows spread over `spread` tuples: test/fixtures/bpf/tc_tuple_walk.bpf.c
//    rewrites the source address on every run, cycling through `spread` tuples that a
//    first pass created, then tail-calls the classifier: lookups now miss the caches as
//    they do with live traffic. Baseline: the same walker tail-calling tc_empty.
//  - new flow: the walker gives every run a new tuple (modulus 0), into a freshly loaded
//    object whose emon_flows has room for all of them (no LRU eviction: checked), so each
//    of the `new-flows` runs takes the whole new-flow path (miss, owner lookups, insert).
//    Twice: with no owner anywhere, and to a listener (a wildcard bind for the local port).
//    Baseline: the walker in front of tc_empty, same count.
//  - floors (test/fixtures/bpf/tc_cost_parts.bpf.c part_flow, part_flow16): the walker in
//    front of a program that does only what no classifier can avoid, with the classifier's
//    40-byte key and with a 16-byte IPv4 key: for the new-flow rows a lookup miss and an
//    insert into a fresh LRU hash as large as theirs (the kernel's price of a new element),
//    for the spread rows a cache-cold lookup and the counter updates in a table of the
//    shipped size. What a classifier row adds above its floor is the classifier's own work.
//    The floors run in the same repetitions as the rows (after them, with that
//    repetition's tc_empty figure), across all four directions and ownerships.
//  - new flow, one test run per packet: `one-shot` distinct frames built here, each run
//    once (repeat 1); baseline tc_empty on the same frames. Each run starts from caches
//    the syscall and Node have just disturbed, so this is the cold-cache cost; the
//    kernel's timer overhead at repeat 1 cancels against the baseline.
//  - hook chain (bpf/flows.bpf.c hooks_dispatch; --hooks-only runs just this): the shipped
//    classifier with no hook bit set on the interface, with the L7 bit set and with the
//    capture bit set (the slot holding tc_empty: a stage that returns at once), next to the
//    same source built without the chain (test/fixtures/bpf/flows_nohooks.bpf.c), all four
//    alternating on the same frames. Targets: no bit <= 3 ns above the build without the
//    chain (within noise); L7 bit with a stage that returns at once <= 10 ns. That a set bit
//    really reaches the slot is checked with test/fixtures/bpf/hook_stage.bpf.c (it counts).
// Every measured program's work is checked afterwards: packet counts in emon_flows must
// equal the runs made, flows created must equal the tuples sent, nothing evicted.
// Test runs have no socket (skb->sk is NULL): egress takes the same owner path as ingress
// (tuples, then binds), which is its worst case; owner maps are empty, so every owner
// lookup of the new-flow path misses (also the worst case).
import path from 'node:path';
import Table from 'cli-table3';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { FLOW, HOOK, IFACE } from '../../daemon/src/monitor/wire.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { MONITOR_COUNTERS as STAT_NAMES } from '../../daemon/src/contract/status.js';
import { machine, median, numArg, ROOT } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';
import { edgeCaseFrames, PACKETS, tcp4 } from './packets.js';
import { TcTestRunner } from './testrun.js';
import { bindWildcard } from './owners.js';

const REPS = numArg('reps', 7);
const REPEAT = numArg('repeat', 1_000_000);
const NEW_FLOWS = numArg('new-flows', 200_000);
const SPREAD = numArg('spread', 50_000);
const ONE_SHOT = numArg('one-shot', 20_000);
const DEADLINE = Date.now() + numArg('max-minutes', 10) * 60_000;
const TARGET_NS = 60;
/** --compare-obj PATH: another build of flows.bpf.o, measured next to the shipped one (hot, spread and new-flow rows). */
const COMPARE_OBJ = strArg('compare-obj');
/** --only a,b: run just these sections (hot, spread, new, oneshot, profile, hooks); default all. */
const ONLY = strArg('only')?.split(',');
const SECTIONS = ['hot', 'spread', 'new', 'oneshot', 'profile', 'hooks'] as const;
for (const o of ONLY ?? []) if (!(SECTIONS as readonly string[]).includes(o)) throw new Error(`--only: unknown section "${o}" (one of ${SECTIONS.join(', ')})`);
const wants = (s: (typeof SECTIONS)[number]): boolean => !ONLY || ONLY.includes(s);
/** The builds measured in the spread and new-flow rows: the shipped one, and --compare-obj. */
const BUILDS = [{ label: '', file: path.join(ROOT, 'build/bpf/flows.bpf.o') }, ...(COMPARE_OBJ ? [{ label: ' [--compare-obj]', file: COMPARE_OBJ }] : [])];

const FLOWS_OBJ = path.join(ROOT, 'build/bpf/flows.bpf.o');
const EMPTY_OBJ = path.join(ROOT, 'build/bpf/fixtures/tc_empty.bpf.o');
const WALK_OBJ = path.join(ROOT, 'build/bpf/fixtures/tc_tuple_walk.bpf.o');
const PARTS_OBJ = path.join(ROOT, 'build/bpf/fixtures/tc_cost_parts.bpf.o');
const NOHOOKS_OBJ = path.join(ROOT, 'build/bpf/fixtures/flows_nohooks.bpf.o');
const STAGE_OBJ = path.join(ROOT, 'build/bpf/fixtures/hook_stage.bpf.o');
const HOOKS_ONLY = process.argv.includes('--hooks-only');
const HOOK_TARGET = { none: 3, l7: 10, capture: 10 } as const;
/** tc_cost_parts.bpf.c's floor programs: program, table, key. */
const FLOORS: ReadonlyArray<readonly [string, string, string]> = [
  ['part_flow', 'emon_part_table', "the classifier's 40-byte key"],
  ['part_flow16', 'emon_part_table16', 'a 16-byte IPv4 key'],
];

/** test/fixtures/bpf/tc_cost_parts.bpf.c: one step of the existing-flow path each. */
const PARTS: Array<[string, string]> = [
  ['part_clock_boot', 'bpf_ktime_get_boot_ns (last_ns, first_ns)'],
  ['part_clock_coarse', 'bpf_ktime_get_coarse_ns (for comparison)'],
  ['part_load_two', '2 x bpf_skb_load_bytes_relative (IP 20 B, L4 14 B)'],
  ['part_load_one', '1 x bpf_skb_load_bytes_relative (34 B)'],
  ['part_load_direct', 'the same 34 B by direct packet access'],
  ['part_lookup', 'LRU hash lookup, 40 B key, hit'],
  ['part_lookup_update', 'lookup + 2 atomic adds + flag OR + last_ns store'],
];
const DIRS = ['tc_ingress', 'tc_egress'] as const;
type Dir = (typeof DIRS)[number];

const runner = new TcTestRunner();
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function stat(obj: BpfObject, name: (typeof STAT_NAMES)[number]): bigint {
  const m = obj.map('emon_stats');
  const v = m.lookup(u32(STAT_NAMES.indexOf(name)));
  return v ? m.sumPerCpuU64(v) : 0n;
}

/** Entries in emon_flows and the sum of their packet counters. Values at the map's own size:
 * a --compare-obj build may have another layout version, with the fields read here where
 * this build has them (FLOW's first 136 bytes are those of layout 3 as well). */
function flowTotals(obj: BpfObject): { entries: number; packets: number; flags: number } {
  let entries = 0;
  let packets = 0;
  let flags = 0;
  const m = obj.map('emon_flows');
  m.forEachChunk(({ values, count }) => {
    for (let i = 0; i < count; i++) {
      const o = i * m.valueBytes;
      packets += Number(values.readBigUInt64LE(o + FLOW.fields.tx_packets.offset) + values.readBigUInt64LE(o + FLOW.fields.rx_packets.offset));
      flags |= values[o + FLOW.fields.flags.offset]!;
    }
    entries += count;
  });
  return { entries, packets, flags };
}

/** BPF_PROG_TEST_RUN runs TC programs on the loopback device (ifindex 1), Ethernet-framed. */
const TEST_RUN_IFINDEX = 1;
const HELPERS_ONLY = process.argv.includes('--helpers-only');

function loadFlows(maxFlows?: number, file = FLOWS_OBJ): BpfObject {
  const o = BpfObject.open(file);
  try {
    if (maxFlows !== undefined) o.setMaxEntries('emon_flows', maxFlows);
    o.load();
    // What the daemon does when it attaches to an Ethernet interface: record its link-layer
    // length so the classifier reads headers directly (--helpers-only: measure the helper
    // path used for interfaces of unknown link type). Objects from before emon_ifaces lack it.
    if (!HELPERS_ONLY && o.mapNames().includes('emon_ifaces')) setIface(o, 0);
    return o;
  } catch (err) {
    o.close();
    throw err;
  }
}

/** The test-run interface's emon_ifaces entry: Ethernet, and the given hook bits. */
function setIface(o: BpfObject, hooks: number): void {
  const v = Buffer.alloc(IFACE.size);
  writeUint(v, IFACE.fields.ifindex, TEST_RUN_IFINDEX);
  writeUint(v, IFACE.fields.l2_len, HELPERS_ONLY ? 0xffff : 14);
  writeUint(v, IFACE.fields.hooks, hooks);
  o.map(MAP.ifaces).update(u32(TEST_RUN_IFINDEX), v);
}

interface HookRow { name: string; dir: Dir; base: number[]; none: number[]; l7: number[]; capture: number[]; check: string }

/**
 * The hook chain's cost: build without it / no bit / L7 bit / capture bit, alternating
 * (the slot holds tc_empty, a stage that returns at once; the packets' flows stay
 * undecided for L7, so every packet is dispatched). Then the check: with the counting
 * stage in both slots and both bits set, every run reaches both stages.
 */
function hookRows(emptyFd: number, more: (rep: number) => boolean): HookRow[] {
  const rows: HookRow[] = [];
  const base = loadFlows(undefined, NOHOOKS_OBJ);
  const shipped = loadFlows();
  const stage = BpfObject.open(STAGE_OBJ);
  try {
    for (const name of [MAP.hooks, MAP.pktMeta, MAP.flows]) stage.reuseMap(name, shipped.map(name).fd);
    stage.load();
    const hooks = shipped.map(MAP.hooks);
    hooks.update(u32(HOOK.l7.slot), u32(emptyFd));
    hooks.update(u32(HOOK.capture.slot), u32(emptyFd));
    const variants = ['base', 'none', 'l7', 'capture'] as const;
    for (const p of PACKETS) {
      for (const dir of DIRS) {
        const row: HookRow = { name: p.name, dir, base: [], none: [], l7: [], capture: [], check: '' };
        for (let rep = -1; more(rep); rep++) {
          for (let j = 0; j < variants.length; j++) {
            const v = variants[(j + rep + 4) % variants.length]!;
            if (v !== 'base') setIface(shipped, v === 'none' ? 0 : HOOK[v].bit);
            const r = runner.run((v === 'base' ? base : shipped).progFd(dir), dir, p.frame, REPEAT);
            if (r.retval !== -1) throw new Error(`${v} ${dir}: retval ${r.retval}, expected -1 (TC_ACT_UNSPEC)`);
            if (rep >= 0) row[v].push(r.durationNs);
          }
        }
        rows.push(row);
      }
    }
    // The check: the counting stage in both slots, both bits: every run reaches both.
    hooks.update(u32(HOOK.l7.slot), u32(stage.progFd('tc_stage_l7')));
    hooks.update(u32(HOOK.capture.slot), u32(stage.progFd('tc_stage_capture')));
    setIface(shipped, HOOK.l7.bit | HOOK.capture.bit);
    const runs = 10_000;
    for (const p of PACKETS) for (const dir of DIRS) runner.run(shipped.progFd(dir), dir, p.frame, runs);
    const seen = [0, 0];
    stage.map('emon_hs_seen').forEachChunk(({ keys, values, count }) => {
      for (let i = 0; i < count; i++) seen[keys[i * 8]!]! += Number(values.readBigUInt64LE(i * 32));
    });
    const want = runs * PACKETS.length * DIRS.length;
    if (seen[0] !== want || seen[1] !== want) throw new Error(`hook check: L7 stage saw ${seen[0]}, capture stage ${seen[1]}, of ${want} runs`);
    for (const r of rows) r.check = `bits set: ${want} of ${want} runs reached each stage`;
  } finally {
    stage.close();
    shipped.close();
    base.close();
  }
  return rows;
}

function printHookRows(rows: HookRow[]): void {
  const t = new Table({
    head: ['packet (existing flow)', 'dir', 'without chain ns', 'no bit ns', 'L7 bit ns', 'capture bit ns',
      `no bit - without (<= ${HOOK_TARGET.none})`, `L7 bit - without (<= ${HOOK_TARGET.l7})`, `capture bit - without (<= ${HOOK_TARGET.capture})`],
    style: { head: [], border: [] },
  });
  let fails = 0;
  const diff = (r: HookRow, k: 'none' | 'l7' | 'capture') => {
    const d = r[k].map((x, i) => x - r.base[i]!);
    const m = median(d);
    const ok = m <= HOOK_TARGET[k];
    if (!ok) fails++;
    return `${m.toFixed(1)} (${Math.min(...d)}..${Math.max(...d)}) ${ok ? 'PASS' : 'FAIL'}`;
  };
  for (const r of rows) {
    t.push([r.name, r.dir.replace('tc_', ''), median(r.base).toFixed(1), median(r.none).toFixed(1), median(r.l7).toFixed(1), median(r.capture).toFixed(1), diff(r, 'none'), diff(r, 'l7'), diff(r, 'capture')]);
  }
  console.log(`\nhook chain: the shipped classifier with no bit / a bit set (stage tc_empty: returns at once) vs the same source built without the chain; ${REPEAT / 1e6}M runs per sample, the four alternate`);
  console.log(t.toString());
  console.log(rows[0]?.check ?? '');
  console.log(`hook chain targets: ${fails === 0 ? 'PASS' : `FAIL in ${fails} cells`}`);
}

/** The walker fixture: its program, its slot and its state. */
class Walker {
  readonly obj: BpfObject;
  readonly fd: number;
  constructor() {
    this.obj = BpfObject.open(WALK_OBJ);
    this.obj.load();
    this.fd = this.obj.progFd('tc_tuple_walk');
  }
  target(progFd: number): void {
    this.obj.map('emon_tw_progs').update(u32(0), u32(progFd));
  }
  reset(modulus: number): void {
    const v = Buffer.alloc(16);
    v.writeUInt32LE(modulus, 8);
    this.obj.map('emon_tw_state').update(u32(0), v);
  }
  state(): { counter: number; missed: number } {
    const v = this.obj.map('emon_tw_state').lookup(u32(0))!;
    return { counter: Number(v.readBigUInt64LE(0)), missed: v.readUInt32LE(12) };
  }
  run(frame: Buffer, repeat: number): number {
    const before = this.state().counter;
    const r = runner.run(this.fd, 'tc_tuple_walk', frame, repeat);
    const s = this.state();
    if (s.missed || s.counter - before !== repeat) throw new Error(`walker: ${s.counter - before} of ${repeat} runs rewritten, ${s.missed} missed`);
    return r.durationNs;
  }
  close(): void {
    this.obj.close();
  }
}

interface Row {
  name: string;
  /** 'any': a fixture's row (a floor), not the classifier in one direction. */
  dir: Dir | 'any';
  runs: string;
  empty: number[];
  flows: number[];
  check: string;
}

function fmtRow(r: Row): string[] {
  const diffs = r.flows.map((f, i) => f - r.empty[i]!);
  const e = median(r.empty);
  const f = median(r.flows);
  const d = median(diffs);
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}..${Math.max(...xs).toFixed(0)}`;
  return [
    r.name, r.dir.replace('tc_', ''), r.runs,
    `${e.toFixed(1)} (${range(r.empty)})`,
    `${f.toFixed(1)} (${range(r.flows)})`,
    `${d.toFixed(1)} (${range(diffs)})`,
    (f / e).toFixed(2),
    d <= TARGET_NS ? 'PASS' : 'FAIL',
    r.check,
  ];
}

/**
 * With --compare-obj: both builds see every edge-case frame in both directions and must
 * end with the same flows (keys, counters, flags) and the same stats: they parse alike.
 */
function checkSameResults(a: string, b: string): string {
  const frames = edgeCaseFrames();
  const run = (file: string) => {
    const o = loadFlows(undefined, file);
    try {
      for (const f of frames) for (const dir of DIRS) runner.run(o.progFd(dir), dir, f, 3);
      const flows: string[] = [];
      const m = o.map('emon_flows');
      m.forEachChunk(({ keys, values, count }) => {
        for (let i = 0; i < count; i++) {
          const v = values.subarray(i * m.valueBytes, (i + 1) * m.valueBytes);
          // Everything but the times of the run (first_ns, last_ns, last_tick), up to the
          // owner's end (close_sum, after it since layout 4, is no classifier's field).
          const F = FLOW.fields;
          flows.push(`${keys.subarray(i * 40, i * 40 + 40).toString('hex')} ${v.subarray(0, F.first_ns.offset).toString('hex')} ${v.subarray(F.closed_ns.offset, F.last_tick.offset).toString('hex')} ${v.subarray(F.tcp_flags_tx.offset, F.owner.offset + F.owner.size).toString('hex')}`);
        }
      });
      return { flows: flows.sort(), stats: STAT_NAMES.map((n) => `${n}=${stat(o, n)}`) };
    } finally {
      o.close();
    }
  };
  const x = run(a);
  const y = run(b);
  const same = JSON.stringify(x) === JSON.stringify(y);
  if (!same) throw new Error(`${path.basename(b)} parses differently from ${path.basename(a)}: flows ${x.flows.length} vs ${y.flows.length}; stats ${x.stats.filter((s, i) => s !== y.stats[i]).join(', ')} vs ${y.stats.filter((s, i) => s !== x.stats[i]).join(', ')}`);
  return `${frames.length} edge-case frames x 2 directions: identical flows (${x.flows.length}) and stats (${x.stats.filter((s) => !s.endsWith('=0')).join(', ')})`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/classifier needs root (BPF_PROG_TEST_RUN)');
  const rows: Row[] = [];
  const opened: BpfObject[] = [];
  const walker = new Walker();
  const empty = BpfObject.open(EMPTY_OBJ);
  try {
    empty.load();
    const emptyFd = empty.progFd('tc_empty');
    let reps = 0;
    /** Whether repetition `rep` runs (-1: the warm-up); counts the repetitions run, for the header. */
    const more = (rep: number): boolean => {
      const ok = rep < REPS && Date.now() < DEADLINE;
      if (ok) reps = Math.max(reps, rep + 1);
      return ok;
    };
    /** Floor rows (FLOORS) behind the walker, run in the repetitions of the classifier's
     * rows they are the floor of (runRep() after those rows' runs, with that repetition's
     * tc_empty figure), so that the VM's drift between sections does not separate a row from
     * its floor. `modulus` 0: every run a new key, a fresh table per run; n: one table whose
     * n keys a first pass creates, then `runs` runs cycle through them. */
    const floorSet = (what: string, runsLabel: string, max: number, modulus: number, runs: number) => {
      const frame = modulus ? tcp4() : tcp4(0x02);
      const table = (map: string): BpfObject => {
        const t = BpfObject.open(PARTS_OBJ);
        opened.push(t);
        t.setMaxEntries(map, max);
        t.load();
        return t;
      };
      const keys = (t: BpfObject, map: string): number => {
        let n = 0;
        t.map(map).forEachChunk(({ count }) => void (n += count));
        return n;
      };
      const items = FLOORS.map(([prog, map, key]) => {
        const kept = modulus ? table(map) : null;
        if (kept) {
          walker.target(kept.progFd(prog));
          walker.reset(modulus);
          walker.run(frame, modulus); // creates them
          walker.target(emptyFd);
        }
        return { prog, map, kept, made: 0, row: { name: `floor, ${key}: ${what}`, dir: 'any', runs: runsLabel, empty: [], flows: [], check: '' } as Row };
      });
      return {
        runRep(rep: number, emptyNs: number): void {
          for (let k = 0; k < items.length; k++) {
            const it = items[(k + rep + 1 + items.length) % items.length]!;
            const t = it.kept ?? table(it.map);
            walker.reset(modulus);
            walker.target(t.progFd(it.prog));
            const ns = walker.run(frame, runs);
            walker.target(emptyFd);
            if (!it.kept) {
              const n = keys(t, it.map);
              if (n !== runs) throw new Error(`floor ${it.prog}: ${n} keys in the table after ${runs} runs`);
              it.made += n;
              t.close();
            }
            if (rep >= 0) {
              it.row.flows.push(ns);
              it.row.empty.push(emptyNs);
            }
          }
        },
        finish(): Row[] {
          return items.map((it) => {
            if (it.kept) {
              const n = keys(it.kept, it.map);
              if (n !== modulus) throw new Error(`floor ${it.prog}: ${n} keys in the table, ${modulus} expected (LRU evicted some: lower --spread)`);
              it.row.check = `${n} keys, none new; measured in the rows' repetitions`;
              it.kept.close();
            } else {
              it.row.check = `inserted ${it.made} keys in fresh tables, none evicted; measured in the rows' repetitions`;
            }
            return it.row;
          });
        },
      };
    };

    if (HOOKS_ONLY) {
      console.log(`\nbench/classifier --hooks-only - ${machine()}`);
      printHookRows(hookRows(emptyFd, more));
      return;
    }

    // 1. Existing flow, hot: the shipped default map size, one object for all frames
    //    (and the same for --compare-obj, a candidate build, in the same repetitions).
    if (wants('hot')) {
      const objs = [{ label: '', obj: loadFlows() }];
      opened.push(objs[0]!.obj);
      if (COMPARE_OBJ) {
        objs.push({ label: ' [--compare-obj]', obj: loadFlows(undefined, COMPARE_OBJ) });
        opened.push(objs[1]!.obj);
      }
      const runs = objs.map(() => 0);
      const byCase = PACKETS.flatMap((p) => DIRS.map((dir) => ({
        p, dir, empty: [] as number[],
        rows: objs.map((o) => ({ name: `existing flow: ${p.name}${o.label}`, dir, runs: `${REPEAT / 1e6}M x 1 frame`, empty: [] as number[], flows: [] as number[], check: '' })),
      })));
      for (let rep = -1; more(rep); rep++) {
        for (const [ci, c] of byCase.entries()) {
          // -1: the empty program; rotate so that no program always runs first.
          const progs = [-1, ...objs.keys()];
          for (let j = 0; j < progs.length; j++) {
            const which = progs[(j + rep + ci + progs.length) % progs.length]!;
            const r = which < 0 ? runner.run(emptyFd, 'tc_empty', c.p.frame, REPEAT) : runner.run(objs[which]!.obj.progFd(c.dir), c.dir, c.p.frame, REPEAT);
            if (r.retval !== -1) throw new Error(`${which < 0 ? 'tc_empty' : c.dir}: retval ${r.retval}, expected -1 (TC_ACT_UNSPEC)`);
            if (which >= 0) runs[which]! += REPEAT;
            if (rep < 0) continue;
            if (which < 0) c.empty.push(r.durationNs);
            else c.rows[which]!.flows.push(r.durationNs);
          }
        }
        console.error(`existing flow, hot: ${rep < 0 ? 'warm-up' : `rep ${rep + 1}`} done`);
      }
      for (const [oi, o] of objs.entries()) {
        const t = flowTotals(o.obj);
        const created = Number(stat(o.obj, 'flowsCreated'));
        const trunc = Number(stat(o.obj, 'packetsTruncated'));
        // Frames with the same tuple share flows; ingress and egress of a frame are two
        // flows (local and remote swap).
        if (t.packets !== runs[oi] || trunc !== 0 || created !== t.entries) {
          throw new Error(`existing flow${o.label}: ${t.packets} packets counted for ${runs[oi]} runs, ${t.entries} flows, ${created} created, ${trunc} truncated`);
        }
        for (const c of byCase) {
          c.rows[oi]!.empty = c.empty;
          c.rows[oi]!.check = `counted ${t.packets} of ${runs[oi]} runs in ${t.entries} flows`;
        }
      }
      for (const c of byCase) rows.push(...c.rows);
      for (const o of objs) o.obj.close();
    }

    // 2. Existing flows spread over SPREAD tuples (cache-cold lookups), shipped map size;
    //    with --compare-obj both builds, each with its own map, alternating with the empty program.
    //    Unowned: no owner map entries, as in every other row, so each flow stays unowned and
    //    (visited once per several ms, a new jiffy each time) looks for its owner again on
    //    every packet (flow_retry_owner: tuples and binds lookups). Owned: a wildcard bind for
    //    the flows' local port (443 ingress, 40000 egress), so the flows get an owner when
    //    created, as a host's own connections do, and the row prices the existing-flow path.
    // Their floors: the same walk through SPREAD tuples, a table of the shipped size.
    const spreadFloors = wants('spread') ? (() => {
      const shipped = BpfObject.open(FLOWS_OBJ);
      const max = shipped.mapSpec('emon_flows').maxEntries;
      shipped.close();
      return floorSet(`${SPREAD} keys in turn in an LRU hash of the shipped size (max ${max}): lookup + counter updates`, `${REPEAT / 1e6}M, walker`, max, SPREAD, REPEAT);
    })() : null;
    for (const [dir, owned] of wants('spread') ? DIRS.flatMap((d) => [[d, false], [d, true]] as const) : []) {
      const frame = tcp4();
      const objs = BUILDS.map((b) => {
        const flows = loadFlows(undefined, b.file);
        opened.push(flows);
        if (owned) bindWildcard(flows, dir === 'tc_ingress' ? 443 : 40000);
        const row: Row = { name: `existing flows, ${SPREAD} tuples in turn: IPv4 TCP 64 B, ${owned ? 'owned (bind)' : 'unowned'}${b.label}`, dir, runs: `${REPEAT / 1e6}M, walker`, empty: [], flows: [], check: '' };
        walker.target(flows.progFd(dir));
        walker.reset(SPREAD);
        walker.run(frame, SPREAD); // creates them
        const first = flowTotals(flows);
        if (first.entries !== SPREAD) throw new Error(`spread: ${first.entries} flows after creating ${SPREAD} (LRU evicted some: lower --spread)`);
        return { flows, row, runs: SPREAD, empty: [] as number[] };
      });
      for (let rep = -1; more(rep); rep++) {
        const order = [-1, ...objs.keys()];
        let emptyNs = NaN;
        for (let j = 0; j < order.length; j++) {
          const which = order[(j + rep + 1 + order.length) % order.length]!;
          walker.target(which < 0 ? emptyFd : objs[which]!.flows.progFd(dir));
          walker.reset(SPREAD);
          const ns = walker.run(frame, REPEAT);
          if (which >= 0) objs[which]!.runs += REPEAT;
          if (which < 0) emptyNs = ns;
          if (rep < 0) continue;
          if (which < 0) for (const o of objs) o.row.empty.push(ns);
          else objs[which]!.row.flows.push(ns);
        }
        spreadFloors?.runRep(rep, emptyNs);
      }
      walker.target(emptyFd);
      for (const o of objs) {
        const t = flowTotals(o.flows);
        const created = Number(stat(o.flows, 'flowsCreated'));
        if (t.packets !== o.runs || t.entries !== SPREAD || created !== SPREAD) {
          throw new Error(`spread ${dir}${o.row.name}: ${t.packets} packets for ${o.runs} runs, ${t.entries} flows, ${created} created`);
        }
        const unattributed = Number(stat(o.flows, 'flowsUnattributed'));
        if (unattributed !== (owned ? 0 : SPREAD)) throw new Error(`spread ${dir}${o.row.name}: ${unattributed} flows created unowned`);
        o.row.check = `counted ${t.packets} of ${o.runs}; ${t.entries} flows, none new; ${owned ? 'all owned' : 'all unowned'}`;
        rows.push(o.row);
        o.flows.close();
      }
      console.error(`existing flows, spread, ${dir} done`);
    }
    if (spreadFloors) rows.push(...spreadFloors.finish());

    // 3. New flow, warm: every walker run is a new tuple, fresh object per repetition
    //    (with --compare-obj: each build in turn, and the empty program, alternating).
    //    Unowned: no owner anywhere (every owner lookup misses: the worst case). To a
    //    listener: a wildcard bind for the local port, as for the owned spread rows (what a
    //    server's inbound connections pay).
    const newMax = 1 << Math.ceil(Math.log2(NEW_FLOWS * 2.5));
    // Their floors: a new key per run into a fresh table as large as theirs.
    const newFloors = wants('new') ? floorSet(`new key into a fresh LRU hash (max ${newMax}): lookup miss + insert`, `${NEW_FLOWS / 1e3}k distinct, walker`, newMax, 0, NEW_FLOWS) : null;
    for (const [dir, owned] of wants('new') ? DIRS.flatMap((d) => [[d, false], [d, true]] as const) : []) {
      const frame = tcp4(0x02); // a SYN
      const rowsNew = BUILDS.map((b) => ({
        file: b.file, created: 0, failed: 0, maps: 0,
        row: { name: `new flow: IPv4 TCP SYN${owned ? ' to a listener (bind)' : ''}, fresh map (max ${newMax})${b.label}`, dir, runs: `${NEW_FLOWS / 1e3}k distinct, walker`, empty: [], flows: [], check: '' } as Row,
      }));
      for (let rep = -1; more(rep); rep++) {
        const order = [-1, ...rowsNew.keys()];
        let emptyNs = NaN;
        for (let j = 0; j < order.length; j++) {
          const which = order[(j + rep + 1 + order.length) % order.length]!;
          walker.reset(0);
          if (which < 0) {
            walker.target(emptyFd);
            const ns = walker.run(frame, NEW_FLOWS);
            emptyNs = ns;
            if (rep >= 0) for (const r of rowsNew) r.row.empty.push(ns);
            continue;
          }
          const r = rowsNew[which]!;
          const flows = loadFlows(newMax, r.file);
          opened.push(flows);
          if (owned) bindWildcard(flows, dir === 'tc_ingress' ? 443 : 40000);
          walker.target(flows.progFd(dir));
          const ns = walker.run(frame, NEW_FLOWS);
          walker.target(emptyFd); // drop the slot's reference before closing
          const t = flowTotals(flows);
          const c = Number(stat(flows, 'flowsCreated'));
          const f = Number(stat(flows, 'flowCreateFailed'));
          const u = Number(stat(flows, 'flowsUnattributed'));
          if (t.entries !== NEW_FLOWS || c !== NEW_FLOWS || t.packets !== NEW_FLOWS || f !== 0 || u !== (owned ? 0 : NEW_FLOWS)) {
            throw new Error(`new flow ${dir}${r.row.name}: ${t.entries} flows present, ${c} created, ${f} failed, ${u} unowned, ${t.packets} packets for ${NEW_FLOWS} runs`);
          }
          r.created += c;
          r.failed += f;
          r.maps++;
          flows.close();
          if (rep >= 0) r.row.flows.push(ns);
        }
        newFloors?.runRep(rep, emptyNs);
      }
      for (const r of rowsNew) {
        r.row.check = `created ${r.created} flows in ${r.maps} fresh maps, ${r.failed} failed, none evicted, ${owned ? 'all owned' : 'all unowned'}`;
        rows.push(r.row);
      }
      console.error(`new flow${owned ? ' to a listener' : ''}, ${dir} done`);
    }

    if (newFloors) rows.push(...newFloors.finish());

    // 4. New flow, one test run per frame (cold caches).
    for (const dir of wants('oneshot') ? DIRS : []) {
      const frames = Array.from({ length: ONE_SHOT }, (_, i) => {
        const f = tcp4(0x02);
        f.writeUInt32BE((0x0b000000 | i) >>> 0, 14 + 12); // 11.x.y.z: distinct sources
        return f;
      });
      const row: Row = { name: 'new flow: IPv4 TCP SYN, 1 test run per frame (cold)', dir, runs: `${ONE_SHOT / 1e3}k x repeat 1`, empty: [], flows: [], check: '' };
      let runs = 0;
      let present = 0;
      for (let rep = -1; more(rep); rep++) {
        const flows = loadFlows(1 << Math.ceil(Math.log2(ONE_SHOT * 2.5)));
        opened.push(flows);
        const fd = flows.progFd(dir);
        let se = 0;
        let sf = 0;
        // Interleaved frame by frame, so that both see the same machine state.
        for (let i = 0; i < frames.length; i++) {
          const fr = frames[i]!;
          if (i % 2 === 0) {
            se += runner.run(emptyFd, 'tc_empty', fr, 1).durationNs;
            sf += runner.run(fd, dir, fr, 1).durationNs;
          } else {
            sf += runner.run(fd, dir, fr, 1).durationNs;
            se += runner.run(emptyFd, 'tc_empty', fr, 1).durationNs;
          }
        }
        const t = flowTotals(flows);
        if (t.entries !== ONE_SHOT || Number(stat(flows, 'flowsCreated')) !== ONE_SHOT) throw new Error(`one-shot ${dir}: ${t.entries} flows for ${ONE_SHOT} frames`);
        runs += ONE_SHOT;
        present += t.entries;
        flows.close();
        if (rep >= 0) {
          row.empty.push(se / ONE_SHOT);
          row.flows.push(sf / ONE_SHOT);
        }
      }
      row.check = `created ${present} flows for ${runs} frames`;
      rows.push(row);
      console.error(`new flow, one-shot, ${dir} done`);
    }

    // 5. Profile: what each step of the existing-flow path costs on this machine.
    const parts = BpfObject.open(PARTS_OBJ);
    opened.push(parts);
    parts.load();
    const partRows = PARTS.map(([prog, what]) => ({ prog, what, empty: [] as number[], ns: [] as number[] }));
    for (let rep = -1; wants('profile') && more(rep); rep++) {
      for (const pr of partRows) {
        const order = rep % 2 === 0 ? ['empty', 'part'] : ['part', 'empty'];
        for (const which of order) {
          const r = which === 'empty' ? runner.run(emptyFd, 'tc_empty', PACKETS[0]!.frame, REPEAT) : runner.run(parts.progFd(pr.prog), pr.prog, PACKETS[0]!.frame, REPEAT);
          if (rep >= 0) (which === 'empty' ? pr.empty : pr.ns).push(r.durationNs);
        }
      }
    }
    console.error('profile done');
    const hookTable = wants('hooks') ? hookRows(emptyFd, more) : [];
    console.error('hook chain done');

    const same = COMPARE_OBJ ? checkSameResults(FLOWS_OBJ, COMPARE_OBJ) : null;

    const table = new Table({
      head: ['case', 'dir', 'runs per sample', 'empty ns (min..max)', 'tc_* ns (min..max)', 'above empty ns (min..max)', 'ratio', `<= ${TARGET_NS} ns`, 'check'],
      style: { head: [], border: [] },
    });
    for (const r of rows) table.push(fmtRow(r));
    console.log(`\nbench/classifier - ${machine()}`);
    console.log(`BPF_PROG_TEST_RUN, kernel-measured ns per run; ${reps} repetitions after one warm-up, medians; empty program and classifier alternate in the same run.`);
    console.log(`"above empty" is the median of per-repetition differences. Shared 2-core VM: expect 20-30% noise between runs.`);
    console.log(table.toString());
    const classifier = rows.filter((r) => r.dir !== 'any');
    const fails = classifier.filter((r) => median(r.flows.map((f, i) => f - r.empty[i]!)) > TARGET_NS);
    console.log(`target: at most ${TARGET_NS} ns above the empty program: ${fails.length === 0 ? 'PASS' : `FAIL in ${fails.length} of ${classifier.length} classifier rows`}`);

    if (same) console.log(`--compare-obj ${COMPARE_OBJ}: same results as ${FLOWS_OBJ}: ${same}`);

    const pt = new Table({ head: ['step (test/fixtures/bpf/tc_cost_parts.bpf.c)', 'program', 'ns', 'above empty ns (min..max)'], style: { head: [], border: [] } });
    for (const pr of partRows) {
      const diffs = pr.ns.map((n, i) => n - pr.empty[i]!);
      pt.push([pr.what, pr.prog, median(pr.ns).toFixed(1), `${median(diffs).toFixed(1)} (${Math.min(...diffs)}..${Math.max(...diffs)})`]);
    }
    if (hookTable.length) printHookRows(hookTable);
    if (wants('profile')) console.log(`\nprofile: the existing-flow path's steps alone, IPv4 TCP 64 B frame, ${REPEAT / 1e6}M runs each, same repetitions`);
    if (wants('profile')) console.log(pt.toString());
  } finally {
    for (const o of opened) o.close();
    walker.close();
    empty.close();
  }
}

await main();
