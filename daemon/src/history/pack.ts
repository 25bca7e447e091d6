// SPDX-License-Identifier: Apache-2.0
// Observations from the event loop to the writer thread, packed: one fixed 128-byte row per
// observation in a transferable ArrayBuffer, strings (commands, paths, addresses, interface
// names) sent once and then referred to by number. Why not postMessage the objects: the
// structured clone of 10,000 close events a second cost more of the event loop than
// history's whole CPU budget (bench/history, "post to writer, drop"); packing costs a few
// Map lookups and DataView writes per flow, and the transfer is a pointer handover.
import type { FlowObservation, GoneObservation } from './types.js';
import type { HistoryFlow } from '../contract/history.js';

/** rollup: closes beyond the detail budget summed on the event loop (overbudget.ts): `first`
 * the earliest first-seen, `closed` the last close, `last` the number of closes, `now` the
 * first close (the record's time). */
/** gone: a flow left the flow table (collected, evicted): its 5-tuple, `first` when the
 * daemon found it gone. */
export const OP = { close: 1, listed: 2, listingEnd: 3, rollup: 4, gone: 5 } as const;
export type Op = (typeof OP)[keyof typeof OP];

export const ROW = 128;
/** Byte offsets of a row's fields (the writer's fast path reads them in place). */
export const F = {
  op: 0, family: 1, flags: 2, lport: 4, rport: 6, pid: 8, uid: 12,
  proto: 16, comm: 20, exe: 24, cgroup: 28, iface: 32, dir: 36, how: 40, laddr: 44, raddr: 48, name: 52, attrs: 56, unit: 60,
  first: 64, last: 72, closed: 80, tx: 88, rx: 96, txp: 104, rxp: 112, now: 120,
} as const;
export const NO_LPORT = 1;
export const NO_RPORT = 2;
export const NO_CLOSED = 4;
export const NO_PID = 8;
export const NO_UID = 16;
/** On listed and listingEnd rows: the listing has only the flows that changed since the
 * previous one (absence from it says nothing; OP.gone rows say what left the table). */
export const CHANGES_ONLY = 32;

/** FNV-1a over a string's UTF-16 units: the same number for the same text on both sides of
 * the thread boundary and in the accountant, computed once per string the packer sends. */
export function strHash(s: string | null | undefined): number {
  if (s === null || s === undefined) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A flow's 5-tuple as a number (the accountant's flowKey, hashed): equal tuples give equal
 * numbers; different ones rarely collide, and a collision only sends a flow down the slow
 * path. Ports: null is 65536. */
