// SPDX-License-Identifier: Apache-2.0
// A full dump of a big LRU hash from Node (BpfMap.forEachChunk + a typed-array decode
// that reads every entry) next to a C program doing the same BPF_MAP_LOOKUP_BATCH walk
// on the same map in the same run (bench/map-dump/dump.c). Both read the same words of
// every entry and must agree on a checksum. Shapes: 16-byte key / 48-byte value (the
// KERNEL-NOTES measurement) and the flow map's (struct emon_flow_key / emon_flow, from wire.ts).
//
//   sudo node build/js/bench/map-dump/main.js [--entries 1000000] [--reps 7] [--chunk 4096]
//        [--headroom 1.25] [--max-minutes 10]
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import Table from 'cli-table3';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { BPF_MAP_TYPE } from '../../daemon/src/bpf/uapi.js';
import { FLOW, FLOW_KEY } from '../../daemon/src/monitor/wire.js';
import { compileC, machine, median, numArg, onExit, ROOT, spawnHelper, tempDir } from '../lib/harness.js';

const ENTRIES = numArg('entries', 1_000_000);
const REPS = numArg('reps', 7);
const CHUNK = numArg('chunk', 4096);
const HEADROOM = numArg('headroom', 1.25);
const DEADLINE = Date.now() + numArg('max-minutes', 10) * 60_000;
const FILL_CHUNK = 65536;

// A full GC between timed runs, so that one variant's garbage is not collected on another's time.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

interface Shape { name: string; keySize: number; valueSize: number }
const SHAPES: Shape[] = [
  { name: '16 B key / 48 B value', keySize: 16, valueSize: 48 },
  { name: `flow map: ${FLOW_KEY.size} B key / ${FLOW.size} B value`, keySize: FLOW_KEY.size, valueSize: FLOW.size },
];

interface DumpResult { entries: number; sum: number; ms: number }

/** Fills `map` with `n` entries through BPF_MAP_UPDATE_BATCH; word 0 of each key is its index. */
function fill(map: BpfMap, n: number): void {
  const ks = map.keySize;
  const vs = map.valueBytes;
  const keys = Buffer.alloc(FILL_CHUNK * ks);
  const values = Buffer.alloc(FILL_CHUNK * vs);
  const k32 = new Uint32Array(keys.buffer, keys.byteOffset, keys.byteLength >> 2);
  const v32 = new Uint32Array(values.buffer, values.byteOffset, values.byteLength >> 2);
  const count = new Uint32Array(1);
  for (let base = 0; base < n; base += FILL_CHUNK) {
    const m = Math.min(FILL_CHUNK, n - base);
    for (let i = 0; i < m; i++) {
      const id = base + i;
      for (let w = 0; w < ks >> 2; w++) k32[i * (ks >> 2) + w] = w === 0 ? id : Math.imul(id + w, 2654435761) >>> 0;
      for (let w = 0; w < vs >> 2; w++) v32[i * (vs >> 2) + w] = Math.imul(id ^ (w * 40503), 2246822519) >>> 0;
    }
    count[0] = m;
    const ret = L.bpf_map_update_batch(map.fd, keys, values, count, null);
    if (ret < 0) throw new Error(`bpf_map_update_batch: ${ret} after ${count[0]} of ${m}`);
  }
}

/** Node, the way the daemon reads flows: typed-array views over each chunk, the same words as dump.c. */
function dumpTyped(map: BpfMap): DumpResult {
  const kw = map.keySize >> 2;
  const vw = map.valueBytes >> 2;
  let entries = 0;
  let sum = 0;
  const t0 = performance.now();
  map.forEachChunk(({ keys, values, count }) => {
    const k = new Uint32Array(keys.buffer, keys.byteOffset, count * kw);
    const v = new Uint32Array(values.buffer, values.byteOffset, count * vw);
    for (let i = 0, ko = 0, vo = 0; i < count; i++, ko += kw, vo += vw) {
      sum = (sum + k[ko]! + k[ko + kw - 1]! + v[vo]! + v[vo + 1]! + v[vo + 2]! + v[vo + 3]! + v[vo + 4]! + v[vo + 5]! + v[vo + 6]! + v[vo + 7]!) >>> 0;
    }
    entries += count;
  }, CHUNK);
  return { entries, sum, ms: performance.now() - t0 };
}

