// SPDX-License-Identifier: Apache-2.0
// Packet timestamps: the kernel stamps records with bpf_ktime_get_ns (CLOCK_MONOTONIC);
// files want ns since the epoch. The offset between the two clocks is read once per
// session (and again on refresh(): NTP slews the realtime clock). Conversion works on u32
// halves: a BigInt per packet costs more than the rest of the packet's bookkeeping.
import { CLOCK_MONOTONIC, CLOCK_REALTIME, clockNs } from '../sys/libc.js';

const TWO32 = 2 ** 32;

export class TimeBase {
  private offHi = 0;
  private offLo = 0;

  constructor() {
    this.refresh();
  }

  /** Re-reads the offset (realtime - monotonic), taking the tightest of a few reads. */
  refresh(): void {
    let best: bigint | null = null;
    let bestSpan = Infinity;
    for (let i = 0; i < 5; i++) {
      const m0 = clockNs(CLOCK_MONOTONIC);
      const r = clockNs(CLOCK_REALTIME);
      const m1 = clockNs(CLOCK_MONOTONIC);
      const span = Number(m1 - m0);
      if (span < bestSpan) {
        bestSpan = span;
        best = r - (m0 + m1) / 2n;
      }
    }
    this.offHi = Number(best! >> 32n);
    this.offLo = Number(best! & 0xffffffffn);
  }

  /** Writes the epoch time of the monotonic `hi:lo` into out[0] (high) and out[1] (low). */
  toEpoch(hi: number, lo: number, out: Uint32Array): void {
    const l = lo + this.offLo;
    const carry = l >= TWO32 ? 1 : 0;
    out[0] = hi + this.offHi + carry;
    out[1] = l - carry * TWO32;
  }

  /** The same as a BigInt (for the occasional ISB, never per packet). */
  epochNs(monoNs: bigint): bigint {
    return monoNs + ((BigInt(this.offHi) << 32n) | BigInt(this.offLo));
  }

  /** realtime - monotonic, ns (what toEpoch() adds). */
  offsetNs(): bigint {
    return BigInt.asIntN(64, (BigInt(this.offHi) << 32n) | BigInt(this.offLo));
  }

  nowNs(): bigint {
    return clockNs(CLOCK_REALTIME);
  }
}
