// SPDX-License-Identifier: Apache-2.0
// BpfMap's bulk paths against real kernel maps: forEachChunk must hand back exactly the
// entries the test inserted (the test's own Map is the truth), whatever the map type and
// chunk size - including chunks smaller than a hash bucket (ENOSPC: the chunk grows) and
// map types without batch support (the get_next_key fallback) - and deleteBatch must
// delete exactly the keys it is given, present or not.
//
// Maps are created with bpf_map_create and live as long as their fds (closed in after());
// the one pinned map goes into the lab's own pin directory, removed by lab.destroy().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfMap, numPossibleCpus, type BatchChunk } from '../../daemon/src/bpf/maps.js';
import { BPF_MAP_TYPE } from '../../daemon/src/bpf/uapi.js';
import { Lab } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';

const BPF_F_NO_PREALLOC = 1;
const BPF_MAP_TYPE_DEVMAP_HASH = 25; // not in uapi.ts: only this test uses it

/** struct bpf_map_create_opts (libbpf 1.1): sz at 0, map_flags at 28. */
function createOpts(flags: number): Buffer {
  const o = Buffer.alloc(48);
  o.writeBigUInt64LE(48n, 0);
  o.writeUInt32LE(flags, 28);
  return o;
}

/** Deterministic bytes for entry `i` (so values differ per entry and per CPU slot). */
function pattern(size: number, i: number, salt: number): Buffer {
  const b = Buffer.alloc(size);
  let x = (i * 2654435761 + salt * 40503 + 1) >>> 0;
  for (let j = 0; j < size; j++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[j] = x >>> 24;
  }
  return b;
}

/** Key bytes for entry `i`: unique (the index in the first 4 bytes), the rest patterned. */
function keyOf(size: number, i: number): Buffer {
  const k = pattern(size, i, 7);
  k.writeUInt32LE(i, 0);
  return k;
}

/** Everything forEachChunk returns, as hex key -> hex value, plus the chunk sizes seen. */
function dump(map: BpfMap, chunk?: number): { entries: Map<string, string>; counts: number[] } {
  const entries = new Map<string, string>();
  const counts: number[] = [];
  map.forEachChunk((c: BatchChunk) => {
    counts.push(c.count);
    for (let i = 0; i < c.count; i++) {
      const k = c.keys.toString('hex', i * map.keySize, (i + 1) * map.keySize);
      assert.ok(!entries.has(k), `key ${k} returned twice`);
      entries.set(k, c.values.toString('hex', i * map.valueBytes, (i + 1) * map.valueBytes));
    }
  }, chunk);
  return { entries, counts };
}

function assertSameEntries(got: Map<string, string>, want: Map<string, string>): void {
  assert.equal(got.size, want.size, `entries: got ${got.size}, want ${want.size}`);
  for (const [k, v] of want) {
    assert.ok(got.has(k), `missing key ${k}`);
    assert.equal(got.get(k), v, `value of ${k}`);
  }
}

