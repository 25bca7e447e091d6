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

export class WallClock {
  private offsetNs: bigint;

  /** `toleranceNs`: a new measurement replaces the kept offset only when it differs by more. */
  constructor(
    private readonly clock: number,
    private readonly toleranceNs = 200_000n,
    private readonly measure: (clock: number) => bigint = measureOffsetNs,
  ) {
    this.offsetNs = measure(clock);
  }

  /** Re-measures; follows a stepped (or slewed past the tolerance) wall clock. */
  refresh(): void {
    const now = this.measure(this.clock);
    const d = now - this.offsetNs;
    if (d > this.toleranceNs || d < -this.toleranceNs) this.offsetNs = now;
  }

  /** A timestamp of `clock` in wall-clock ms since the epoch. */
  toMs(ns: bigint): number {
    return Number((ns + this.offsetNs) / 1_000_000n);
  }
}
