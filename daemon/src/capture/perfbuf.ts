// SPDX-License-Identifier: Apache-2.0
// The per-CPU perf event rings behind a BPF_MAP_TYPE_PERF_EVENT_ARRAY, read directly from
// their mmapped pages in TypeScript, as daemon/src/bpf/ringbuf.ts reads a BPF ring buffer:
// libbpf opens one perf event per CPU, maps its ring and stores its fd in the map
// (perf_buffer__new_raw); its poll/consume callbacks are never used (a koffi callback per
// record caps a Node reader near 1 M records/s, KERNEL-NOTES.md).
//
// Ring layout (include/uapi/linux/perf_event.h): page 0 is struct perf_event_mmap_page
// (data_head u64 at 1024, written by the kernel; data_tail u64 at 1032, written by us),
// then `size` bytes of data, NOT mapped twice: a record may wrap around the end. Records:
// struct perf_event_header { u32 type; u16 misc; u16 size; }, 8-byte aligned.
//   PERF_RECORD_SAMPLE (9) with PERF_SAMPLE_RAW: u32 raw size, then the BPF program's bytes.
//   PERF_RECORD_LOST (2): u64 id, u64 lost - records the kernel could not write (ring full).
import koffi from 'koffi';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { lastErrno } from '../sys/libc.js';

const PAGE = 4096;
const HEAD = 1024;
const TAIL = 1032;
const PERF_RECORD_LOST = 2;
const PERF_RECORD_SAMPLE = 9;
const LO = os.endianness() === 'LE' ? 0 : 1;
const HI = 1 - LO;
/** perf_event_header.size is the u16 at byte 6: the high half of word 1 on a little-endian host. */
const SIZE_SHIFT = LO === 0 ? 16 : 0;
const TWO32 = 2 ** 32;
const MAX_WATERMARK = 1 << 20;

/** struct perf_event_attr for BPF output (the first 64 bytes, PERF_ATTR_SIZE_VER0, are all we set). */
function bpfOutputAttr(watermarkBytes: number): Buffer {
  const a = Buffer.alloc(128);
  a.writeUInt32LE(1, 0); // PERF_TYPE_SOFTWARE
  a.writeUInt32LE(128, 4); // size
  a.writeBigUInt64LE(10n, 8); // PERF_COUNT_SW_BPF_OUTPUT
  a.writeBigUInt64LE(1n, 16); // sample_period
  a.writeBigUInt64LE(1n << 10n, 24); // PERF_SAMPLE_RAW
  a.writeBigUInt64LE(1n << 14n, 40); // flags: watermark (wake up by bytes, not per record)
  a.writeUInt32LE(watermarkBytes, 48); // wakeup_watermark
  return a;
}

/** Called for each sample: the raw bytes the program wrote are at [offset, offset + length)
 * of `buf` (and of `u32`, the same memory as 32-bit words: offset is a multiple of 4). Valid until the next beforeRelease() call of
 * drain(), which is when the reader gives the space back to the kernel. */
export type SampleHandler = (buf: Buffer, u32: Uint32Array, offset: number, length: number, cpu: number) => void;

/** A drain that replaces the record-by-record walk (nativedrain.ts): consumes what the rings
 * hold within `budgetMs`, returns the samples consumed and whether it stopped on its budget
 * with records left. It adds PERF_RECORD_LOST counts to the reader's stats itself. */
export type RingDrain = (budgetMs: number) => { samples: number; behind: boolean };

export interface PerfStats {
  samples: number;
  /** Records the kernel dropped because a ring was full (PERF_RECORD_LOST), summed. */
  lost: number;
  drains: number;
  maxDrainMs: number;
}

interface Ring {
  cpu: number;
  /** Address of the control page (the data follows it). */
  base: bigint;
  fd: number;
  size: number;
  mask: number;
  ctl: Uint32Array; // the control page as u32 words
  data: DataView;
  bytes: Buffer;
  u32: Uint32Array;
}

// Never called (the rings are read directly), but libbpf wants a function.
let noop: unknown = null;

export class PerfRingReader {
  readonly stats: PerfStats = { samples: 0, lost: 0, drains: 0, maxDrainMs: 0 };
  private pb: L.Ptr | null;
  private readonly rings: Ring[] = [];
  /** Wrapped records are copied here to be handed over contiguously. */
  private readonly wrapBuf = Buffer.from(new ArrayBuffer(1 << 21)); // a record: 72 + at most 0xfffff bytes
  private readonly wrap = new Uint32Array(this.wrapBuf.buffer, this.wrapBuf.byteOffset, this.wrapBuf.length / 4);
  private timer: NodeJS.Timeout | null = null;
  private readonly polls: Array<ReturnType<typeof koffi.node.poll>> = [];

