// SPDX-License-Identifier: Apache-2.0
// Logging that a client cannot turn into a flood: at most `burst` records per interval,
// then one summary of how many were suppressed.
import type { Logger } from 'pino';

export class RateLimitedLog {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger, private readonly opts: { perIntervalMs: number; burst: number }, private readonly now = () => Date.now()) {}

  error(obj: object, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.opts.perIntervalMs) {
      if (this.suppressed > 0) this.log.error({ suppressed: this.suppressed }, `${this.suppressed} similar error(s) not logged in the last ${this.opts.perIntervalMs} ms`);
      this.windowStart = t;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    if (this.inWindow < this.opts.burst) {
      this.inWindow++;
      this.log.error(obj, msg);
    } else {
      this.suppressed++;
    }
  }
}
