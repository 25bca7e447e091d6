// SPDX-License-Identifier: Apache-2.0
// The dirty-flow ring's reader (issue 17). The kernel pushes the key of every flow that
// changed (bpf/monitor/helpers.bpf.h dirty_mark, dirty_tick) into emon_dirty; this gathers
// them, deduplicated, between two refreshes of the flow table's user-space copy
// (flowmirror.ts) and owner index, which then read only those flows.
//
// Why reading only the pushed flows is exact (docs/architecture.md "Dirty flows" has it in
// full). A packet's counts push its flow when they move the flow's stamp (last_ns, the
// coarse clock, set once a tick per flow) from before the epoch E to at or after it: the
// first packet of each flow in a tick >= E pushes, later ones until the next epoch do not.
// A refresh (1) sets E to the next tick (coarse now + 1 ns) and waits until the coarse clock
// has moved past now, (2) drains the ring, (3) reads every drained key, and again the keys
// the previous refresh read whose stamp was >= its own E (pushed after its epoch began:
// counts may have followed its read without a push). Every count added before step (1) is
// then read by that refresh or an earlier one: the flow's first packet in the epoch pushed
// it, and that key was read after the count's tick ended, or carried over. Changes that are
// not counts (created, reopened, owner patched or moved, closed) push too, unless the flow's
// stamp is already >= E: then it was pushed in this epoch with that stamp (the stamp gets
// there only through a push), and that key is read after the change or carried to the next
// refresh, as for counts (a flow made and closed between two refreshes: one record, not
// two). A push the ring cannot take is counted (`dirtyRingFull`), and the table is then
// walked once (flows.ts).
//
// When it is drained. Before each refresh (take()), and when the kernel wakes the reader:
// a push wakes it only once the ring holds a quarter of its size (EMON_DIRTY_WAKE_BYTES in
// bpf/monitor/maps.bpf.h; below that BPF_RB_NO_WAKEUP), so an idle daemon is not woken per
// new flow nor on a timer, and a busy one empties the ring about every 4,700 records (1 MiB
// holds about 18,700), long before it fills. Each flow pushes at most once per refresh, plus
// its creation. Until December 2026 the ring was drained every 100 ms on a timer
// instead (10 wakeups a second of an idle daemon, bench/footprint); a slow timer (DRAIN_MS)
// stays as a backstop: pending keys wait in the ring at most that long before they are
// filed (a refresh drains first anyway, so what a reply shows does not depend on it).
import type { BpfMap } from '../bpf/maps.js';
import { RingBufReader } from '../bpf/ringbuf.js';
import { CLOCK_MONOTONIC_COARSE, clockNs } from '../sys/libc.js';
import { DIRTY_REC } from './wire.js';
import { keyString } from './ownerindex.js';
import { yieldTurn } from '../util/turn.js';

/** Longest time between two drains when neither a refresh nor the kernel asks (see the header). */
export const DRAIN_MS = 10_000;
/** Longest wait for the coarse clock to tick (it ticks every 1-10 ms). */
const TICK_WAIT_MS = 200;
/** A drain's time budget (ms): a wakeup's quarter of the ring, and a refresh's take(), are
 * read in pieces of this, the event loop getting a turn between two. At 50 ms in one piece
 * (until December 2026) the drain before a refresh was the daemon's longest task at 10k
 * connections/s: 20-33 ms of the main thread, filing some 10,000 keys (docs/benchmarks.md,
 * "The stall's longest tasks"). */
export const DRAIN_BUDGET_MS = 4;
/** At most this many pieces in one take() (about a second of the main thread): a ring that
 * producers fill faster than that is not emptied by reading longer; what is left is read by
 * the next drain, and the refresh after it. */
const TAKE_MAX_PIECES = 256;

const STAMP = DIRTY_REC.fields.stamp.offset;
const KEY0 = Buffer.alloc(4);

export interface DirtyStats {
  /** Records read from the ring. */
  records: number;
  /** Refreshes (epochs started). */
  epochs: number;
}

