// SPDX-License-Identifier: Apache-2.0
// A connection's event notifications: the bounded queue of what its subscriptions are owed,
// and the lines written for it (contract/events.ts): `events.event` (one per event),
// `events.batch` (the queued events of one subscription in one message, as objects or as
// rows) and `events.lost` (at the place in the stream where events are missing).
//
// The queue holds each event already serialized (its JSON or its row, made once however many
// subscriptions take it) in parallel arrays read from a moving head: no object per event, and
// taking a chunk does not shift the whole array.
import { EVENT_BATCH_MAX, EVENT_FIELDS, EVENT_TYPES, type EventEncoding, type EventType } from '../contract/events.js';
import { NOTIFICATIONS } from '../contract/methods.js';

/** One events.subscribe on a connection. */
export interface Subscription {
  /** Its id (a UUID: no character needs escaping in JSON). */
  readonly id: string;
  readonly batch: boolean;
  readonly encoding: EventEncoding;
  /** Events dropped since the last one queued (reported before the next one that fits). */
  lost: number;
}

/** The `events.lost` line for `lost` events of subscription `id`. */
export function lostLine(id: string, lost: number): string {
  return `{"jsonrpc":"2.0","method":"${NOTIFICATIONS.lost}","params":{"subscription":"${id}","lost":${lost}}}\n`;
}

const TYPE_INDEX = new Map<EventType, number>(EVENT_TYPES.map((t, i) => [t, i]));
/** `"close":["type","at",...]` for each type, by type index: a row batch's `fields` entries. */
const FIELDS_JSON = EVENT_TYPES.map((t) => `${JSON.stringify(t)}:${JSON.stringify(EVENT_FIELDS[t])}`);

/**
 * Makes V8 store `s` as one flat string. A row is built by concatenation, which V8 keeps as a
 * tree of its pieces (about 40 objects per row) until something flattens it; while a slow
 * reader lets the queue fill, the GC copied those trees from one generation to the next and
 * cost far more than building them (in a micro-benchmark of 20,000 queued close rows, 12 us
 * of CPU per event without this, 3 us with it). ToNumber (`| 0`) flattens its operand in
 * place, as the flatstr package does; on a flat string (JSON.stringify's) it is a no-op.
 */
let _flattened = 0;
function flatten(s: string): void {
  _flattened ^= (s as unknown as number) | 0; // the result is kept so the conversion is not optimized away
}

/** Entry kinds. */
const EVENT = 0;
const LOST = 1;

export class EventQueue {
  private subs: Subscription[] = [];
  /** The event's JSON or row; for a LOST entry, its line. */
  private payloads: string[] = [];
  /** Type index of the event; LOST entries: -1. */
  private types: number[] = [];
  private kinds: number[] = [];
  private head = 0;

  /** Entries waiting (events and loss reports). */
  get length(): number {
    return this.payloads.length - this.head;
  }

  get empty(): boolean {
    return this.head === this.payloads.length;
  }

  push(sub: Subscription, payload: string, type: EventType): void {
    flatten(payload);
    this.subs.push(sub);
    this.payloads.push(payload);
    this.types.push(TYPE_INDEX.get(type)!);
    this.kinds.push(EVENT);
  }

  /** Reports `sub.lost` events missing at this point of the stream. */
  pushLost(sub: Subscription): void {
    this.subs.push(sub);
    this.payloads.push(lostLine(sub.id, sub.lost));
    this.types.push(-1);
    this.kinds.push(LOST);
  }

  /**
   * Takes whole notification lines from the front, about `maxBytes` of them (at least one
   * line). The events of a batch subscription in that stretch become `events.batch` lines
   * (split at its loss reports, which keep their place, and at EVENT_BATCH_MAX): each
   * subscription's stream keeps its order; the lines of different subscriptions interleave.
   */
  take(maxBytes: number): string {
    const { subs, payloads, kinds } = this;
    const end = payloads.length;
    let out = '';
    let bytes = 0;
    // Batch subscriptions with events gathered and not yet written, in first-seen order.
    const open: Subscription[] = [];
    const pending = new Map<Subscription, number[]>();
    const flush = (sub: Subscription) => {
      const idx = pending.get(sub);
      if (idx && idx.length > 0) {
        out += this.batchLine(sub, idx);
        idx.length = 0;
      }
    };
    let i = this.head;
    for (; i < end && (i === this.head || bytes < maxBytes); i++) {
      const sub = subs[i]!;
      const p = payloads[i]!;
      bytes += p.length + 1;
      if (!sub.batch) {
        out += kinds[i] === LOST ? p : `{"jsonrpc":"2.0","method":"${NOTIFICATIONS.event}","params":{"subscription":"${sub.id}","event":${p}}}\n`;
        continue;
      }
      if (kinds[i] === LOST) {
        flush(sub); // the events before the gap, then the gap
        out += p;
        continue;
      }
      let idx = pending.get(sub);
      if (!idx) {
        pending.set(sub, (idx = []));
        open.push(sub);
      }
      idx.push(i);
      if (idx.length >= EVENT_BATCH_MAX) flush(sub);
    }
    for (const sub of open) flush(sub);
    this.head = i;
    this.compact();
    return out;
  }

  /** One `events.batch` line: the events at `idx` (queue positions), all of `sub`. */
  private batchLine(sub: Subscription, idx: number[]): string {
    let events = this.payloads[idx[0]!]!;
    let seen = 1 << this.types[idx[0]!]!;
    for (let j = 1; j < idx.length; j++) {
      events += `,${this.payloads[idx[j]!]}`;
      seen |= 1 << this.types[idx[j]!]!;
    }
    if (sub.encoding !== 'row') {
      return `{"jsonrpc":"2.0","method":"${NOTIFICATIONS.batch}","params":{"subscription":"${sub.id}","encoding":"object","events":[${events}]}}\n`;
    }
    const fields: string[] = [];
    for (let t = 0; t < FIELDS_JSON.length; t++) if (seen & (1 << t)) fields.push(FIELDS_JSON[t]!);
    return `{"jsonrpc":"2.0","method":"${NOTIFICATIONS.batch}","params":{"subscription":"${sub.id}","encoding":"row","fields":{${fields.join(',')}},"events":[${events}]}}\n`;
  }

  /** Drops what was taken: all of it when the queue is empty, else once the taken part dominates. */
  private compact(): void {
    if (this.head === this.payloads.length) {
      this.clear();
    } else if (this.head > 4096 && this.head * 2 > this.payloads.length) {
      for (const a of [this.subs, this.payloads, this.types, this.kinds] as unknown[][]) a.splice(0, this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.subs = [];
    this.payloads = [];
    this.types = [];
    this.kinds = [];
    this.head = 0;
  }
}