export function tupleHash(proto: number, laddr: number, lport: number, raddr: number, rport: number): number {
  let h = Math.imul(proto ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ laddr, 0xc2b2ae35);
  h = Math.imul(h ^ lport, 0x85ebca6b);
  h = Math.imul(h ^ raddr, 0xc2b2ae35);
  h = Math.imul(h ^ rport, 0x85ebca6b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Closes beyond the budget summed on the event loop (overbudget.ts), as addRollup() packs them. */
export interface RollupSums extends Pick<HistoryFlow, 'pid' | 'comm' | 'uid' | 'exe' | 'cgroupId' | 'unit'> {
  proto: string;
  family: 'ipv4' | 'ipv6';
  iface: string | null;
  direction: string | null;
  how: string | null;
  /** The remote endpoint, or null (beyond the endpoints kept per process: overbudget.ts):
   * its address, the service port (null: none kept) and which side that port is on (true:
   * local, the process accepted the connections; false: remote). */
  remoteAddr: string | null;
  port: number | null;
  inbound: boolean;
  remoteName: string | null;
  /** The first close's time (the record's id and minute), the earliest first-seen, the last close. */
  at: number;
  firstMs: number;
  endMs: number;
  conns: number;
  tx: number;
  rx: number;
  txp: number;
  rxp: number;
}

/** What one postMessage carries. `reset`: forget every string before adding `strings`. */
export interface PackedBatch {
  rows: ArrayBuffer;
  count: number;
  strings: string[];
  firstString: number;
  reset: boolean;
  /** When the event loop handed it over (wall ms): the writer's lag counts from here, so
   * batches waiting in the thread's message queue count too. */
  sentAt: number;
}

/** The largest buffer take() makes afresh (4,096 rows). */
const FRESH_MAX_BYTES = ROW * 4096;

/** Event-loop side: packs observations until take(). */
export class ObservationPacker {
  private buf = new ArrayBuffer(ROW * 256);
  private view = new DataView(this.buf);
  private count = 0;
  /** Rows that only mark a listing's end (no record comes of them). */
  private markers = 0;
  private readonly ids = new Map<string, number>();
  private strings: string[] = [];
  private firstString = 1;
  private reset = false;

  constructor(private readonly maxStrings = 65_536) {}

  /** Rows packed since the last take(). */
  get pending(): number {
    return this.count;
  }

  /** Of those, the rows of flows (closes, listed and gone flows, roll-ups): what status
   * counts as pending records. A listing's end marker is not one: counted, it kept
   * `records.pending` at 1 after every listing until the next hand-over. */
  get observations(): number {
    return this.count - this.markers;
  }

  private str(s: string | null | undefined): number {
    if (s === null || s === undefined) return 0;
    let id = this.ids.get(s);
    if (id === undefined) {
      id = this.ids.size + 1;
      this.ids.set(s, id);
      this.strings.push(s);
    }
    return id;
  }

  private row(): number {
    if ((this.count + 1) * ROW > this.buf.byteLength) {
      const next = new ArrayBuffer(this.buf.byteLength * 2);
      new Uint8Array(next).set(new Uint8Array(this.buf));
      this.buf = next;
      this.view = new DataView(next);
    }
    return this.count++ * ROW;
  }

  add(op: Op, o: FlowObservation, now: number, extraFlags = 0): void {
    const off = this.row(); // first: it may grow the buffer (a new view)
    const v = this.view;
    let flags = extraFlags;
    if (o.localPort === null) flags |= NO_LPORT;
    if (o.remotePort === null) flags |= NO_RPORT;
    if (o.closedMs === null) flags |= NO_CLOSED;
    if (o.pid === null) flags |= NO_PID;
    if (o.uid === null) flags |= NO_UID;
    v.setUint8(off + F.op, op);
    v.setUint8(off + F.family, o.family === 'ipv4' ? 4 : 6);
    v.setUint16(off + F.flags, flags, true);
    v.setUint16(off + F.lport, o.localPort ?? 0, true);
    v.setUint16(off + F.rport, o.remotePort ?? 0, true);
    v.setUint32(off + F.pid, o.pid ?? 0, true);
    v.setUint32(off + F.uid, o.uid ?? 0, true);
    v.setUint32(off + F.proto, this.str(o.proto), true);
    v.setUint32(off + F.comm, this.str(o.comm), true);
    v.setUint32(off + F.exe, this.str(o.exe), true);
    v.setUint32(off + F.cgroup, this.str(o.cgroupId), true);
    v.setUint32(off + F.iface, this.str(o.interface), true);
    v.setUint32(off + F.dir, this.str(o.direction), true);
    v.setUint32(off + F.how, this.str(o.attributedBy), true);
    v.setUint32(off + F.laddr, this.str(o.localAddr), true);
    v.setUint32(off + F.raddr, this.str(o.remoteAddr), true);
    v.setUint32(off + F.name, this.str(o.remoteName), true);
    v.setUint32(off + F.attrs, this.str(o.attrs), true);
    v.setUint32(off + F.unit, this.str(o.unit), true);
    v.setFloat64(off + F.first, o.firstMs, true);
    v.setFloat64(off + F.last, o.lastMs, true);
    v.setFloat64(off + F.closed, o.closedMs ?? 0, true);
    v.setFloat64(off + F.tx, o.txBytes, true);
    v.setFloat64(off + F.rx, o.rxBytes, true);
    v.setFloat64(off + F.txp, o.txPackets, true);
    v.setFloat64(off + F.rxp, o.rxPackets, true);
    v.setFloat64(off + F.now, now, true);
  }

  /** Closes beyond the budget summed by process, protocol, family, minute and remote endpoint
   * (OP.rollup): `raddr` the endpoint's address (0: none), its service port in `lport` or
   * `rport`, the other absent. */
  addRollup(s: RollupSums): void {
    const off = this.row();
    const v = this.view;
    const ports = s.port === null ? NO_LPORT | NO_RPORT : s.inbound ? NO_RPORT : NO_LPORT;
    v.setUint8(off + F.op, OP.rollup);
    v.setUint8(off + F.family, s.family === 'ipv4' ? 4 : 6);
    v.setUint16(off + F.flags, (s.pid === null ? NO_PID : 0) | (s.uid === null ? NO_UID : 0) | ports, true);
    v.setUint16(off + F.lport, s.inbound ? s.port ?? 0 : 0, true);
    v.setUint16(off + F.rport, s.inbound ? 0 : s.port ?? 0, true);
    v.setUint32(off + F.pid, s.pid ?? 0, true);
    v.setUint32(off + F.uid, s.uid ?? 0, true);
    v.setUint32(off + F.proto, this.str(s.proto), true);
    v.setUint32(off + F.comm, this.str(s.comm), true);
    v.setUint32(off + F.exe, this.str(s.exe), true);
    v.setUint32(off + F.cgroup, this.str(s.cgroupId), true);
    v.setUint32(off + F.unit, this.str(s.unit), true);
    v.setUint32(off + F.iface, this.str(s.iface), true);
    v.setUint32(off + F.dir, this.str(s.direction), true);
    v.setUint32(off + F.how, this.str(s.how), true);
    v.setUint32(off + F.laddr, 0, true);
    v.setUint32(off + F.raddr, this.str(s.remoteAddr), true);
    v.setUint32(off + F.name, this.str(s.remoteName), true);
    v.setUint32(off + F.attrs, 0, true);
    v.setFloat64(off + F.first, s.firstMs, true);
    v.setFloat64(off + F.last, s.conns, true);
    v.setFloat64(off + F.closed, s.endMs, true);
    v.setFloat64(off + F.tx, s.tx, true);
    v.setFloat64(off + F.rx, s.rx, true);
    v.setFloat64(off + F.txp, s.txp, true);
    v.setFloat64(off + F.rxp, s.rxp, true);
    v.setFloat64(off + F.now, s.at, true);
  }

  /** A listing's rows carry the listing's start as their time (`now`); this row says the
   * listing that began at `listingStart` is complete. */
  endListing(listingStart: number, now: number, changesOnly = false): void {
    const off = this.row();
    this.markers++;
    new Uint8Array(this.buf, off, ROW).fill(0);
    this.view.setUint8(off + F.op, OP.listingEnd);
    this.view.setUint16(off + F.flags, changesOnly ? CHANGES_ONLY : 0, true);
    this.view.setFloat64(off + F.first, listingStart, true);
    this.view.setFloat64(off + F.now, now, true);
  }

  /** A flow left the table (OP.gone): its 5-tuple, when it was found gone, and `now`. */
  addGone(g: GoneObservation, now: number): void {
    const off = this.row();
    const v = this.view;
    new Uint8Array(this.buf, off, ROW).fill(0);
    v.setUint8(off + F.op, OP.gone);
    v.setUint16(off + F.flags, (g.localPort === null ? NO_LPORT : 0) | (g.remotePort === null ? NO_RPORT : 0) | NO_CLOSED | NO_PID | NO_UID, true);
    v.setUint16(off + F.lport, g.localPort ?? 0, true);
    v.setUint16(off + F.rport, g.remotePort ?? 0, true);
    v.setUint32(off + F.proto, this.str(g.proto), true);
    v.setUint32(off + F.laddr, this.str(g.localAddr), true);
    v.setUint32(off + F.raddr, this.str(g.remoteAddr), true);
    v.setFloat64(off + F.first, g.goneAtMs, true);
    v.setFloat64(off + F.now, now, true);
  }

  /** Buffers the writer sent back (recycle()): packing goes on in one of them. */
  private readonly spare: ArrayBuffer[] = [];

  /** A buffer a batch was read from, back from the writer thread: reused instead of a new
   * one (a fresh 640 KB buffer each half second cost this VM 0.3-2.6 ms in page faults; a
   * copy of the rows, as take() made before, the same). */
  recycle(buf: ArrayBuffer): void {
    if (this.spare.length < 2 && buf.byteLength >= ROW * 256) this.spare.push(buf);
  }

  /** Everything packed since the last take(), ready to transfer (the packer's own buffer:
   * rows past `count` are not part of it); null when empty. */
  take(): PackedBatch | null {
    if (this.count === 0) return null;
    const rows = this.buf;
    // A spare the writer sent back, else a buffer no larger than FRESH_MAX_BYTES: one the
    // size of a listing's (several MiB) cost as many page faults, on the event loop, at
    // each hand-over until the spares came back (docs/benchmarks.md, "The stall's longest
    // tasks"); packing grows it when needed.
    this.buf = this.spare.pop() ?? new ArrayBuffer(Math.min(rows.byteLength, FRESH_MAX_BYTES));
    this.view = new DataView(this.buf);
    const b: PackedBatch = { rows, count: this.count, strings: this.strings, firstString: this.firstString, reset: this.reset, sentAt: Date.now() };
    this.count = 0;
    this.markers = 0;
    this.firstString += this.strings.length;
    this.strings = [];
    this.reset = false;
    // The table of strings grows with every new address: start over once it is large
    // (the writer forgets its copy at the same batch).
    if (this.ids.size > this.maxStrings) {
      this.ids.clear();
      this.firstString = 1;
      this.reset = true;
    }
    return b;
  }
}

export interface Unpacked {
  op: Op;
  now: number;
  /** listing start for listingEnd */
  obs: FlowObservation;
}

/** Writer side: the strings the packer sent so far, and rows back to observations. */
export class ObservationReader {
  /** The packer's strings by id (0: none). */
  strings: string[] = [''];
  /** strHash() of each string, by id. */
  hashes: number[] = [0];

  /** The whole table at once (a journal's `strings` record, journal.ts). */
  setTable(strings: readonly string[]): void {
    this.strings = [...strings];
    this.hashes = this.strings.map((s, i) => (i === 0 ? 0 : strHash(s)));
  }

  /** Takes the batch's new strings: call once per batch, before rows(). */
  load(b: PackedBatch): void {
    if (b.reset) {
      this.strings = [''];
      this.hashes = [0];
    }
    if (this.strings.length !== b.firstString) throw new Error(`string table out of step: have ${this.strings.length}, batch starts at ${b.firstString}`);
    for (const s of b.strings) {
      this.strings.push(s);
      this.hashes.push(strHash(s));
    }
  }

  /** One row as an observation (the slow path: the fast one reads fields in place). */
  at(v: DataView, off: number): Unpacked {
    const s = (o: number): string | null => {
      const id = v.getUint32(o, true);
      return id === 0 ? null : this.strings[id] ?? null;
    };
    const flags = v.getUint16(off + F.flags, true);
    const obs: FlowObservation = {
      proto: s(off + F.proto) ?? '',
      family: v.getUint8(off + F.family) === 4 ? 'ipv4' : 'ipv6',
      localAddr: s(off + F.laddr) ?? '',
      localPort: flags & NO_LPORT ? null : v.getUint16(off + F.lport, true),
      remoteAddr: s(off + F.raddr) ?? '',
      remotePort: flags & NO_RPORT ? null : v.getUint16(off + F.rport, true),
      interface: s(off + F.iface),
      direction: s(off + F.dir),
      attributedBy: s(off + F.how),
      pid: flags & NO_PID ? null : v.getUint32(off + F.pid, true),
      comm: s(off + F.comm),
      uid: flags & NO_UID ? null : v.getUint32(off + F.uid, true),
      exe: s(off + F.exe),
      cgroupId: s(off + F.cgroup),
      unit: s(off + F.unit),
      firstMs: v.getFloat64(off + F.first, true),
      lastMs: v.getFloat64(off + F.last, true),
      closedMs: flags & NO_CLOSED ? null : v.getFloat64(off + F.closed, true),
      txBytes: v.getFloat64(off + F.tx, true),
      rxBytes: v.getFloat64(off + F.rx, true),
      txPackets: v.getFloat64(off + F.txp, true),
      rxPackets: v.getFloat64(off + F.rxp, true),
      remoteName: s(off + F.name),
      attrs: s(off + F.attrs),
    };
    return { op: v.getUint8(off + F.op) as Op, now: v.getFloat64(off + F.now, true), obs };
  }

  *rows(b: PackedBatch): Generator<Unpacked> {
    const v = new DataView(b.rows);
    for (let i = 0; i < b.count; i++) yield this.at(v, i * ROW);
  }
}