  /**
   * Opens rings of `pageCnt` pages (a power of two) per CPU for the PERF_EVENT_ARRAY map
   * `mapFd`; the kernel wakes pollers once `watermark` bytes wait (default a quarter ring,
   * at most 1 MiB: a larger ring is slack for a late reader, not a later wakeup; 1 MiB is
   * still thousands of small records per wakeup).
   */
  constructor(mapFd: number, readonly pageCnt = 1024, watermark?: number, memoryOnly = false) {
    if (!Number.isInteger(Math.log2(pageCnt))) throw new RangeError(`pageCnt ${pageCnt} is not a power of two`);
    if (memoryOnly) {
      this.pb = 0n; // overMemory(): rings the caller owns, nothing to free
      return;
    }
    noop ??= koffi.register(() => 0, L.perfEventFnType);
    const attr = bpfOutputAttr(watermark ?? Math.min((pageCnt * PAGE) / 4, MAX_WATERMARK));
    const pb = L.perf_buffer__new_raw(mapFd, pageCnt, attr, noop, null, null);
    if (pb === null) throw new BpfError('creating', 'perf event rings', lastErrno(), { detail: `${pageCnt} pages per CPU` });
    this.pb = pb;
    const n = L.perf_buffer__buffer_cnt(pb);
    const base = new BigUint64Array(1);
    const size = new BigUint64Array(1);
    for (let i = 0; i < n; i++) {
      const ret = L.perf_buffer__buffer(pb, i, base, size);
      if (ret < 0) throw new BpfError('mapping', 'perf event ring', -ret, { detail: `buffer ${i}` });
      const sz = Number(size[0]);
      this.addRing(i, L.perf_buffer__buffer_fd(pb, i), base[0]!, sz);
    }
  }

  private addRing(cpu: number, fd: number, base: bigint, sz: number): void {
    const mem = koffi.view(base, PAGE + sz);
    this.rings.push({
      cpu, fd, base, size: sz, mask: sz - 1,
      ctl: new Uint32Array(mem, 0, PAGE / 4), data: new DataView(mem, PAGE, sz), bytes: Buffer.from(mem, PAGE, sz), u32: new Uint32Array(mem, PAGE, sz / 4),
    });
  }

  /**
   * A reader over rings laid out in memory the caller owns (a control page, then `size`
   * bytes of data, at `base`): tests fill such rings as the kernel would and read them with
   * both drains. Not started (no fds); close() frees nothing.
   */
  static overMemory(rings: Array<{ base: bigint; size: number }>): PerfRingReader {
    const r = new PerfRingReader(-1, 1, 0, true);
    rings.forEach((x, i) => r.addRing(i, -1, x.base, x.size));
    return r;
  }

  /** Where each ring lies (for a drain that walks them elsewhere). */
  ringMemory(): Array<{ base: bigint; size: number }> {
    return this.rings.map((r) => ({ base: r.base, size: r.size }));
  }

  private custom: RingDrain | null = null;

  /** Drains with `d` instead of the record-by-record walk (null: back to the walk). */
  setDrain(d: RingDrain | null): void {
    this.custom = d;
  }

  /** Which drain runs. */
  get drainKind(): 'native' | 'typescript' {
    return this.custom ? 'native' : 'typescript';
  }

  get cpus(): number {
    return this.rings.length;
  }

  /** Bytes written by the kernel and not yet consumed, over all rings. */
  pendingBytes(): number {
    let n = 0;
    for (const r of this.rings) n += loadPos(r.ctl, HEAD) - loadPos(r.ctl, TAIL);
    return n;
  }

  /**
   * Consumes every record present (at most `budgetMs` of work) and returns the number of
   * samples handed to `handler`.
   */
  drain(handler: SampleHandler, budgetMs = 4, beforeRelease?: () => void): number {
    if (this.pb === null) return 0;
    const t0 = performance.now();
    if (this.custom) {
      const r = this.custom(budgetMs);
      this.behind = r.behind;
      this.stats.samples += r.samples;
      this.stats.drains++;
      const dt = performance.now() - t0;
      if (dt > this.stats.maxDrainMs) this.stats.maxDrainMs = dt;
      return r.samples;
    }
    let samples = 0;
    this.behind = false;
    for (const r of this.rings) {
      let tail = loadPos(r.ctl, TAIL);
      const head = loadPos(r.ctl, HEAD); // acquire: record bytes before head are visible
      if (tail >= head) continue;
      let n = 0;
      // Positions pass 2^32 (no bit masks on them): one division per drain, then the
      // offset in the ring advances with the mask.
      let off = tail % r.size;
      const u = r.u32;
      while (tail < head) {
        const w = off >> 2; // records are 8-aligned
        const type = u[w]!;
        const size = (u[w + 1]! >>> SIZE_SHIFT) & 0xffff;
        if (size < 8) break; // corrupt; leave it (never seen)
        if (type === PERF_RECORD_SAMPLE) {
          // u32 raw size, then the program's bytes (raw size counts the padding). The
          // 8-byte header never wraps (records are 8-aligned); what follows may.
          const start = (off + 12) & r.mask;
          const len = size - 12;
          if (start + len <= r.size) {
            handler(r.bytes, r.u32, start, len, r.cpu);
          } else {
            const first = r.size - start;
            r.bytes.copy(this.wrapBuf, 0, start, r.size);
            r.bytes.copy(this.wrapBuf, first, 0, len - first);
            handler(this.wrapBuf, this.wrap, 0, len, r.cpu);
          }
          samples++;
        } else if (type === PERF_RECORD_LOST) {
          const lo = r.data.getUint32((off + 16) & r.mask, true);
          const hi = r.data.getUint32((off + 20) & r.mask, true);
          this.stats.lost += hi * TWO32 + lo;
        }
        tail += size;
        off = (off + size) & r.mask;
        if ((++n & 63) === 0) {
          beforeRelease?.();
          storePos(r.ctl, TAIL, tail); // give space back while we work
          if (performance.now() - t0 > budgetMs) {
            this.behind = true;
            break;
          }
        }
      }
      beforeRelease?.();
      storePos(r.ctl, TAIL, tail);
    }
    const dt = performance.now() - t0;
    this.stats.samples += samples;
    this.stats.drains++;
    if (dt > this.stats.maxDrainMs) this.stats.maxDrainMs = dt;
    return samples;
  }

