// SPDX-License-Identifier: Apache-2.0
// Flows read by key (issue 17): what the daemon pays per flow when it reads the flows the
// dirty ring reported, the flows of one pid, or the flows due for collection. Three readers
// of every key of one flow table, in the same run on the same map:
//   - C, one bpf(BPF_MAP_LOOKUP_ELEM) per key (bench/flowread/lookup.c): the syscall's floor;
//   - Node, one lookup per key through koffi (BpfMap.lookup after keyBytes): the daemon's
//     read before bpf/flowread.bpf.c, and its fallback;
//   - Node, FlowBatchReader: 256 keys per BPF_PROG_TEST_RUN of read_flows, values taken from
//     the mmapped slots (monitor/flowread.ts), what the daemon does now.
// All sum the first word of every value and must agree, and must find every flow.
// The table is the program's own emon_flows (flowread.bpf.o loaded privately, nothing pinned).
//
//   sudo node build/js/bench/flowread/main.js [--flows 200000] [--reps 5] [--max-minutes 5]
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import crypto from 'node:crypto';
import Table from 'cli-table3';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { FLOW_READ, MAP } from '../../daemon/src/monitor/components.js';
import { FlowBatchReader } from '../../daemon/src/monitor/flowread.js';
import { keyBytes, keyString } from '../../daemon/src/monitor/ownerindex.js';
import { FLOW, FLOW_KEY, READ_BATCH } from '../../daemon/src/monitor/wire.js';
import { compileC, machine, median, numArg, onExit, ROOT, spawnHelper, tempDir } from '../lib/harness.js';

const FLOWS = numArg('flows', 200_000);
const REPS = numArg('reps', 5);
const DEADLINE = Date.now() + numArg('max-minutes', 5) * 60_000;
const FILL_CHUNK = 8192;

