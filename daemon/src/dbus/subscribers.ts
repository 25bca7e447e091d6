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
  /** What the last RatesChanged carried. */
  lastRates: string | null;
  tokens: number;
  refilledAt: number;
}

export class Subscribers {
  private readonly bySender = new Map<string, Subscriber>();

  private readonly perUid = new Map<number, number>();

  constructor(private readonly opts: { max: number; processSignalsPerSec: number; maxPerUid?: number; reserved?: number; now?: () => number }) {}

  get size(): number {
    return this.bySender.size;
  }

  get max(): number {
    return this.opts.max;
  }

  has(sender: string): boolean {
    return this.bySender.has(sender);
  }

  /**
   * 'full' when every slot open to this caller is taken (a share is kept for root and the
   * ebpfmon group), 'uidLimit' when its user has as many subscriptions as one user may.
   * Subscribing twice is harmless.
   */
  add(sender: string, creds: Credentials, scope: Scope): 'ok' | 'full' | 'uidLimit' {
    const s = this.bySender.get(sender);
    if (s) {
      s.scope = scope;
      return 'ok';
    }
    const privileged = creds.uid === 0 || scope.seesAll;
    const reserved = Math.min(this.opts.reserved ?? 0, this.opts.max - 1);
    if (this.bySender.size >= (privileged ? this.opts.max : this.opts.max - reserved)) return 'full';
    if ((this.perUid.get(creds.uid) ?? 0) >= (this.opts.maxPerUid ?? Infinity)) return 'uidLimit';
    this.bySender.set(sender, { sender, creds, scope, lastTop: null, lastRates: null, tokens: this.opts.processSignalsPerSec, refilledAt: this.now() });
    this.perUid.set(creds.uid, (this.perUid.get(creds.uid) ?? 0) + 1);
    return 'ok';
  }

  remove(sender: string): boolean {
    const s = this.bySender.get(sender);
    if (!s) return false;
    this.bySender.delete(sender);
    const n = (this.perUid.get(s.creds.uid) ?? 1) - 1;
    if (n > 0) this.perUid.set(s.creds.uid, n);
    else this.perUid.delete(s.creds.uid);
    return true;
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
    this.perUid.clear();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
