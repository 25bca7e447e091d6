// SPDX-License-Identifier: Apache-2.0
// A BPF map reached through its fd, whether it came from a freshly loaded object or from
// a pin left by an earlier daemon. Keys and values are raw bytes; features decode them
// with the decoder that mirrors their bpf/<feature>.h.
import fs from 'node:fs';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { mapInfo, type MapInfo } from './info.js';
import { BPF_ANY, BPF_MAP_TYPE } from './uapi.js';
import { ERRNO } from '../sys/errno.js';
import { close } from '../sys/libc.js';
import { yieldTurn } from '../util/turn.js';

let possibleCpus: number | undefined;
/** Number of possible CPUs: the stride of per-CPU map values. */
export function numPossibleCpus(): number {
  if (possibleCpus === undefined) {
    const text = fs.readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
    let n = 0;
    for (const part of text.split(',')) {
      const [a, b] = part.split('-').map(Number);
      n += b === undefined ? 1 : b - a! + 1;
    }
    possibleCpus = n;
  }
  return possibleCpus;
}

/** The kernel's internal ENOTSUPP, which BPF_MAP_*_BATCH returns to user space for map
 * types without batch support (devmap, cpumap, ... on 6.x); not in Node's errno table. */
const ENOTSUPP_KERNEL = 524;

const PERCPU_TYPES = new Set<number>([BPF_MAP_TYPE.PERCPU_HASH, BPF_MAP_TYPE.PERCPU_ARRAY, BPF_MAP_TYPE.LRU_PERCPU_HASH]);

/** Where a walk's key and value buffers come from (0: keys, 1: values). */
type Alloc = (which: 0 | 1, bytes: number) => Buffer;
const fresh: Alloc = (_which, bytes) => Buffer.alloc(bytes);
/** Buffers of the walks that only count: the kernel writes into them and nobody reads them,
 * so every count (of any map, at once) shares one pair instead of allocating its own
 * (`status` counts six maps per call; a burst of calls made hundreds of MB of garbage). */
const scratch: [Buffer, Buffer] = [Buffer.alloc(0), Buffer.alloc(0)];
const shared: Alloc = (which, bytes) => {
  if (scratch[which].length < bytes) scratch[which] = Buffer.allocUnsafe(bytes);
  return scratch[which].subarray(0, bytes);
};

export interface BatchChunk {
  keys: Buffer;
  values: Buffer;
  count: number;
}

export class BpfMap {
  readonly name: string;
  readonly fd: number;
  readonly info: MapInfo;
  /** Bytes per value as user space sees it (per-CPU maps: one slot per possible CPU). */
  readonly valueBytes: number;
  readonly perCpu: boolean;
  private closed = false;

  constructor(name: string, fd: number, private readonly ownsFd: boolean) {
    this.name = name;
    this.fd = fd;
    this.info = mapInfo(fd, name);
    this.perCpu = PERCPU_TYPES.has(this.info.type);
    this.valueBytes = this.perCpu ? Math.ceil(this.info.valueSize / 8) * 8 * numPossibleCpus() : this.info.valueSize;
  }

  /** Opens a pinned map (`bpf_obj_get`). */
  static fromPin(path: string, name: string): BpfMap {
    const fd = L.bpf_obj_get(path);
    if (fd < 0) throw new BpfError('reopening', name, -fd, { target: path });
    return new BpfMap(name, fd, true);
  }

  get keySize(): number { return this.info.keySize; }
  get maxEntries(): number { return this.info.maxEntries; }