interface Result { entries: number; sum: number; ms: number }

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/flowread needs root (it loads a BPF program)');
  const tmp = tempDir('flowread');
  const lookupBin = compileC(path.join(ROOT, 'bench/flowread/lookup.c'), tmp, []);
  const obj = BpfObject.open(path.join(ROOT, 'build/bpf/flowread.bpf.o'));
  onExit(() => obj.close());
  obj.setMaxEntries(MAP.flows, Math.ceil(FLOWS * 1.25));
  obj.load();
  const map = obj.map(MAP.flows);
  const reader = new FlowBatchReader(obj.progFd(FLOW_READ.prog), obj.map(FLOW_READ.buffer));
  onExit(() => reader.close());

  // IPv4 TCP flows as the classifier keys them, distinct; value word 0 = a random number.
  const keys = Buffer.alloc(FILL_CHUNK * FLOW_KEY.size);
  const vals = Buffer.alloc(FILL_CHUNK * FLOW.size);
  const count = new Uint32Array(1);
  const all: string[] = [];
  for (let base = 0; base < FLOWS; base += FILL_CHUNK) {
    const n = Math.min(FILL_CHUNK, FLOWS - base);
    keys.fill(0);
    crypto.randomFillSync(vals);
    for (let j = 0; j < n; j++) {
      const i = base + j;
      const k = j * FLOW_KEY.size;
      keys[k + FLOW_KEY.fields.family.offset] = 2;
      keys[k + FLOW_KEY.fields.proto.offset] = 6;
      keys.writeUInt16LE(i & 0xffff, k + FLOW_KEY.fields.lport.offset);
      keys.writeUInt16LE(443, k + FLOW_KEY.fields.rport.offset);
      keys.writeUInt32BE((0x0a000000 | (i >>> 16)) >>> 0, k + FLOW_KEY.fields.laddr.offset);
      keys.writeUInt32BE(0xc6120002, k + FLOW_KEY.fields.raddr.offset);
      all.push(keyString(keys, k));
    }
    count[0] = n;
    const ret = L.bpf_map_update_batch(map.fd, keys, vals, count, null);
    if (ret < 0) throw new Error(`bpf_map_update_batch: ${ret}`);
  }
  // The daemon's keys come in no particular order: shuffle.
  for (let i = all.length - 1; i > 0; i--) {
    const j = crypto.randomInt(i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }

  const vb = Buffer.alloc(FLOW.size);
  const variants: Array<[string, () => Promise<Result> | Result]> = [
    ['C: one lookup syscall per flow', async () => {
      const c = spawnHelper(lookupBin, ['3', String(FLOW_KEY.size), String(FLOW.size)], map.fd);
      await c.exited;
      const r = c.lastJson<{ entries: number; sum: number; ns: number }>();
      return { entries: r.entries, sum: r.sum, ms: r.ns / 1e6 };
    }],
    ['Node: one lookup per flow through koffi (before, and the fallback)', () => {
      const kb = Buffer.alloc(FLOW_KEY.size);
      let sum = 0;
      let entries = 0;
      const t0 = performance.now();
      for (const k of all) {
        keyBytes(k, kb);
        if (map.lookup(kb, vb)) {
          sum = (sum + vb.readUInt32LE(0)) >>> 0;
          entries++;
        }
      }
      return { entries, sum, ms: performance.now() - t0 };
    }],
    [`Node: FlowBatchReader, ${READ_BATCH} flows per run (now)`, () => {
      let sum = 0;
      let entries = 0;
      const t0 = performance.now();
      for (let from = 0; from < all.length; from += READ_BATCH) {
        const n = Math.min(READ_BATCH, all.length - from);
        reader.read(all, from, n);
        for (let j = 0; j < n; j++) {
          if (reader.take(j, vb)) {
            sum = (sum + vb.readUInt32LE(0)) >>> 0;
            entries++;
          }
        }
      }
      return { entries, sum, ms: performance.now() - t0 };
    }],
  ];
  console.error(`machine: ${machine()}; ${FLOWS} flows`);
  const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
  let check: { entries: number; sum: number } | null = null;
  for (let rep = -1; rep < REPS && Date.now() < DEADLINE; rep++) {
    for (let j = 0; j < variants.length; j++) {
      const [name, run] = variants[(j + Math.max(rep, 0)) % variants.length]!;
      const r = await run();
      if (r.entries !== FLOWS) throw new Error(`${name} found ${r.entries} of ${FLOWS} flows`);
      check ??= r;
      if (r.sum !== check.sum) throw new Error(`${name}: checksum ${r.sum} != ${check.sum}`);
      if (rep >= 0) times.get(name)!.push(r.ms);
      console.error(`  ${rep < 0 ? 'warm-up' : `rep ${rep + 1}`}: ${name}: ${r.ms.toFixed(1)} ms`);
    }
  }
  const cMed = median(times.get(variants[0]![0])!);
  const table = new Table({ head: ['reader', 'ms, median (min..max)', 'us per flow', 'vs C lookup'], style: { head: [], border: [] } });
  const per: Record<string, number> = {};
  for (const [name] of variants) {
    const t = times.get(name)!;
    const med = median(t);
    per[name] = (med * 1000) / FLOWS;
    table.push([name, `${med.toFixed(1)} (${Math.min(...t).toFixed(1)}..${Math.max(...t).toFixed(1)})`, per[name]!.toFixed(3), (med / cMed).toFixed(2)]);
  }
  console.log(`\nbench/flowread - ${machine()}`);
  console.log(`${FLOWS} IPv4 flows, every key read once in a shuffled order; ${REPS} repetitions after one warm-up, order rotating; same map, same run`);
  console.log(table.toString());
  const batch = per[variants[2]![0]]!;
  const c = per[variants[0]![0]]!;
  console.log(`batch read per flow ${batch.toFixed(3)} us vs one C lookup syscall ${c.toFixed(3)} us: ${batch < c ? 'below the syscall floor' : 'NOT below the syscall floor'}`);
}

await main();
