// SPDX-License-Identifier: Apache-2.0
// A BPF ring buffer (BPF_MAP_TYPE_RINGBUF) read directly from its mmapped pages, in
// TypeScript: no koffi call per record, which is what lets Node keep up with millions
// of events per second (see docs/architecture.md). Layout, from kernel/bpf/ringbuf.c:
//   page 0 (rw):  consumer position (u64)
//   page 1 (ro):  producer position (u64)
//   data (ro):    `size` bytes.
// The kernel lets a consumer map the data twice back to back (libbpf does), so that a
// record that wraps around the end reads as one range; this reader maps it once and copies
// the rare record that wraps into a scratch buffer. The kernel maps every page of a ring at
// mmap time, so the second mapping added the ring's whole size to the daemon's RSS (and to
// Node's external memory) for pages already counted once: 16 MiB with the default ring.
// Each record: u32 len (bit 31 BUSY: not committed yet; bit 30 DISCARD), u32 page
// offset, then `len` bytes, padded to 8.
//
// Wakeups: while the ring is idle, a libuv poll handle on the map fd wakes the reader
// (the kernel reports the fd readable while records are pending). Once records flow,
// the poll handle is stopped and the reader drains on a short timer (`coalesceMs`)
// until a drain finds the ring empty, then it re-arms the poll - interrupts when idle,
// polling when busy, as NAPI does for NICs. Why: the kernel queues a wakeup (irq_work)
// for every record committed while the consumer is caught up, so a reader that drains
// on every wakeup is caught up nearly all the time: the producer pays a wakeup per burst
// and the reader a loop turn per burst. In bench/ringbuf (docs/benchmarks.md) that mode
// (coalesceMs 0, the reader's former behaviour) held the producer to about half its rate
// at 3-10x the reader's CPU time per event. A drain never runs longer than `budgetMs`: a
// flood of events cannot stall RPC clients.
import koffi from 'koffi';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { BpfError } from './errors.js';
import { lastErrno, MAP_SHARED, mmap, munmap, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import type { BpfMap } from './maps.js';
import { BPF_MAP_TYPE } from './uapi.js';

const BUSY = 0x8000_0000;
const DISCARD = 0x4000_0000;
const HDR = 8;
const PAGE = 4096;
/** Records between two consumer-position stores (space given back to producers). */
const STORE_EVERY = 64;
/** The clock is read every `stride` records; the stride adapts so that a read happens
 * about every 20-100 us whatever the handler costs (see drain()). */
const MIN_STRIDE = 1;
const MAX_STRIDE = 1024;
const STRIDE_FAST_MS = 0.02;
const STRIDE_SLOW_MS = 0.1;
const TWO32 = 2 ** 32;
// Positions are u64; they are read and written as two u32 halves (see drain()).
const LO = os.endianness() === 'LE' ? 0 : 1;
const HI = 1 - LO;
/**
 * On x86-64 (total store order) loads are not reordered with other loads and stores are
 * not reordered with earlier loads, so a plain load of a record's header is already the
 * acquire (and a plain store of the consumer position the release) that libbpf's
 * smp_load_acquire()/smp_store_release() compile to there; V8 keeps typed-array accesses
 * in program order. Atomics.load/store are not inlined for non-shared buffers: the
 * header load alone cost about 12 ns per record, more than the rest of the loop
 * (bench/ringbuf, backlog). Other architectures keep Atomics.
 */
const PLAIN_ACCESS = process.arch === 'x64';

export type RecordHandler = (view: DataView, offset: number, length: number) => void;

export interface RingStats {
  records: number;
  bytes: number;
  drains: number;
  /** Longest single drain in milliseconds (the worst event-loop stall this reader caused). */
  maxDrainMs: number;
  /** Records whose handler threw (the record is skipped; the reader goes on). */
  handlerErrors: number;
}

export interface RingReaderOptions {
  /** Longest a single drain may hold the event loop (default 4 ms). */
  budgetMs?: number;
  /** Called with whatever a handler threw (the record is skipped). */
  onError?: (err: unknown) => void;
  /**
   * While records keep coming, drain every `coalesceMs` instead of on every kernel
   * wakeup (default 1 ms; 0 = drain on every wakeup). The ring must hold this long a
   * burst, which the 16 MiB event ring (the default) does at more than 40 M events/s.
   */
  coalesceMs?: number;
  /**
   * While drains stay small (each under 1/64 of the ring), the interval doubles from
   * `coalesceMs` up to this; one bigger drain, a drain out of budget, or the ring going
   * idle brings it back to `coalesceMs`. Fewer drains and fewer wakeups of everything
   * downstream at steady moderate rates. Default `coalesceMs` (no growth). Size the ring
   * for it: records arriving faster than 63/64 of the ring per `maxCoalesceMs` right after
   * a quiet stretch can overflow it.
   */
  maxCoalesceMs?: number;
}

export class RingBufReader {
  readonly stats: RingStats = { records: 0, bytes: 0, drains: 0, maxDrainMs: 0, handlerErrors: 0 };
  private readonly size: number;
  private readonly mask: number;
  private readonly budgetMs: number;
  private readonly coalesceMs: number;
  private readonly maxCoalesceMs: number;
  /** The current coalescing interval (see maxCoalesceMs). */
  private intervalMs: number;
  private consumerPtr: bigint | null = null;
  private producerPtr: bigint | null = null;
  private cons!: BigInt64Array;
  private cons32!: Uint32Array;
  private prod32!: Uint32Array;
  /** High word of the consumer position as last stored. */
  private consHi = -1;
  private stride = 16;
  private data!: DataView;
  private hdrs!: Int32Array;
  /** Where a record that wraps around the ring's end is put together (grown as needed). */
  private wrapped = new DataView(new ArrayBuffer(256));
  private wrappedBytes = new Uint8Array(this.wrapped.buffer);
  private ringBytes!: Uint8Array;
  private poll: ReturnType<typeof koffi.node.poll> | null = null;
  private pollArmed = false;
  private readonly onReadable = (): void => {
    // Stop the poll before draining: from here until the ring is seen empty again the
    // timer drives the drains, and a level-triggered poll would fire on every loop turn.
    this.disarm();
    this.drain();
  };
  private pendingImmediate: NodeJS.Immediate | null = null;
  private pendingTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly map: BpfMap,
    private readonly handler: RecordHandler,
    private readonly opts: RingReaderOptions = {},
  ) {
    if (map.info.type !== BPF_MAP_TYPE.RINGBUF) throw new BpfError('mapping', map.name, 22, { detail: 'not a ring buffer' });
    this.size = map.info.maxEntries;
    this.mask = this.size - 1;
    this.budgetMs = opts.budgetMs ?? 4;
    this.coalesceMs = opts.coalesceMs ?? 1;
    this.maxCoalesceMs = Math.max(this.coalesceMs, opts.maxCoalesceMs ?? this.coalesceMs);
    this.intervalMs = this.coalesceMs;
    this.mapPages();
  }

  private mapPages(): void {
    const c = mmap(null, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, this.map.fd, 0);
    if (c === null || c === (1n << 64n) - 1n) throw new BpfError('mapping', this.map.name, lastErrno(), { detail: 'consumer page' });
    this.consumerPtr = c;
    const p = mmap(null, PAGE + this.size, PROT_READ, MAP_SHARED, this.map.fd, PAGE);
    if (p === null || p === (1n << 64n) - 1n) {
      const e = lastErrno();
      munmap(c, PAGE);
      throw new BpfError('mapping', this.map.name, e, { detail: 'producer pages' });
    }
    this.producerPtr = p;
    const consBuf = koffi.view(c, PAGE);
    this.cons = new BigInt64Array(consBuf, 0, 1);
    this.cons32 = new Uint32Array(consBuf, 0, 2);
    const prodBuf = koffi.view(p, PAGE + this.size);
    this.prod32 = new Uint32Array(prodBuf, 0, 2);
    this.data = new DataView(prodBuf, PAGE, this.size);
    this.hdrs = new Int32Array(prodBuf, PAGE, this.size / 4);
    this.ringBytes = new Uint8Array(prodBuf, PAGE, this.size);
  }

  /** Starts reading on the event loop. */
  start(): void {
    if (this.poll || this.closed) return;
    this.poll = koffi.node.poll(this.map.fd, { readable: true }, this.onReadable);
    this.pollArmed = true;
    this.drain();
  }

  /** The producers' position: bytes committed since the ring was created (0 once closed). */
  producerPosition(): number {
    return this.closed ? 0 : loadPos(this.prod32);
  }

  /** The reader's position: bytes consumed since the ring was created (0 once closed). */
  consumerPosition(): number {
    return this.closed ? 0 : loadPos(this.cons32);
  }

  /** Bytes committed by producers and not yet consumed. */
  pendingBytes(): number {
    if (this.closed) return 0;
    return loadPos(this.prod32) - loadPos(this.cons32);
  }

  /**
   * Gives space back to producers. Only the low word is stored while the high word
   * stays the same (we are the only writer, so the kernel's 64-bit load still sees a
   * consistent value); the whole u64 only when the high word changes, every 4 GiB.
   * Why not always the BigInt64Array: each BigInt store (and load) allocates, and at
   * millions of records per second that garbage meant a scavenge every ~250 ms.
   */
  private storeCons(pos: number): void {
    const hi = Math.floor(pos / TWO32);
    if (hi === this.consHi) {
      if (PLAIN_ACCESS) this.cons32[LO] = pos >>> 0; // x86-64: every store is a release
      else Atomics.store(this.cons32, LO, pos >>> 0);
    } else {
      Atomics.store(this.cons, 0, BigInt(pos));
      this.consHi = hi;
    }
  }

  /**
   * Consumes records until the ring is empty or the time budget is spent; in the latter
   * case the rest is scheduled with setImmediate so I/O callbacks run in between.
   * Returns the number of records consumed.
   */
  drain(): number {
    if (this.closed) return 0;
    const t0 = performance.now();
    const deadline = t0 + this.budgetMs;
    // Locals rather than fields in the per-record loop: V8 then keeps them in registers.
    const { handler, data, hdrs, mask, stats } = this;
    let consumed = 0;
    let bytes = 0;
    const cons32 = this.cons32;
    let cons = loadPos(cons32);
    // Below this position the consumer's high word does not change (see storeCons()).
    const hiLimit = (Math.floor(cons / TWO32) + 1) * TWO32;
    let exhausted = false;
    // The clock is read every `stride` records: reading it allocates (a HeapNumber), and
    // a fixed stride is either too often for a cheap handler or too rare for a slow one.
    let stride = this.stride;
    let untilCheck = stride;
    let lastCheck = t0;
    outer: for (;;) {
      // Positions are u64 (doubles here); the loop itself runs on small integers: the
      // offset in the ring and the bytes taken in this pass.
      const avail = loadPos(this.prod32) - cons;
      if (avail <= 0) break;
      const base = cons & mask;
      let taken = 0;
      while (taken < avail) {
        const off = (base + taken) & mask;
        // Acquire load of the header: the record's bytes are visible once BUSY is clear.
        const len = (PLAIN_ACCESS ? hdrs[off >> 2]! : Atomics.load(hdrs, off >> 2)) >>> 0;
        if (len & BUSY) {
          cons += taken;
          break outer; // producer still writing this record
        }
        const dataLen = len & ~(BUSY | DISCARD);
        taken += (dataLen + HDR + 7) & ~7;
        if (!(len & DISCARD)) {
          // Headers are 8-byte aligned in a ring of whole pages: one never wraps; the
          // record's bytes may.
          const start = (off + HDR) & mask;
          try {
            if (start + dataLen <= mask + 1) handler(data, start, dataLen);
            else handler(this.unwrap(start, dataLen), 0, dataLen);
          } catch (err) {
            stats.handlerErrors++;
            this.opts.onError?.(err);
          }
          bytes += dataLen;
          consumed++;
          // A handler (or onError) that closed the reader has unmapped the ring: touching
          // it again would crash the process.
          if (this.closed) return consumed;
          if ((consumed & (STORE_EVERY - 1)) === 0) {
            // Inline form of storeCons() for the common case (same high word).
            if (PLAIN_ACCESS && cons + taken < hiLimit) cons32[LO] = (cons + taken) >>> 0;
            else this.storeCons(cons + taken);
          }
        }
        if (--untilCheck === 0) {
          const now = performance.now();
          if (now - lastCheck < STRIDE_FAST_MS) {
            if (stride < MAX_STRIDE) stride <<= 1;
          } else if (now - lastCheck > STRIDE_SLOW_MS && stride > MIN_STRIDE) {
            stride >>= 1;
          }
          untilCheck = stride;
          lastCheck = now;
          if (now > deadline) {
            cons += taken;
            exhausted = true;
            break outer;
          }
        }
      }
      cons += taken;
      this.storeCons(cons);
    }
    this.storeCons(cons);
    this.stride = stride;
    const dt = performance.now() - t0;
    stats.records += consumed;
    stats.bytes += bytes;
    stats.drains++;
    if (dt > stats.maxDrainMs) stats.maxDrainMs = dt;
    this.scheduleNext(exhausted, consumed, bytes);
    return consumed;
  }

  /** A record's bytes that run past the ring's end, copied into one range. Valid until the
   * next wrapped record: a handler keeps nothing of its view past its return (as with the
   * ring itself, whose bytes producers reuse once the consumer position moves on). */
  private unwrap(start: number, len: number): DataView {
    if (this.wrappedBytes.length < len) {
      this.wrapped = new DataView(new ArrayBuffer(Math.max(len, 2 * this.wrappedBytes.length)));
      this.wrappedBytes = new Uint8Array(this.wrapped.buffer);
    }
    const first = this.size - start;
    this.wrappedBytes.set(this.ringBytes.subarray(start, this.size), 0);
    this.wrappedBytes.set(this.ringBytes.subarray(0, len - first), first);
    return this.wrapped;
  }

  /** Decides what wakes the next drain (see the header comment). */
  private scheduleNext(exhausted: boolean, consumed: number, bytes: number): void {
    if (this.closed) return;
    this.intervalMs = exhausted || bytes >= this.size / 64 ? this.coalesceMs : Math.min(2 * this.intervalMs, this.maxCoalesceMs);
    if (exhausted) {
      // Out of budget with records left: yield one loop turn, then go on. The poll stays
      // stopped meanwhile so that it does not add a second drain to the same turn.
      this.disarm();
      if (!this.pendingImmediate) {
        this.pendingImmediate = setImmediate(() => {
          this.pendingImmediate = null;
          this.drain();
        });
      }
      return;
    }
    if (!this.poll || this.pendingImmediate || this.pendingTimer) return; // not started, or a drain is already due
    // Records came (or one is half-written): more will follow soon; let them gather.
    if (this.coalesceMs > 0 && (consumed > 0 || this.pendingBytes() > 0)) {
      this.disarm();
      this.pendingTimer = setTimeout(() => {
        this.pendingTimer = null;
        this.drain();
      }, this.intervalMs);
      return;
    }
    // Idle: wait for the kernel. The poll is level-triggered, so a record committed
    // between the drain and this call still wakes it. A burst after a quiet stretch
    // starts over at the shortest interval.
    this.intervalMs = this.coalesceMs;
    this.arm();
  }

  private arm(): void {
    if (this.pollArmed || !this.poll) return;
    this.poll.start({ readable: true }, this.onReadable);
    this.pollArmed = true;
  }

  private disarm(): void {
    if (!this.pollArmed || !this.poll) return;
    this.poll.stop();
    this.pollArmed = false;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.close();
    this.poll = null;
    this.pollArmed = false;
    if (this.pendingImmediate) clearImmediate(this.pendingImmediate);
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pendingImmediate = this.pendingTimer = null;
    if (this.consumerPtr !== null) munmap(this.consumerPtr, PAGE);
    if (this.producerPtr !== null) munmap(this.producerPtr, PAGE + this.size);
    this.consumerPtr = this.producerPtr = null;
  }
}

/**
 * Reads a u64 position as two u32 halves without allocating (a BigInt64Array load makes a
 * BigInt). The kernel stores the whole u64 at once; re-reading the high word catches the
 * one case a split read could tear: a carry into the high word between the two reads.
 */
function loadPos(p: Uint32Array): number {
  for (;;) {
    const hi = Atomics.load(p, HI);
    const lo = Atomics.load(p, LO);
    if (Atomics.load(p, HI) === hi) return hi * TWO32 + lo;
  }
}
