// SPDX-License-Identifier: Apache-2.0
// Connections that called Subscribe. Signals go to each of them as unicast messages (the
// destination header set), filtered by what that caller may see: a broadcast signal
// would reach every connection with a matching rule, whoever it belongs to. Each
// subscriber has a budget of process signals per second; beyond it they are dropped and
// counted (SignalsDropped), so a storm of short connections cannot flood a widget.
import type { Credentials, Scope } from './callers.js';

export interface Subscriber {
  sender: string;
  creds: Credentials;
  scope: Scope;
  /** What the last BandwidthChanged carried (it is sent only when this changes). */
  lastTop: string | null;
  tokens: number;
  refilledAt: number;
}

export class Subscribers {
  private readonly bySender = new Map<string, Subscriber>();

  constructor(private readonly opts: { max: number; processSignalsPerSec: number; now?: () => number }) {}

  get size(): number {
    return this.bySender.size;
  }

  get max(): number {
    return this.opts.max;
  }

  has(sender: string): boolean {
    return this.bySender.has(sender);
  }

  /** False when the limit is reached. Subscribing twice is harmless. */
  add(sender: string, creds: Credentials, scope: Scope): boolean {
    const s = this.bySender.get(sender);
    if (s) {
      s.scope = scope;
      return true;
    }
    if (this.bySender.size >= this.opts.max) return false;
    this.bySender.set(sender, { sender, creds, scope, lastTop: null, tokens: this.opts.processSignalsPerSec, refilledAt: this.now() });
    return true;
  }

  remove(sender: string): boolean {
    return this.bySender.delete(sender);
  }

  all(): IterableIterator<Subscriber> {
    return this.bySender.values();
  }

  /** Subscribers allowed to see traffic of `uid`. */
  *seeing(uid: number): Generator<Subscriber> {
    for (const s of this.bySender.values()) if (s.scope.seesAll || s.creds.uid === uid) yield s;
  }

  /** Takes one process-signal token; false when the subscriber spent its budget for now. */
  take(s: Subscriber): boolean {
    const now = this.now();
    const rate = this.opts.processSignalsPerSec;
    s.tokens = Math.min(rate, s.tokens + ((now - s.refilledAt) / 1000) * rate);
    s.refilledAt = now;
    if (s.tokens < 1) return false;
    s.tokens -= 1;
    return true;
  }

  clear(): void {
    this.bySender.clear();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
