// SPDX-License-Identifier: Apache-2.0
// A connection's event notifications: the bounded queue of what its subscriptions are owed,
// and the lines written for it (contract/events.ts): `events.event` (one per event),
// `events.batch` (the queued events of one subscription in one message, as objects or as
// rows) and `events.lost` (at the place in the stream where events are missing).
//
// The queue holds each event already serialized (its JSON or its row, made once however many
// subscriptions take it) in parallel arrays read from a moving head: no object per event, and
// taking a chunk does not shift the whole array. Rows of events that can write their bytes
// (the monitor's connection and close records, BusEvent.rowInto) are written straight into
// the queue's byte store, each followed by a comma, so that consecutive rows of a
// subscription are one range of bytes: a batch copies them in one go, and the lines go to the
// socket as bytes (no string per row, no UTF-8 pass). Other events are kept as strings and
// encoded when their line is written.
import { EVENT_BATCH_MAX, EVENT_FIELDS, EVENT_TYPES, type EventEncoding, type EventType } from '../contract/events.js';
import { NOTIFICATIONS } from '../contract/methods.js';
import type { BusEvent } from '../events/bus.js';

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

/** Bytes kept free at the end of the store before a row is written into it (a row that
 * needs more is kept as a string). */
const ROW_ROOM = 16 * 1024;
const STORE_MIN = 256 * 1024;
const COMMA = 44;

/** Output buffers: this big at least, and this many kept for reuse per queue. */
const OUT_MIN = 128 * 1024;
const SPARE_MAX = 8;