  /** The last drain stopped on its budget with records of its own left in a ring. */
  private behind = false;

  /**
   * Reads on the event loop until close(). The kernel wakes the reader when a ring holds
   * `watermark` bytes (a libuv poll per ring fd), so a busy capture costs one wakeup per
   * watermark, not one per millisecond; a timer every `maxDelayMs` picks up what waits
   * below the watermark (the latency bound of a quiet capture). A drain out of budget
   * yields one loop turn and goes on. Records that arrived while a drain ran wait for the
   * watermark or the timer: going on because a ring is not empty kept the reader turning
   * for the few records each turn had brought, a loop turn, a write and ring bookkeeping
   * for a handful of packets, for as long as traffic flowed.
   */
  start(handler: SampleHandler, opts: { maxDelayMs?: number; budgetMs?: number; beforeRelease?: () => void; afterDrain?: () => void } = {}): void {
    if (this.timer || this.polls.length) return;
    this.delayMs = opts.maxDelayMs ?? 50;
    const budget = opts.budgetMs ?? 4;
    let again: NodeJS.Immediate | null = null;
    const run = (): void => {
      if (this.pb === null) return;
      this.drain(handler, budget, opts.beforeRelease);
      opts.afterDrain?.();
      if (this.behind && !again) {
        again = setImmediate(() => {
          again = null;
          run();
        });
      }
    };
    for (const r of this.rings) {
      const p = koffi.node.poll(r.fd, { readable: true }, run);
      this.polls.push(p);
    }
    this.run = run;
    this.timer = setInterval(run, this.delayMs);
    run();
  }

  private run: (() => void) | null = null;
  private delayMs = 50;

  /** The timer's period now (the latency bound below the watermark). */
  get maxDelayMs(): number {
    return this.delayMs;
  }

  /**
   * A new latency bound for what waits below the watermark: the timer runs every `ms`
   * from now on. Each run is a wakeup of the event loop, which costs a few hundred
   * microseconds of CPU on a busy VM whether or not a record waits (docs/capture.md
   * "Latency"): the bound is what the open sessions asked for, not shorter.
   */
  setMaxDelay(ms: number): void {
    if (ms === this.delayMs) return;
    this.delayMs = ms;
    if (!this.timer || !this.run) return;
    clearInterval(this.timer);
    this.timer = setInterval(this.run, ms);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.run = null;
    for (const p of this.polls.splice(0)) p.close();
    if (this.pb) L.perf_buffer__free(this.pb);
    this.pb = null;
  }
}

/** u64 ring positions as two u32 halves (no BigInt per read; see ringbuf.ts loadPos). */
function loadPos(ctl: Uint32Array, byteOff: number): number {
  const w = byteOff / 4;
  for (;;) {
    const hi = Atomics.load(ctl, w + HI);
    const lo = Atomics.load(ctl, w + LO);
    if (Atomics.load(ctl, w + HI) === hi) return hi * TWO32 + lo;
  }
}

function storePos(ctl: Uint32Array, byteOff: number, pos: number): void {
  const w = byteOff / 4;
  // We are the only writer of data_tail; the kernel reads it as one u64. Low half first:
  // when the high half also changes (every 4 GiB) the value in between is smaller than
  // the truth, so the kernel sees less free space, never more.
  Atomics.store(ctl, w + LO, pos >>> 0);
  const hi = Math.floor(pos / TWO32);
  if (Atomics.load(ctl, w + HI) !== hi) Atomics.store(ctl, w + HI, hi);
}
