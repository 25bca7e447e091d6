// SPDX-License-Identifier: Apache-2.0
// The daemon's own footprint, for `status`: its memory now and its CPU over the last minute
// (every thread: the event loop, the history writer, DuckDB's and V8's), so that what the
// monitor costs is one command away (`ebpfmonctl status`), not a `top` session.
import type { ResourceStatus } from '../contract/status.js';

export interface ResourceClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** CPU milliseconds the process has used (user + system, every thread). */
  cpuMs(): number;
}

const PROCESS_CLOCK: ResourceClock = {
  now: () => performance.now(),
  cpuMs: () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  },
};

/** CPU samples every `sampleMs`; the share is taken over the oldest sample within `windowMs`. */
export class ResourceMeter {
  private readonly samples: Array<{ at: number; cpuMs: number }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly clock: ResourceClock = PROCESS_CLOCK, readonly windowMs = 60_000, private readonly sampleMs = 10_000) {
    this.sample();
  }

  /** Samples every `sampleMs` (the timer does not keep the process alive). */
  start(): this {
    this.timer ??= setInterval(() => this.sample(), this.sampleMs).unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sample(): void {
    const at = this.clock.now();
    this.samples.push({ at, cpuMs: this.clock.cpuMs() });
    // Keep the newest sample at or before the window's start, and everything after it.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - this.windowMs) this.samples.shift();
  }

  /** The share of one core used since the oldest sample within the window (or the first). */
  cpu(): { cpuMs: number; percent: number | null; windowMs: number } {
    const at = this.clock.now();
    const cpuMs = this.clock.cpuMs();
    const from = this.samples.find((s) => s.at >= at - this.windowMs) ?? this.samples.at(-1)!;
    const span = at - from.at;
    return { cpuMs, percent: span >= 1 ? (100 * (cpuMs - from.cpuMs)) / span : null, windowMs: Math.round(span) };
  }

  status(): ResourceStatus {
    const m = process.memoryUsage();
    const c = this.cpu();
    return {
      rssBytes: m.rss,
      heapUsedBytes: m.heapUsed,
      heapTotalBytes: m.heapTotal,
      externalBytes: m.external,
      cpuMs: Math.round(c.cpuMs),
      cpuPercent: c.percent === null ? null : Math.round(c.percent * 100) / 100,
      cpuWindowMs: c.windowMs,
    };
  }
}
