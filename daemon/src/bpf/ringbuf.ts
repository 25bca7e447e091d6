// SPDX-License-Identifier: Apache-2.0
// A BPF ring buffer (BPF_MAP_TYPE_RINGBUF) read directly from its mmapped pages, in
// TypeScript: no koffi call per record, which is what lets Node keep up with millions
// of events per second (see docs/architecture.md). Layout, from kernel/bpf/ringbuf.c:
//   page 0 (rw):  consumer position (u64)
//   page 1 (ro):  producer position (u64)
//   data (ro):    `size` bytes mapped twice back to back, so a record that wraps around
//                 the end reads as one contiguous range.
// Each record: u32 len (bit 31 BUSY: not committed yet; bit 30 DISCARD), u32 page
// offset, then `len` bytes, padded to 8.
//
// Wakeups come from the event loop itself (a libuv poll handle on the map fd; the
// kernel reports it readable while records are pending), and one drain never runs
// longer than `budgetMs`: a flood of events cannot stall RPC clients.
import koffi from 'koffi';
import { performance } from 'node:perf_hooks';
import { BpfError } from './errors.js';
import { lastErrno, MAP_SHARED, mmap, munmap, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import type { BpfMap } from './maps.js';
import { BPF_MAP_TYPE } from './uapi.js';

const BUSY = 0x8000_0000;
const DISCARD = 0x4000_0000;
const HDR = 8;
const PAGE = 4096;

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

export class RingBufReader {
  readonly stats: RingStats = { records: 0, bytes: 0, drains: 0, maxDrainMs: 0, handlerErrors: 0 };
  private readonly size: number;
  private readonly mask: number;
  private consumerPtr: bigint | null = null;
  private producerPtr: bigint | null = null;
  private cons!: BigInt64Array;
  private prod!: BigInt64Array;
  private data!: DataView;
  private hdrs!: Int32Array;
  private poll: ReturnType<typeof koffi.node.poll> | null = null;
  private pendingImmediate: NodeJS.Immediate | null = null;
  private closed = false;

  constructor(
    private readonly map: BpfMap,
    private readonly handler: RecordHandler,
    private readonly opts: { budgetMs?: number; onError?: (err: unknown) => void } = {},
  ) {
    if (map.info.type !== BPF_MAP_TYPE.RINGBUF) throw new BpfError('mapping', map.name, 22, { detail: 'not a ring buffer' });
    this.size = map.info.maxEntries;
    this.mask = this.size - 1;
    this.mapPages();
  }

  private mapPages(): void {
    const c = mmap(null, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, this.map.fd, 0);
    if (c === null || c === (1n << 64n) - 1n) throw new BpfError('mapping', this.map.name, lastErrno(), { detail: 'consumer page' });
    this.consumerPtr = c;
    const p = mmap(null, PAGE + 2 * this.size, PROT_READ, MAP_SHARED, this.map.fd, PAGE);
    if (p === null || p === (1n << 64n) - 1n) {
      const e = lastErrno();
      munmap(c, PAGE);
      throw new BpfError('mapping', this.map.name, e, { detail: 'producer pages' });
    }
    this.producerPtr = p;
    this.cons = new BigInt64Array(koffi.view(c, PAGE), 0, 1);
    const prodBuf = koffi.view(p, PAGE + 2 * this.size);
    this.prod = new BigInt64Array(prodBuf, 0, 1);
    this.data = new DataView(prodBuf, PAGE, 2 * this.size);
    this.hdrs = new Int32Array(prodBuf, PAGE, (2 * this.size) / 4);
  }

  /** Starts reading on the event loop. */
  start(): void {
    if (this.poll || this.closed) return;
    this.poll = koffi.node.poll(this.map.fd, { readable: true }, () => this.drain());
    this.drain();
  }

  /** Bytes committed by producers and not yet consumed. */
  pendingBytes(): number {
    return Number(Atomics.load(this.prod, 0) - Atomics.load(this.cons, 0));
  }

  /**
   * Consumes records until the ring is empty or the time budget is spent; in the latter
   * case the rest is scheduled with setImmediate so I/O callbacks run in between.
   * Returns the number of records consumed.
   */
  drain(): number {
    if (this.closed) return 0;
    const t0 = performance.now();
    const budget = this.opts.budgetMs ?? 4;
    let consumed = 0;
    let cons = Number(Atomics.load(this.cons, 0));
    let exhausted = false;
    outer: for (;;) {
      const prod = Number(Atomics.load(this.prod, 0));
      if (cons >= prod) break;
      while (cons < prod) {
        const off = cons & this.mask;
        const len = Atomics.load(this.hdrs, off >> 2) >>> 0;
        if (len & BUSY) break outer; // producer still writing this record
        const dataLen = len & ~(BUSY | DISCARD);
        if (!(len & DISCARD)) {
          try {
            this.handler(this.data, off + HDR, dataLen);
          } catch (err) {
            this.stats.handlerErrors++;
            this.opts.onError?.(err);
          }
          this.stats.bytes += dataLen;
          consumed++;
        }
        cons += (dataLen + HDR + 7) & ~7;
        // Give space back to producers every 64 records, not per record: the BigInt
        // store is the costliest line of this loop.
        if ((consumed & 63) === 0) {
          Atomics.store(this.cons, 0, BigInt(cons));
          if (performance.now() - t0 > budget) {
            exhausted = true;
            break outer;
          }
        }
      }
      Atomics.store(this.cons, 0, BigInt(cons));
    }
    Atomics.store(this.cons, 0, BigInt(cons));
    const dt = performance.now() - t0;
    this.stats.records += consumed;
    this.stats.drains++;
    if (dt > this.stats.maxDrainMs) this.stats.maxDrainMs = dt;
    if (exhausted && !this.pendingImmediate) {
      this.pendingImmediate = setImmediate(() => {
        this.pendingImmediate = null;
        this.drain();
      });
    }
    return consumed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.close();
    this.poll = null;
    if (this.pendingImmediate) clearImmediate(this.pendingImmediate);
    if (this.consumerPtr !== null) munmap(this.consumerPtr, PAGE);
    if (this.producerPtr !== null) munmap(this.producerPtr, PAGE + 2 * this.size);
    this.consumerPtr = this.producerPtr = null;
  }
}
