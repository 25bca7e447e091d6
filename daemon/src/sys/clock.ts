// SPDX-License-Identifier: Apache-2.0
// BPF timestamps (CLOCK_MONOTONIC or CLOCK_BOOTTIME ns) -> wall-clock ms. The offset between
// the two clocks is constant until the wall clock is stepped or slewed, but measuring it
// takes two clock reads, and whatever runs between them (a preemption, a slow read in a VM)
// moves the result. The same flow must show the same firstSeen in every query and across
// daemon restarts, so the offset is measured carefully and kept until it really moved.
import { CLOCK_REALTIME, clockNs } from './libc.js';

/** Of `samples` (clock, realtime, clock) triples, the one read in the narrowest window. */
export function measureOffsetNs(clock: number, samples = 5): bigint {
  let best = 0n;
  let bestWindow = -1n;
  for (let i = 0; i < samples; i++) {
    const a = clockNs(clock);
    const wall = clockNs(CLOCK_REALTIME);
    const b = clockNs(clock);
    const window = b - a;
    if (bestWindow < 0n || window < bestWindow) {
      bestWindow = window;
      best = wall - (a + b) / 2n;
    }
  }
  return best;
}

const TWO32 = 2 ** 32;
/** Timestamps below 2^53 - 2^32 ns (104 days of the clock) convert without a BigInt. */
const FAST_HI_LIMIT = 0x1fffff;

export class WallClock {
  private offsetNs: bigint;
  /** offsetNs as whole ms (rounded down) and the ns left over (0 <= rem < 1e6). */
  private offMs = 0;
  private offRemNs = 0;

  /** `toleranceNs`: a new measurement replaces the kept offset only when it differs by more. */
  constructor(
    private readonly clock: number,
    private readonly toleranceNs = 200_000n,
    private readonly measure: (clock: number) => bigint = measureOffsetNs,
  ) {
    this.offsetNs = measure(clock);
    this.split();
  }

  private split(): void {
    let ms = this.offsetNs / 1_000_000n;
    if (ms * 1_000_000n > this.offsetNs) ms -= 1n; // BigInt division truncates toward zero
    this.offMs = Number(ms);
    this.offRemNs = Number(this.offsetNs - ms * 1_000_000n);
  }

  /** Times the offset moved (what toMs() answers for a stamp changes only with it). */
  generation = 0;

  /** Re-measures; follows a stepped (or slewed past the tolerance) wall clock. */
  refresh(): void {
    const now = this.measure(this.clock);
    const d = now - this.offsetNs;
    if (d > this.toleranceNs || d < -this.toleranceNs) {
      this.offsetNs = now;
      this.split();
      this.generation++;
    }
  }

  /** A timestamp of `clock` in wall-clock ms since the epoch. */
  toMs(ns: bigint): number {
    return Number((ns + this.offsetNs) / 1_000_000n);
  }

  /**
   * toMs() of the u64 at `off` in `v` (little-endian), without a BigInt while the timestamp
   * is below 2^53 - 2^32 ns: the event path converts one per event, and the BigInt
   * arithmetic was a tenth of its cost. Same result as toMs() (unit-tested).
   */
  toMsAt(v: DataView, off: number): number {
    const hi = v.getUint32(off + 4, true);
    if (hi >= FAST_HI_LIMIT) return this.toMs(v.getBigUint64(off, true));
    const x = hi * TWO32 + v.getUint32(off, true) + this.offRemNs; // exact: below 2^53
    // x / 1e6 is rounded to the nearest double, but below 2^53 a quotient short of a whole
    // number is short by at least 1e-6, more than half the spacing of doubles there
    // (under 2^34: at most 2^-19 / 2), so it never rounds up to it: floor is exact.
    const q = Math.floor(x / 1e6);
    const ms = this.offMs + q;
    // Before the epoch (offset below -ns): toMs() truncates toward zero, not down.
    return ms < 0 && x - q * 1e6 !== 0 ? ms + 1 : ms;
  }
}