  /** Value for `key`, or null when absent. */
  lookup(key: Uint8Array, out: Buffer = Buffer.alloc(this.valueBytes)): Buffer | null {
    const ret = L.bpf_map_lookup_elem(this.fd, key, out);
    if (ret === -ERRNO.ENOENT) return null;
    if (ret < 0) throw new BpfError('reading', this.name, -ret);
    return out;
  }

  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    const ret = L.bpf_map_update_elem(this.fd, key, value, flags);
    if (ret < 0) throw new BpfError('updating', this.name, -ret);
  }

  /** Like update(), but a refusal (EEXIST under BPF_NOEXIST, E2BIG when full) is returned as an errno, not thrown. */
  tryUpdate(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): number {
    const ret = L.bpf_map_update_elem(this.fd, key, value, flags);
    return ret < 0 ? -ret : 0;
  }

  /** Deletes `key`; false when it was absent. */
  delete(key: Uint8Array): boolean {
    const ret = L.bpf_map_delete_elem(this.fd, key);
    if (ret === -ERRNO.ENOENT) return false;
    if (ret < 0) throw new BpfError('deleting', this.name, -ret);
    return true;
  }

  /**
   * Walks the whole map with BPF_MAP_LOOKUP_BATCH, `chunk` entries per syscall, handing
   * each chunk to `onChunk` (its buffers are reused for the next chunk: copy what you keep).
   * Falls back to get_next_key + lookup on kernels or map types without batch support.
   */
  forEachChunk(onChunk: (c: BatchChunk) => void, chunk = 4096): void {
    for (const c of this.chunks(chunk)) onChunk(c);
  }

  /**
   * The same walk, giving the event loop a turn between chunks: a million-entry map takes
   * hundreds of milliseconds to read, which must not hold up everything else the daemon does.
   */
  forEachChunkAsync(onChunk: (c: BatchChunk) => void, chunk = 4096): Promise<void> {
    return this.walkAsync(onChunk, chunk, fresh);
  }

  /** Number of entries: the same walk, with buffers shared by every count. */
  async countAsync(chunk = 4096): Promise<number> {
    let n = 0;
    await this.walkAsync(({ count }) => (n += count), chunk, shared);
    return n;
  }

  private async walkAsync(onChunk: (c: BatchChunk) => void, chunk: number, alloc: Alloc): Promise<void> {
    for (const c of this.chunks(chunk, alloc)) {
      onChunk(c);
      await yieldTurn();
    }
  }

  /** The walk itself, one chunk at a time (buffers reused between chunks). */
  private *chunks(chunk: number, alloc: Alloc = fresh): Generator<BatchChunk> {
    let n = Math.max(1, Math.min(chunk, this.info.maxEntries));
    let keys = alloc(0, n * this.keySize);
    let values = alloc(1, n * this.valueBytes);
    const tokenSize = Math.max(this.keySize, 8);
    const inBatch = Buffer.alloc(tokenSize);
    const outBatch = Buffer.alloc(tokenSize);
    const count = new Uint32Array(1);
    let first = true;
    for (;;) {
      count[0] = n;
      const ret = L.bpf_map_lookup_batch(this.fd, first ? null : inBatch, outBatch, keys, values, count, null);
      if (ret < 0 && ret !== -ERRNO.ENOENT) {
        if (ret === -ERRNO.ENOSPC && n < this.info.maxEntries) {
          // A hash bucket holds more entries than one chunk: grow and retry the same bucket.
          n = Math.min(n * 2, this.info.maxEntries);
          keys = alloc(0, n * this.keySize);
          values = alloc(1, n * this.valueBytes);
          continue;
        }
        if (first && (ret === -ERRNO.EINVAL || ret === -ERRNO.ENOTSUP || ret === -ERRNO.EOPNOTSUPP || ret === -ENOTSUPP_KERNEL)) {
          yield* this.chunksSlow(n, alloc);
          return;
        }
        throw new BpfError('reading', this.name, -ret, { detail: 'batch lookup' });
      }
      if (count[0]! > 0) yield { keys, values, count: count[0]! };
      if (ret === -ERRNO.ENOENT) return;
      outBatch.copy(inBatch);
      first = false;
    }
  }

  private *chunksSlow(n: number, alloc: Alloc): Generator<BatchChunk> {
    const keys = alloc(0, n * this.keySize);
    const values = alloc(1, n * this.valueBytes);
    let prev: Buffer | null = null;
    const next = Buffer.alloc(this.keySize);
    const val = Buffer.alloc(this.valueBytes);
    let count = 0;
    for (;;) {
      const ret = L.bpf_map_get_next_key(this.fd, prev, next);
      if (ret === -ERRNO.ENOENT) break;
      if (ret < 0) throw new BpfError('reading', this.name, -ret, { detail: 'get_next_key' });
      prev = Buffer.from(next);
      if (!this.lookup(next, val)) continue; // deleted in between
      next.copy(keys, count * this.keySize);
      val.copy(values, count * this.valueBytes);
      if (++count === n) {
        yield { keys, values, count };
        count = 0;
      }
    }
    if (count > 0) yield { keys, values, count };
  }

  /**
   * Deletes many keys (packed back to back), in one syscall when all are present; returns
   * how many were deleted. The kernel stops a batch at the first absent key (ENOENT, with
   * `count` = keys deleted before it), so the rest is resubmitted past that key: keys that
   * vanished meanwhile (LRU eviction) must not keep the others alive.
   */
  deleteBatch(keys: Buffer, count: number): number {
    let deleted = 0;
    let at = 0;
    const n = new Uint32Array(1);
    while (at < count) {
      n[0] = count - at;
      const ret = L.bpf_map_delete_batch(this.fd, at ? keys.subarray(at * this.keySize) : keys, n, null);
      if (ret === 0) return deleted + n[0]!;
      if (ret !== -ERRNO.ENOENT) {
        // No batch support for this map type: the rest one by one. (`count` is not
        // written back then, so it cannot say how far the batch got.)
        for (let i = at; i < count; i++) if (this.delete(keys.subarray(i * this.keySize, (i + 1) * this.keySize))) deleted++;
        return deleted;
      }
      deleted += n[0]!;
      at += n[0]! + 1; // skip the absent key
    }
    return deleted;
  }

  /** Deletes every entry (of a hash map); returns how many. */
  clear(): number {
    const all: Buffer[] = [];
    let n = 0;
    for (const c of this.chunks(4096)) {
      all.push(Buffer.from(c.keys.subarray(0, c.count * this.keySize)));
      n += c.count;
    }
    return n === 0 ? 0 : this.deleteBatch(Buffer.concat(all), n);
  }

  /** Sums a per-CPU u64 array slot over all CPUs. */
  sumPerCpuU64(value: Buffer, slotOffset = 0): bigint {
    const stride = Math.ceil(this.info.valueSize / 8) * 8;
    let sum = 0n;
    for (let off = 0; off < value.length; off += stride) sum += value.readBigUInt64LE(off + slotOffset);
    return sum;
  }

  close(): void {
    if (this.closed || !this.ownsFd) return;
    this.closed = true;
    close(this.fd);
  }
}