/** Node, building one JS object per entry (what a naive decoder does). */
function dumpObjects(map: BpfMap): DumpResult {
  const kw = map.keySize >> 2;
  const vw = map.valueBytes >> 2;
  const out: Array<{ id: number; tail: number; a: number; b: number; c: number; d: number }> = [];
  let sum = 0;
  const t0 = performance.now();
  map.forEachChunk(({ keys, values, count }) => {
    const k = new Uint32Array(keys.buffer, keys.byteOffset, count * kw);
    const v = new Uint32Array(values.buffer, values.byteOffset, count * vw);
    for (let i = 0; i < count; i++) {
      const ko = i * kw;
      const vo = i * vw;
      out.push({ id: k[ko]!, tail: k[ko + kw - 1]!, a: v[vo]! + v[vo + 1]!, b: v[vo + 2]! + v[vo + 3]!, c: v[vo + 4]! + v[vo + 5]!, d: v[vo + 6]! + v[vo + 7]! });
    }
  }, CHUNK);
  for (const e of out) sum = (sum + e.id + e.tail + e.a + e.b + e.c + e.d) >>> 0;
  return { entries: out.length, sum, ms: performance.now() - t0 };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/map-dump needs root (bpf_map_create)');
  const tmp = tempDir('map-dump');
  const dumpBin = compileC(path.join(ROOT, 'bench/map-dump/dump.c'), tmp, []);
  const dumpC = async (map: BpfMap): Promise<DumpResult> => {
    const c = spawnHelper(dumpBin, ['3', String(map.keySize), String(map.valueBytes), String(CHUNK)], map.fd);
    await c.exited;
    const r = c.lastJson<{ entries: number; sum: number; ns: number }>();
    return { entries: r.entries, sum: r.sum, ms: r.ns / 1e6 };
  };

  console.error(`machine: ${machine()}`);
  const rows: string[][] = [];
  for (const shape of SHAPES) {
    const maxEntries = Math.ceil(ENTRIES * HEADROOM);
    const fd = L.bpf_map_create(BPF_MAP_TYPE.LRU_HASH, 'emon_bench_dump', shape.keySize, shape.valueSize, maxEntries, null);
    if (fd < 0) throw new Error(`bpf_map_create: ${fd}`);
    const map = new BpfMap('emon_bench_dump', fd, true);
    let closed = false;
    const closeMap = (): void => {
      if (!closed) map.close();
      closed = true;
    };
    onExit(closeMap);
    try {
      const tf = performance.now();
      fill(map, ENTRIES);
      console.error(`${shape.name}: filled ${ENTRIES} into an LRU hash of ${maxEntries} in ${((performance.now() - tf) / 1000).toFixed(1)} s`);

      const variants: Array<[string, () => Promise<DumpResult> | DumpResult]> = [
        ['C bpf_map_lookup_batch', () => dumpC(map)],
        ['Node forEachChunk + typed arrays', () => dumpTyped(map)],
        ['Node forEachChunk + one object per entry', () => dumpObjects(map)],
      ];
      const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
      let present = -1;
      let checksum = -1;
      // One untimed warm-up each (JIT, first touch of the buffers), then REPS rounds in a
      // rotating order so that none always runs right after the fill or another variant.
      for (let rep = -1; rep < REPS && Date.now() < DEADLINE; rep++) {
        for (let j = 0; j < variants.length; j++) {
          const [name, run] = variants[(j + Math.max(rep, 0)) % variants.length]!;
          gc();
          const r = await run();
          if (present < 0) present = r.entries;
          if (r.entries !== present) throw new Error(`${name} saw ${r.entries} entries, another saw ${present}`);
          if (name !== 'Node forEachChunk + one object per entry') {
            if (checksum < 0) checksum = r.sum;
            if (r.sum !== checksum) throw new Error(`${name}: checksum ${r.sum} != ${checksum}`);
          }
          if (rep >= 0) times.get(name)!.push(r.ms);
          console.error(`  ${rep < 0 ? 'warm-up' : `rep ${rep + 1}`}: ${name}: ${r.ms.toFixed(0)} ms`);
        }
      }
      const cMed = median(times.get(variants[0]![0])!);
      for (const [name] of variants) {
        const t = times.get(name)!;
        const med = median(t);
        rows.push([
          shape.name, `${present} of ${ENTRIES} (max ${maxEntries})`, name,
          `${med.toFixed(0)} (${Math.min(...t).toFixed(0)}..${Math.max(...t).toFixed(0)})`,
          `${((present / med) * 1000 / 1e6).toFixed(2)} M`,
          name.startsWith('C') ? '' : (med / cMed).toFixed(2),
        ]);
      }
    } finally {
      closeMap();
    }
  }
  const table = new Table({
    head: ['map', 'entries present', 'reader', 'ms, median (min..max)', 'entries/s', 'ratio Node/C'],
    style: { head: [], border: [] },
  });
  for (const r of rows) table.push(r);
  console.log(`\nbench/map-dump - ${machine()}`);
  console.log(`LRU hash, ${ENTRIES} entries inserted, chunk ${CHUNK}, ${REPS} repetitions after one warm-up; C and Node in the same run, same map`);
  console.log(table.toString());
  const worst = Math.max(...rows.filter((r) => r[2] === 'Node forEachChunk + typed arrays').map((r) => Number(r[5])));
  console.log(`target: Node (typed arrays) within 1.5x of C: ${worst <= 1.5 ? 'met' : 'NOT met'} (worst ratio ${worst.toFixed(2)})`);
}

await main();