/** A growable output buffer for the lines of one take() (a spare one when it is big enough). */
class Out {
  buf: Buffer;
  pos = 0;
  constructor(spare: Buffer | undefined, size: number) {
    this.buf = spare !== undefined && spare.length >= size ? spare : Buffer.allocUnsafe(Math.max(OUT_MIN, size));
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }
  /** A string that may hold any character (UTF-8). */
  text(s: string): void {
    this.ensure(s.length * 3);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  /** A string known to be ASCII (the JSON-RPC envelope, ids, field names). */
  ascii(s: string): void {
    this.ensure(s.length);
    this.pos += this.buf.write(s, this.pos, 'latin1');
  }
  bytes(from: Buffer, start: number, end: number): void {
    this.ensure(end - start);
    this.pos += from.copy(this.buf, this.pos, start, end);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class EventQueue {
  private subs: Subscription[] = [];
  /** The event's JSON or row; for a LOST entry, its line; null: the row is in the store. */
  private payloads: Array<string | null> = [];
  /** Type index of the event; LOST entries: -1. */
  private types: number[] = [];
  private kinds: number[] = [];
  /** Rows in the store: where each starts and ends (its comma included); others: 0, 0. */
  private starts: number[] = [];
  private ends: number[] = [];
  private head = 0;
  /** Rows written by their events (connection and close records), each followed by a comma. */
  private store: Buffer = Buffer.allocUnsafe(0);
  private storePos = 0;
  /**
   * Output buffers the socket has written, for the next take()s. A fresh buffer of this size
   * costs its page faults at every take: in bench/events --queue, copying 64 KiB of rows into
   * a new buffer took about 285 us here, into a reused one about 2 us.
   */
  private spare: Buffer[] = [];
  /** Rows that went into the store, and rows kept as strings (for tests and status). */
  rowsAsBytes = 0;
  rowsAsText = 0;
  /** Times queued rows moved to the start of their store (a backed-up queue), and to a bigger one. */
  storeMoves = 0;
  storeGrowths = 0;

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
    this.starts.push(0);
    this.ends.push(0);
  }

  /**
   * Queues the event in the form `sub` takes: a row subscription's row is written into the
   * store when the event can write its bytes, else kept as text like the other forms.
   */
  pushEvent(sub: Subscription, e: BusEvent): void {
    if (sub.encoding !== 'row') return this.push(sub, e.json(), e.type);
    if (e.rowInto !== undefined) {
      this.makeRoom();
      const end = e.rowInto(this.store, this.storePos);
      if (end >= 0) {
        this.store[end] = COMMA;
        this.subs.push(sub);
        this.payloads.push(null);
        this.types.push(TYPE_INDEX.get(e.type)!);
        this.kinds.push(EVENT);
        this.starts.push(this.storePos);
        this.ends.push(end + 1);
        this.storePos = end + 1;
        this.rowsAsBytes++;
        return;
      }
    }
    this.rowsAsText++;
    this.push(sub, e.row(), e.type);
  }

  /**
   * Keeps ROW_ROOM bytes free at the end of the store, in a bigger store when it is full.
   * During a publish the bytes of a store never move (an event that wrote its row into one
   * copies it from there for another subscription, records.ts): a store is only rewritten in
   * place by take(), between publishes (see compact()).
   */
  private makeRoom(): void {
    if (this.storePos + ROW_ROOM + 1 <= this.store.length) return;
    const from = this.firstLive();
    const next = Buffer.allocUnsafe(Math.max(STORE_MIN, 2 * (this.storePos - from + ROW_ROOM + 1)));
    this.moveLive(from, next);
    this.storeGrowths++;
  }

  /** Where the first row still queued starts (storePos: none). */
  private firstLive(): number {
    for (let i = this.head; i < this.payloads.length; i++) if (this.payloads[i] === null) return this.starts[i]!;
    return this.storePos;
  }

  /** Moves the rows from `from` on to the start of `to` (the store itself, or its successor). */
  private moveLive(from: number, to: Buffer): void {
    if (to === this.store) to.copyWithin(0, from, this.storePos);
    else this.store.copy(to, 0, from, this.storePos);
    for (let i = this.head; i < this.payloads.length; i++) {
      if (this.payloads[i] !== null) continue;
      this.starts[i]! -= from;
      this.ends[i]! -= from;
    }
    this.store = to;
    this.storePos -= from;
  }

  /** Reports `sub.lost` events missing at this point of the stream. */
  pushLost(sub: Subscription): void {
    this.subs.push(sub);
    this.payloads.push(lostLine(sub.id, sub.lost));
    this.types.push(-1);
    this.kinds.push(LOST);
    this.starts.push(0);
    this.ends.push(0);
  }

  /** Bytes (about: characters for text) an entry takes in a line. */
  private size(i: number): number {
    const p = this.payloads[i];
    return p === null ? this.ends[i]! - this.starts[i]! : p!.length + 1;
  }

  /**
   * Takes whole notification lines from the front, about `maxBytes` of them (at least one
   * line), as bytes. The events of a batch subscription in that stretch become
   * `events.batch` lines (split at its loss reports, which keep their place, and at
   * EVENT_BATCH_MAX): each subscription's stream keeps its order; the lines of different
   * subscriptions interleave.
   */
  take(maxBytes: number): Buffer {
    const { subs, payloads, kinds } = this;
    const end = payloads.length;
    let bytes = 0;
    let last = this.head;
    for (; last < end && (last === this.head || bytes < maxBytes); last++) bytes += this.size(last);
    const out = new Out(this.spare.pop(), bytes + 1024);
    // Batch subscriptions with events gathered and not yet written, in first-seen order.
    const open: Subscription[] = [];
    const pending = new Map<Subscription, number[]>();
    const flush = (sub: Subscription) => {
      const idx = pending.get(sub);
      if (idx && idx.length > 0) {
        this.batchLine(out, sub, idx);
        idx.length = 0;
      }
    };
    for (let i = this.head; i < last; i++) {
      const sub = subs[i]!;
      const p = payloads[i]!;
      if (!sub.batch) {
        if (kinds[i] === LOST) out.ascii(p);
        else {
          out.ascii(`{"jsonrpc":"2.0","method":"${NOTIFICATIONS.event}","params":{"subscription":"${sub.id}","event":`);
          out.text(p);
          out.ascii('}}\n');
        }
        continue;
      }
      if (kinds[i] === LOST) {
        flush(sub); // the events before the gap, then the gap
        out.ascii(p);
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
    this.head = last;
    this.compact();
    return out.done();
  }

  /** One `events.batch` line: the events at `idx` (queue positions), all of `sub`. */
  private batchLine(out: Out, sub: Subscription, idx: number[]): void {
    let seen = 0;
    for (let j = 0; j < idx.length; j++) seen |= 1 << this.types[idx[j]!]!;
    if (sub.encoding !== 'row') {
      out.ascii(`{"jsonrpc":"2.0","method":"${NOTIFICATIONS.batch}","params":{"subscription":"${sub.id}","encoding":"object","events":[`);
    } else {
      const fields: string[] = [];
      for (let t = 0; t < FIELDS_JSON.length; t++) if (seen & (1 << t)) fields.push(FIELDS_JSON[t]!);
      out.ascii(`{"jsonrpc":"2.0","method":"${NOTIFICATIONS.batch}","params":{"subscription":"${sub.id}","encoding":"row","fields":{${fields.join(',')}},"events":[`);
    }
    // Rows in the store that follow each other are one range (each ends in its comma).
    const { payloads, starts, ends, store } = this;
    let rs = -1;
    let re = -1;
    for (let j = 0; j < idx.length; j++) {
      const i = idx[j]!;
      const p = payloads[i];
      if (p === null) {
        if (starts[i] === re) {
          re = ends[i]!;
          continue;
        }
        if (rs >= 0) out.bytes(store, rs, re);
        rs = starts[i]!;
        re = ends[i]!;
        continue;
      }
      if (rs >= 0) {
        out.bytes(store, rs, re);
        rs = re = -1;
      }
      out.text(p!);
      out.ascii(',');
    }
    if (rs >= 0) out.bytes(store, rs, re);
    // Every event ended in a comma: the last one becomes the array's end.
    out.pos--;
    out.ascii(']}}\n');
  }

  /** Takes back a chunk take() returned, once nothing reads it any more (the socket wrote it). */
  recycle(chunk: Buffer): void {
    if (this.spare.length >= SPARE_MAX || chunk.byteOffset !== 0 || chunk.buffer.byteLength < OUT_MIN) return;
    this.spare.push(Buffer.from(chunk.buffer as ArrayBuffer));
  }

  /** Drops what was taken: all of it when the queue is empty, else once the taken part dominates. */
  private compact(): void {
    if (this.head === this.payloads.length) {
      this.clear();
    } else if (this.head > 4096 && this.head * 2 > this.payloads.length) {
      for (const a of [this.subs, this.payloads, this.types, this.kinds, this.starts, this.ends] as unknown[][]) a.splice(0, this.head);
      this.head = 0;
    }
    // A backed-up queue: once the store is nearly full, the rows still queued move to its
    // start when they take at most half of it, rather than into a new store (a fresh
    // multi-MiB buffer costs its page faults: 195 ms of a daemon profile at the maximum rate).
    if (!this.empty && this.storePos + 4 * ROW_ROOM > this.store.length) {
      const from = this.firstLive();
      if (from > 0 && 2 * (this.storePos - from) <= this.store.length) {
        this.moveLive(from, this.store);
        this.storeMoves++;
      }
    }
  }

  clear(): void {
    this.subs = [];
    this.payloads = [];
    this.types = [];
    this.kinds = [];
    this.starts = [];
    this.ends = [];
    this.head = 0;
    // The store's bytes are all taken: start over at its beginning. (take() runs between
    // publishes, never while an event may still copy its row from here: see makeRoom().)
    this.storePos = 0;
  }
}
