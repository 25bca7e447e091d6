// SPDX-License-Identifier: Apache-2.0
// Bytes per second per process, for GetTopTalkers and BandwidthChanged: the difference
// between two samples of the monitor's cumulative per-process totals, one second apart.
// Sampling dumps the flow table, so it runs only while someone subscribed or asked within
// the last few seconds; otherwise the timer stops and the samples are dropped.
import type { ProcessTotals } from '../contract/flows.js';

export interface Talker extends ProcessTotals {
  txBytesPerSec: number;
  rxBytesPerSec: number;
  bytesPerSec: number;
  /** Bytes moved since the previous sample. */
  txDelta: number;
  rxDelta: number;
}

export interface RateTrackerOptions {
  /** Cumulative totals of every process (MonitorApi.processTotals({})). */
  sample: () => Promise<ProcessTotals[]>;
  /** Sampling period (default 1000 ms). */
  intervalMs?: number;
  /** Keep sampling this long after the last talkers() call (default 10 s). */
  keepAliveMs?: number;
  /** Called after every sample with the new rates. */
  onTick?: (talkers: Talker[], at: number) => void;
  onError?: (err: unknown) => void;
  now?: () => number;
}

interface Waiter {
  resolve: (t: Talker[]) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

const key = (pid: number | null) => (pid === null ? 'none' : String(pid));

export class RateTracker {
  readonly intervalMs: number;
  private readonly keepAliveMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private prev: { at: number; byPid: Map<string, ProcessTotals> } | null = null;
  private current: { at: number; talkers: Talker[] } | null = null;
  private lastTouch = -Infinity;
  private active = false;
  private readonly waiters = new Set<Waiter>();
  /** Samples taken since construction (tests and status). */
  samples = 0;

  constructor(private readonly opts: RateTrackerOptions) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.keepAliveMs = opts.keepAliveMs ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** Subscribers exist: sample every interval until set false (and the keep-alive passed). */
  setActive(active: boolean): void {
    this.active = active;
    if (active) this.start();
  }

  /**
   * Rates over the last interval. Waits for the next sample when there is no recent one
   * (the first call after a quiet period takes one interval).
   */
  talkers(timeoutMs = 5 * (this.opts.intervalMs ?? 1000)): Promise<Talker[]> {
    this.lastTouch = this.now();
    this.start();
    if (this.current && this.now() - this.current.at <= 2 * this.intervalMs) return Promise.resolve(this.current.talkers);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve, reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new Error(`no traffic sample within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  /** The last sample's rates, if sampling runs. */
  latest(): Talker[] | null {
    return this.current?.talkers ?? null;
  }

  private start(): void {
    if (this.timer) return;
    this.prev = null;
    this.current = null;
    void this.sampleNow();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  private sampling = false;

  private async sampleNow(): Promise<{ at: number; totals: ProcessTotals[] } | null> {
    if (this.sampling) return null; // a slow walk (a huge table) never overlaps the next
    this.sampling = true;
    try {
      const totals = await this.opts.sample();
      this.samples++;
      const at = this.now();
      const byPid = new Map(totals.map((t) => [key(t.pid), t]));
      const prev = this.prev;
      this.prev = { at, byPid };
      if (!prev) return null;
      const dt = Math.max(1, at - prev.at) / 1000;
      const talkers = totals.map((t): Talker => {
        const before = prev.byPid.get(key(t.pid));
        // A process absent from the previous sample moved all its bytes since then.
        const txDelta = Math.max(0, t.txBytes - (before?.txBytes ?? 0));
        const rxDelta = Math.max(0, t.rxBytes - (before?.rxBytes ?? 0));
        const txBytesPerSec = Math.round(txDelta / dt);
        const rxBytesPerSec = Math.round(rxDelta / dt);
        return { ...t, txDelta, rxDelta, txBytesPerSec, rxBytesPerSec, bytesPerSec: txBytesPerSec + rxBytesPerSec };
      });
      this.current = { at, talkers };
      return { at, totals };
    } catch (err) {
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      this.waiters.clear();
      this.opts.onError?.(err);
      return null;
    } finally {
      this.sampling = false;
    }
  }

  private async tick(): Promise<void> {
    const s = await this.sampleNow();
    if (s && this.current) {
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.resolve(this.current.talkers);
      }
      this.waiters.clear();
      this.opts.onTick?.(this.current.talkers, this.current.at);
    }
    if (!this.active && this.waiters.size === 0 && this.now() - this.lastTouch > this.keepAliveMs) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.prev = null;
    this.current = null;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('traffic sampling stopped'));
    }
    this.waiters.clear();
  }
}

/**
 * Talkers one caller may see (`uid` undefined: all), busiest first: by bytes per second,
 * then by cumulative bytes, then by pid (a stable order for equal rows).
 */
export function rankTalkers(talkers: readonly Talker[], uid: number | undefined, limit: number): Talker[] {
  return talkers
    .filter((t) => uid === undefined || t.uid === uid)
    .sort((a, b) => b.bytesPerSec - a.bytesPerSec || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) || (a.pid ?? -1) - (b.pid ?? -1))
    .slice(0, limit);
}