export class DirtyRing {
  /** Keys pushed since the last take(), each with the highest stamp seen (0: not counts). */
  private pending = new Map<string, number>();
  private readonly reader: RingBufReader;
  private readonly timer: NodeJS.Timeout;
  private u8: Uint8Array | null = null;
  private u8Of: DataView | null = null;
  readonly stats: DirtyStats = { records: 0, epochs: 0 };
  /** Records the handler could not read (too short): each is a lost change. */
  malformed = 0;
  private closed = false;

  /** `drainMs`: the backstop timer (tests stretch it to see the kernel's wakeups alone);
   * `budgetMs`: a drain's budget (DRAIN_BUDGET_MS; tests shrink it to see the pieces). */
  constructor(ring: BpfMap, private readonly epochMap: BpfMap, opts: { drainMs?: number; budgetMs?: number } = {}) {
    // coalesceMs 0: a wakeup means a quarter of the ring is waiting, drain it at once (in
    // pieces of the budget: the reader yields a loop turn between two).
    this.reader = new RingBufReader(ring, (v, off, len) => this.onRecord(v, off, len), { budgetMs: opts.budgetMs ?? DRAIN_BUDGET_MS, coalesceMs: 0 });
    this.reader.start();
    this.timer = setInterval(() => this.reader.drain(), opts.drainMs ?? DRAIN_MS);
    this.timer.unref();
  }

  private onRecord(v: DataView, off: number, len: number): void {
    if (len < DIRTY_REC.size) {
      this.malformed++;
      return;
    }
    if (this.u8Of !== v) {
      this.u8 = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      this.u8Of = v;
    }
    const k = keyString(this.u8!, off + DIRTY_REC.fields.key.offset);
    const stamp = v.getUint32(off + STAMP, true) + v.getUint32(off + STAMP + 4, true) * 0x1_0000_0000;
    const prev = this.pending.get(k);
    if (prev === undefined || stamp > prev) this.pending.set(k, stamp);
    this.stats.records++;
  }

  /**
   * Starts a new epoch at the next tick of the coarse clock and waits for that tick (so
   * every count added before the epoch was in a tick that has ended). Returns the epoch.
   */
  async advance(): Promise<number> {
    const c = clockNs(CLOCK_MONOTONIC_COARSE);
    const g = c + 1n;
    this.writeEpoch(g);
    this.stats.epochs++;
    const until = performance.now() + TICK_WAIT_MS;
    while (clockNs(CLOCK_MONOTONIC_COARSE) <= c && performance.now() < until) await new Promise((r) => setTimeout(r, 1));
    return Number(g);
  }

  /**
   * Drains the ring up to where producers had committed when called (everything pushed
   * before the epoch advance() began is there) and hands over the keys gathered since the
   * last take(). In pieces of DRAIN_BUDGET_MS, the event loop getting a turn between two.
   */
  async take(): Promise<Map<string, number>> {
    const upTo = this.reader.producerPosition();
    const done = () => this.closed || this.reader.consumerPosition() >= upTo;
    // The first piece now. A drain that runs out of budget reads on by itself, a piece a
    // loop turn (RingBufReader.scheduleNext); a drain is asked for here only in a turn
    // where none ran. 0 records: the ring is empty, or its next record is still being
    // written (where a drain stops too).
    if (!done() && this.reader.drain() > 0) {
      for (let i = 0; i < TAKE_MAX_PIECES && !done(); i++) {
        const at = this.reader.consumerPosition();
        await yieldTurn();
        if (!done() && this.reader.consumerPosition() === at && this.reader.drain() === 0) break;
      }
    }
    const out = this.pending;
    this.pending = new Map();
    return out;
  }

  private writeEpoch(g: bigint): void {
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(g);
    this.epochMap.update(KEY0, v);
  }

  /** Stops the pushes (epoch 0) and the reader. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      this.writeEpoch(0n);
    } finally {
      this.reader.close();
    }
  }
}