describe('BpfMap batch operations on real maps', privileged({ timeout: 120_000 }), () => {
  const maps: BpfMap[] = [];
  let lab: Lab;

  before(async () => {
    lab = await Lab.create();
  });
  after(async () => {
    for (const m of maps.splice(0)) m.close();
    await lab?.destroy();
  });

  const create = (type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags = 0): BpfMap => {
    const fd = L.bpf_map_create(type, name, keySize, valueSize, maxEntries, flags ? createOpts(flags) : null);
    assert.ok(fd >= 0, `bpf_map_create(${name}): ${fd}`);
    const m = new BpfMap(name, fd, true);
    maps.push(m);
    return m;
  };

  /** Inserts n entries one by one (user space writes every CPU's slot of a per-CPU value). */
  const fill = (m: BpfMap, n: number, keyOf_: (i: number) => Buffer = (i) => keyOf(m.keySize, i)): Map<string, string> => {
    const want = new Map<string, string>();
    for (let i = 0; i < n; i++) {
      const k = keyOf_(i);
      const v = pattern(m.valueBytes, i, 1);
      m.update(k, v);
      want.set(k.toString('hex'), v.toString('hex'));
    }
    return want;
  };

  for (const [typeName, type, flags] of [
    ['hash', BPF_MAP_TYPE.HASH, 0],
    ['hash (no prealloc)', BPF_MAP_TYPE.HASH, BPF_F_NO_PREALLOC],
    ['LRU hash', BPF_MAP_TYPE.LRU_HASH, 0],
    ['per-CPU hash', BPF_MAP_TYPE.PERCPU_HASH, 0],
    ['LRU per-CPU hash', BPF_MAP_TYPE.LRU_PERCPU_HASH, 0],
  ] as const) {
    test(`forEachChunk returns exactly the inserted entries: ${typeName}`, () => {
      // A value size that is not a multiple of 8 checks the per-CPU stride (rounded up to 8).
      const m = create(type, 'emon_t_dump', 16, 12, 8192, flags);
      if (m.perCpu) assert.equal(m.valueBytes, 16 * numPossibleCpus());
      // LRU maps evict before they are full (KERNEL-NOTES): 3000 of 8192 stays clear of that.
      const want = fill(m, 3000);
      for (const chunk of [undefined, 4096, 100, 7]) assertSameEntries(dump(m, chunk).entries, want);
    });
  }

  test('forEachChunk on an empty map calls back nothing', () => {
    const m = create(BPF_MAP_TYPE.HASH, 'emon_t_empty', 8, 8, 64);
    assert.deepEqual(dump(m).counts, []);
  });

  test('a chunk smaller than a hash bucket grows (ENOSPC) and no entry is lost or repeated', () => {
    for (const type of [BPF_MAP_TYPE.HASH, BPF_MAP_TYPE.LRU_HASH, BPF_MAP_TYPE.PERCPU_HASH]) {
      // 1000 entries in 1024 buckets: many buckets hold two or more, and a chunk of 1
      // cannot take such a bucket in one call.
      const m = create(type, 'emon_t_enospc', 8, 8, 1024);
      const want = fill(m, m.info.type === BPF_MAP_TYPE.LRU_HASH ? 600 : 1000);
      const { entries, counts } = dump(m, 1);
      assertSameEntries(entries, want);
      assert.ok(counts.some((c) => c > 1), 'the chunk grew past 1 entry (the ENOSPC path ran)');
    }
  });

  test('map types without batch lookup fall back to get_next_key + lookup', () => {
    // A devmap hash answers BPF_MAP_LOOKUP_BATCH with ENOTSUPP (524) on 6.x. Its values
    // are ifindexes; 1 (loopback) exists in every namespace, and a map entry attaches nothing.
    const m = create(BPF_MAP_TYPE_DEVMAP_HASH, 'emon_t_devh', 4, 4, 256);
    const keys = new Uint32Array(256);
    const values = Buffer.alloc(256 * 4);
    assert.notEqual(L.bpf_map_lookup_batch(m.fd, null, Buffer.alloc(8), Buffer.from(keys.buffer), values, new Uint32Array([16]), null), 0,
      'this map type has no batch lookup (else the test proves nothing)');
    const want = new Map<string, string>();
    const one = Buffer.alloc(4);
    one.writeUInt32LE(1);
    for (let i = 0; i < 150; i++) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i * 7919 + 3);
      m.update(k, one);
      want.set(k.toString('hex'), one.toString('hex'));
    }
    for (const chunk of [undefined, 64, 1]) {
      const { entries, counts } = dump(m, chunk);
      assertSameEntries(entries, want);
      if (chunk) assert.ok(counts.every((c) => c <= chunk));
    }
    // deleteBatch falls back to one-by-one deletes on the same map type.
    const doomed = [...want.keys()].slice(0, 50);
    assert.equal(m.deleteBatch(Buffer.from(doomed.join(''), 'hex'), doomed.length), 50);
    for (const k of doomed) want.delete(k);
    assertSameEntries(dump(m).entries, want);
  });

  test('countAsync counts exactly, several maps at once (their shared buffers are never read), and allocates nothing per call', async () => {
    const sizes = [0, 1, 3000, 777];
    const ms = sizes.map((n, i) => {
      const m = create([BPF_MAP_TYPE.HASH, BPF_MAP_TYPE.LRU_HASH, BPF_MAP_TYPE.PERCPU_HASH, BPF_MAP_TYPE.HASH][i]!, `emon_t_cnt${i}`, 40, 128, 8192);
      fill(m, n);
      return m;
    });
    // Concurrent counts interleave their chunks (each awaits between syscalls).
    assert.deepEqual(await Promise.all(ms.map((m) => m.countAsync(100))), sizes);
    assert.deepEqual(await Promise.all(ms.map((m) => m.countAsync())), sizes);
    // A chunk of 1 in a map whose buckets hold several entries grows (ENOSPC) and still counts each once.
    const crowded = create(BPF_MAP_TYPE.HASH, 'emon_t_cntg', 8, 8, 1024);
    fill(crowded, 1000);
    assert.equal(await crowded.countAsync(1), 1000);
    // The walk without batch support counts too.
    const devh = create(BPF_MAP_TYPE_DEVMAP_HASH, 'emon_t_cntd', 4, 4, 256);
    const one = Buffer.alloc(4);
    one.writeUInt32LE(1);
    for (let i = 0; i < 150; i++) devh.update(Buffer.from(new Uint32Array([i * 7919 + 3]).buffer), one);
    assert.equal(await devh.countAsync(64), 150);
    // Counting the same maps again allocates no new key or value buffers (forEachChunk's,
    // 40 + 128 bytes x 4096 entries per map per walk, were 164 MB here): every Buffer
    // allocated during 200 counts is counted.
    await Promise.all(ms.map((m) => m.countAsync()));
    let grown = 0;
    const { alloc, allocUnsafe } = Buffer;
    Buffer.alloc = ((n: number, ...rest: never[]) => ((grown += n), alloc(n, ...rest))) as typeof Buffer.alloc;
    Buffer.allocUnsafe = ((n: number) => ((grown += n), allocUnsafe(n))) as typeof Buffer.allocUnsafe;
    try {
      for (let k = 0; k < 50; k++) await Promise.all(ms.map((m) => m.countAsync()));
    } finally {
      Buffer.alloc = alloc;
      Buffer.allocUnsafe = allocUnsafe;
    }
    assert.ok(grown < 64 << 10, `200 counts allocated ${grown} bytes of buffers`);
  });

  test('deleteBatch deletes exactly the given keys, and keys already gone do not keep others alive', () => {
    for (const type of [BPF_MAP_TYPE.HASH, BPF_MAP_TYPE.LRU_HASH, BPF_MAP_TYPE.PERCPU_HASH]) {
      const m = create(type, 'emon_t_del', 40, 128, 4096); // the flow map's key and value sizes
      const want = fill(m, 1000);
      const all = [...want.keys()];
      // 1. 300 present keys in one call.
      const first = all.filter((_, i) => i % 3 === 0).slice(0, 300);
      assert.equal(m.deleteBatch(Buffer.from(first.join(''), 'hex'), first.length), 300);
      for (const k of first) want.delete(k);
      assertSameEntries(dump(m).entries, want);
      // 2. A mix: absent keys (deleted above, or never inserted) between present ones,
      //    including first and last. The kernel stops a batch at the first absent key.
      const present = [...want.keys()].slice(0, 200);
      const never = Array.from({ length: 20 }, (_, i) => keyOf(40, 100_000 + i).toString('hex'));
      const mixed: string[] = [first[0]!];
      present.forEach((k, i) => {
        mixed.push(k);
        if (i % 10 === 0) mixed.push(first[i + 1]!);
        if (i % 17 === 0) mixed.push(never[i % never.length]!);
      });
      mixed.push(never[0]!);
      assert.equal(m.deleteBatch(Buffer.from(mixed.join(''), 'hex'), mixed.length), present.length);
      for (const k of present) want.delete(k);
      assertSameEntries(dump(m).entries, want);
      // 3. Nothing to do.
      assert.equal(m.deleteBatch(Buffer.alloc(0), 0), 0);
    }
  });

  test('a pinned map reopened with fromPin dumps the same entries', () => {
    const m = create(BPF_MAP_TYPE.LRU_HASH, 'emon_t_pin', 40, 128, 65536);
    const want = fill(m, 20_000);
    const dir = lab.pinPath('maps');
    fs.mkdirSync(dir, { recursive: true });
    const pin = path.join(dir, 'emon_t_pin');
    assert.equal(L.bpf_obj_pin(m.fd, pin), 0);
    const again = BpfMap.fromPin(pin, 'emon_t_pin');
    maps.push(again);
    assert.equal(again.info.id, m.info.id);
    assertSameEntries(dump(again).entries, want);
  });
});
