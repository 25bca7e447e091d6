// SPDX-License-Identifier: Apache-2.0
// Ring-buffer records -> events (contract/events.ts: the shapes `ebpfmonctl events --json`
// prints). Decoding mirrors bpf/sockets.h and bpf/procs.h through the layouts in wire.ts.
//
// Two forms of the same record: decodeEvent() builds the event object; encodeRow() writes
// the event's row (contract EVENT_FIELDS: a JSON array of its values) straight from the
// record's bytes, for subscribers that asked for rows. Both read every field through the
// same helpers, and test/unit/daemon/monitor/decoder.test.ts checks that the row is the
// object's values, field for field, for every record type.
//
// A third form, encodeRowInto(), writes the same row's UTF-8 bytes into a buffer (the
// subscriber queue's, rpc/events.ts) for connection and close records: no string per row,
// and the notification needs no UTF-8 pass when it goes to the socket. Every piece that may
// hold non-ASCII (comm, interface name, geo, the owner's names) is cached as bytes next to
// its JSON; the rest (addresses, times, numbers, fixed names) is ASCII.
//
// Connection events carry where the remote address is (`remoteGeo`, when geo is on: the
// lookup's JSON made once per answer) and every connection and process event its owner's
// identity (owners.ts, memoised per cgroup id), in both forms: neither sends an event off
// the row path.
import { AF_INET, formatIpAt } from '../net/ip.js';
import { protocolName } from '../net/protocols.js';
import { ATTRIBUTIONS, KERNEL_COMM, TCP_STATES } from '../contract/common.js';
import type { EventType, MonitorEvent } from '../contract/events.js';
import type { RemoteGeo } from '../contract/geo.js';
import type { CloseFacts } from '../events/bus.js';
import { NO_OWNER, type OwnerEntry, type OwnerMemo } from './owners.js';
import { putAscii, putBytes, putNsAsMs, putUint } from '../util/jsonbytes.js';
import { cString, EV, EVENT_CLOSE, EVENT_CONN, EVENT_EXEC, EVENT_EXIT, EVENT_HDR, FLOW_KEY, HOW_KERNEL, OWNER, ownedByProcess } from './wire.js';

export interface DecodeContext {
  /** The CLOCK_BOOTTIME ns (u64, little-endian) at `off` in `v` -> wall-clock ms. */
  toMsAt(v: DataView, off: number): number;
  ifname(ifindex: number): string | null;
  /** Where a remote address is (the geo service's cached lookup); absent or null: geo is off. */
  remoteGeo?(addr: string): RemoteGeo | null;
  /** Owners' identities by cgroup id; absent: identity fields are null (cgroupId is still given). */
  owners?: OwnerMemo;
  /** The cgroup id an exiting process had at its exec (the exit record carries none). */
  cgroupOfPid?(pid: number): string | null;
}

/** Each place's JSON, made once per answer (the geo service hands out one frozen object per
 * address it has cached, so this holds what its cache holds). */
const geoJsonCache = new WeakMap<RemoteGeo, string>();
const geoBytesCache = new WeakMap<RemoteGeo, Uint8Array>();
function geoOf(ctx: DecodeContext, addr: string): RemoteGeo | null {
  return ctx.remoteGeo ? ctx.remoteGeo(addr) : null;
}
function geoJson(g: RemoteGeo | null): string {
  if (g === null) return 'null';
  let j = geoJsonCache.get(g);
  if (j === undefined) {
    j = JSON.stringify(g);
    geoJsonCache.set(g, j);
  }
  return j;
}

const NULL_BYTES = Buffer.from('null');
function geoBytes(g: RemoteGeo | null): Uint8Array {
  if (g === null) return NULL_BYTES;
  let j = geoBytesCache.get(g);
  if (j === undefined) {
    j = Buffer.from(geoJson(g));
    geoBytesCache.set(g, j);
  }
  return j;
}

/** The owner of a connection record's socket (as readOwner read it: `w`). */
function connOwner(v: DataView, o: number, ctx: DecodeContext): OwnerEntry {
  if (w.pid === null) return NO_OWNER;
  const cg = u64(v, o + OWNER.fields.cgroup_id.offset);
  return ctx.owners ? ctx.owners.of(cg, w.pid) : cg === 0 ? NO_OWNER : bareOwner(cg);
}

/** Without an identity service: the cgroup id and nothing else (tests, tools). */
function bareOwner(cg: number): OwnerEntry {
  const owner = { ...NO_OWNER.owner, cgroupId: String(cg) };
  const row = `,"${owner.cgroupId}"${NO_OWNER.row.slice(5)}`;
  return { owner, row, rowBytes: Buffer.from(row), identity: NO_OWNER.identity, checkedMs: 0 };
}

function procOwner(ctx: DecodeContext, cgroupId: string | null, pid: number): OwnerEntry {
  if (cgroupId === null) return NO_OWNER;
  return ctx.owners ? ctx.owners.ofString(cgroupId, pid) : bareOwner(Number(cgroupId));
}

const TWO32 = 2 ** 32;
/** A u64 field as a number: rounded to the nearest double above 2^53, as Number(bigint) does,
 * without allocating a BigInt. */
function u64(v: DataView, o: number): number {
  return v.getUint32(o + 4, true) * TWO32 + v.getUint32(o, true);
}

const jsonOf = (s: string | null): string => JSON.stringify(s);
/** JSON strings of names from fixed tables, made once. */
const quoted = (names: readonly string[]): string[] => names.map(jsonOf);
const ATTRIBUTION_JSON = quoted(ATTRIBUTIONS);
const TCP_STATE_JSON = quoted(TCP_STATES);
const KERNEL_COMM_JSON = jsonOf(KERNEL_COMM);
const bytesOfAll = (jsons: readonly string[]): Uint8Array[] => jsons.map((j) => Buffer.from(j));
const ATTRIBUTION_BYTES = bytesOfAll(ATTRIBUTION_JSON);
const TCP_STATE_BYTES = bytesOfAll(TCP_STATE_JSON);
const UNKNOWN_STATE_BYTES = Buffer.from('"unknown"');
const KERNEL_COMM_BYTES = Buffer.from(KERNEL_COMM_JSON);

// Events come in bursts from the same milliseconds: one ISO string per millisecond, and the
// date and time up to the second once per second.
let lastMs = NaN;
let lastIso = '';
let lastSec = NaN;
let secPrefix = '';
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    const sec = Math.floor(ms / 1000);
    if (sec !== lastSec || !Number.isInteger(ms)) {
      lastIso = new Date(ms).toISOString();
      lastSec = sec;
      secPrefix = lastIso.slice(0, 20); // YYYY-MM-DDTHH:MM:SS.
    } else {
      const frac = ms - sec * 1000;
      lastIso = `${secPrefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
    }
    lastMs = ms;
  }
  return lastIso;
}

/** Recently formatted IPv4 addresses (a burst of events mostly names the same few hosts). */
const v4Cache = new Map<number, string>();
const V4_CACHE_MAX = 4096;
function ipAt(v: DataView, b: Uint8Array, o: number, family: number): string {
  if (family !== AF_INET) return formatIpAt(b, o, family);
  const n = v.getUint32(o, false);
  let s = v4Cache.get(n);
  if (s === undefined) {
    if (v4Cache.size >= V4_CACHE_MAX) v4Cache.clear();
    s = formatIpAt(b, o, family);
    v4Cache.set(n, s);
  }
  return s;
}

/** The record's bytes as a Uint8Array (one per ring mapping, not per record). */
let lastView: DataView | null = null;
let lastBytes: Uint8Array = new Uint8Array(0);
export function bytesOf(v: DataView): Uint8Array {
  if (v !== lastView) {
    lastBytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    lastView = v;
  }
  return lastBytes;
}

// --- the parts of a record -------------------------------------------------------------------
// The flow key and the owner are read into these scratch objects (no allocation per record);
// the forms below copy what they need out of them at once.

const k = { protocol: '' as string, ipv4: true, localAddr: '', localPort: 0, remoteAddr: '', remotePort: 0 };
function readKey(v: DataView, b: Uint8Array, o: number): void {
  const family = v.getUint8(o + FLOW_KEY.fields.family.offset);
  k.protocol = protocolName(v.getUint8(o + FLOW_KEY.fields.proto.offset));
  k.ipv4 = family === AF_INET;
  k.localAddr = ipAt(v, b, o + FLOW_KEY.fields.laddr.offset, family);
  k.localPort = v.getUint16(o + FLOW_KEY.fields.lport.offset, true);
  k.remoteAddr = ipAt(v, b, o + FLOW_KEY.fields.raddr.offset, family);
  k.remotePort = v.getUint16(o + FLOW_KEY.fields.rport.offset, true);
}

/**
 * Recently seen comms by their 16 bytes (a burst of events mostly comes from a few
 * programs): the string and its JSON, without decoding and quoting them again.
 */
interface CommEntry { a: number; b: number; c: number; d: number; str: string; json: string; bytes: Uint8Array }
const commCache = new Map<number, CommEntry>();
const COMM_CACHE_MAX = 1024;
let commJsonNow = 'null';
let commBytesNow: Uint8Array = NULL_BYTES;
function commAt(v: DataView, b: Uint8Array, o: number): string {
  const a = v.getInt32(o, true);
  const bb = v.getInt32(o + 4, true);
  const c = v.getInt32(o + 8, true);
  const d = v.getInt32(o + 12, true);
  const h = (Math.imul(a, 0x9e3779b1) ^ Math.imul(bb, 0x85ebca77) ^ Math.imul(c, 0xc2b2ae3d) ^ Math.imul(d, 0x27d4eb2f)) | 0;
  let e = commCache.get(h);
  if (e === undefined || e.a !== a || e.b !== bb || e.c !== c || e.d !== d) {
    if (commCache.size >= COMM_CACHE_MAX) commCache.clear();
    const str = cString(b, o, 16);
    const json = JSON.stringify(str);
    e = { a, b: bb, c, d, str, json, bytes: Buffer.from(json) };
    commCache.set(h, e);
  }
  commJsonNow = e.json;
  commBytesNow = e.bytes;
  return e.str;
}

const w = { how: 0, pid: null as number | null, tid: null as number | null, uid: null as number | null, comm: null as string | null };
function readOwner(v: DataView, b: Uint8Array, o: number): void {
  const how = v.getUint8(o + OWNER.fields.how.offset);
  const owned = ownedByProcess(how);
  w.how = how;
  w.pid = owned ? v.getUint32(o + OWNER.fields.tgid.offset, true) : null;
  w.tid = owned ? v.getUint32(o + OWNER.fields.pid.offset, true) : null;
  w.uid = owned ? v.getUint32(o + OWNER.fields.uid.offset, true) : null;
  w.comm = owned ? commAt(v, b, o + OWNER.fields.comm.offset) : how === HOW_KERNEL ? KERNEL_COMM : null;
}
const attributedBy = (how: number) => ATTRIBUTIONS[how] ?? ('none' as const);
const attributedByJson = (how: number) => ATTRIBUTION_JSON[how] ?? ATTRIBUTION_JSON[0]!;
/** The owner's comm (as readOwner read it) as JSON. */
const commJson = (): string => (w.comm === null ? 'null' : w.how === HOW_KERNEL ? KERNEL_COMM_JSON : commJsonNow);
const commBytes = (): Uint8Array => (w.comm === null ? NULL_BYTES : w.how === HOW_KERNEL ? KERNEL_COMM_BYTES : commBytesNow);

/** Interface names as JSON, by ifindex, while the name stays the same. */
const ifnameJsonCache = new Map<number, { name: string | null; json: string; bytes: Uint8Array }>();
function ifnameEntry(ctx: DecodeContext, ifindex: number): { json: string; bytes: Uint8Array } {
  const name = ctx.ifname(ifindex);
  let e = ifnameJsonCache.get(ifindex);
  if (e === undefined || e.name !== name) {
    if (ifnameJsonCache.size >= 1024) ifnameJsonCache.clear();
    const json = jsonOf(name);
    e = { name, json, bytes: Buffer.from(json) };
    ifnameJsonCache.set(ifindex, e);
  }
  return e;
}
const ifnameJson = (ctx: DecodeContext, ifindex: number): string => ifnameEntry(ctx, ifindex).json;

/** Splits the NUL-separated argument block (the last one may be cut short). */
function splitArgs(b: Uint8Array, off: number, len: number): string[] {
  const s = Buffer.from(b.buffer, b.byteOffset + off, len).toString('utf8');
  const parts = s.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

/** The record type's length requirement, or 0 for types this version does not know. */
function minLength(type: number): number {
  switch (type) {
    case EV.CONNECT:
    case EV.ACCEPT:
      return EVENT_CONN.size;
    case EV.CLOSE:
      return EVENT_CLOSE.size;
    case EV.EXEC:
      return EVENT_EXEC.size;
    case EV.EXIT:
      return EVENT_EXIT.size;
    default:
      return 0;
  }
}

/** True when the record is one decodeEvent()/encodeRow() can read. */
export function decodable(v: DataView, off: number, len: number): boolean {
  if (len < EVENT_HDR.size) return false;
  const min = minLength(v.getUint16(off + EVENT_HDR.fields.type.offset, true));
  return min > 0 && len >= min;
}

function atOf(v: DataView, off: number, ctx: DecodeContext): string {
  return isoTime(ctx.toMsAt(v, off + EVENT_HDR.fields.ts_ns.offset));
}

function exitDurationMs(v: DataView, off: number): number | null {
  const start = v.getBigUint64(off + EVENT_EXIT.fields.start_ns.offset, true);
  const ts = v.getBigUint64(off + EVENT_HDR.fields.ts_ns.offset, true);
  return start && ts > start ? Number(ts - start) / 1e6 : null;
}

/** A close record's key, owner and counts as the event names them (decodeEvent() spreads
 * them into the close event; decodeCloseFacts() adds the time). */
function closeCore(v: DataView, off: number, ctx: DecodeContext): CloseCore {
  return fillCloseCore(v, off, ctx, emptyCore());
}

type CloseCore = Omit<CloseFacts, 'atMs'>;

/** Every field closeCore() gives, in its order (one object shape for every fill). */
const emptyCore = (): CloseCore => ({
  protocol: 'tcp', family: 'ipv4', localAddr: '', localPort: 0, remoteAddr: '', remotePort: 0,
  pid: null, uid: null, comm: null, attributedBy: 'none', flowSeen: false, interface: null,
  txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, durationMs: null,
});

function fillCloseCore<T extends CloseCore>(v: DataView, off: number, ctx: DecodeContext, o: T): T {
  const F = EVENT_CLOSE.fields;
  const b = bytesOf(v);
  readOwner(v, b, off + F.owner.offset);
  readKey(v, b, off + F.key.offset);
  const seen = v.getUint8(off + F.flow_seen.offset) === 1;
  o.protocol = k.protocol;
  o.family = k.ipv4 ? 'ipv4' : 'ipv6';
  o.localAddr = k.localAddr;
  o.localPort = k.localPort;
  o.remoteAddr = k.remoteAddr;
  o.remotePort = k.remotePort;
  o.pid = w.pid;
  o.uid = w.uid;
  o.comm = w.comm;
  o.attributedBy = attributedBy(w.how);
  o.flowSeen = seen;
  o.interface = seen ? ctx.ifname(v.getUint32(off + F.ifindex.offset, true)) : null;
  o.txBytes = u64(v, off + F.tx_bytes.offset);
  o.rxBytes = u64(v, off + F.rx_bytes.offset);
  o.txPackets = u64(v, off + F.tx_packets.offset);
  o.rxPackets = u64(v, off + F.rx_packets.offset);
  o.durationMs = seen ? u64(v, off + F.duration_ns.offset) / 1e6 : null;
  return o;
}

/** A CloseFacts to fill again and again (decodeCloseFacts' `into`). */
export function emptyCloseFacts(): CloseFacts {
  return { ...emptyCore(), atMs: 0 };
}

/**
 * A close record's facts that history records, as decodeEvent() would give them
 * (closeFactsOf(decodeEvent(...)): test/unit/daemon/monitor/decoder.test.ts), read without
 * building the event: no remote place, owner identity, ISO time, payload counts or previous
 * state. Null when the record is not a readable close. `into` (emptyCloseFacts()): filled
 * and returned, no object per close.
 */
export function decodeCloseFacts(v: DataView, off: number, len: number, ctx: DecodeContext, into?: CloseFacts): CloseFacts | null {
  if (!decodable(v, off, len) || v.getUint16(off + EVENT_HDR.fields.type.offset, true) !== EV.CLOSE) return null;
  const o = fillCloseCore(v, off, ctx, into ?? emptyCloseFacts());
  o.atMs = ctx.toMsAt(v, off + EVENT_HDR.fields.ts_ns.offset);
  return o;
}

/** Decodes one ring-buffer record; null for types this version does not know. */
export function decodeEvent(v: DataView, off: number, len: number, ctx: DecodeContext): MonitorEvent | null {
  if (!decodable(v, off, len)) return null;
  const b = bytesOf(v);
  const type = v.getUint16(off + EVENT_HDR.fields.type.offset, true);
  const at = atOf(v, off, ctx);
  switch (type) {
    case EV.CONNECT:
    case EV.ACCEPT: {
      readOwner(v, b, off + EVENT_CONN.fields.owner.offset);
      readKey(v, b, off + EVENT_CONN.fields.key.offset);
      const o = connOwner(v, off + EVENT_CONN.fields.owner.offset, ctx).owner;
      // Written out rather than spread: one object shape, built in one go.
      return {
        type: type === EV.CONNECT ? 'connect' : 'accept', at,
        protocol: k.protocol, family: k.ipv4 ? 'ipv4' : 'ipv6', localAddr: k.localAddr, localPort: k.localPort, remoteAddr: k.remoteAddr, remotePort: k.remotePort,
        pid: w.pid, tid: w.tid, uid: w.uid, comm: w.comm, attributedBy: attributedBy(w.how),
        remoteGeo: geoOf(ctx, k.remoteAddr),
        cgroupId: o.cgroupId, cgroupPath: o.cgroupPath, unit: o.unit, userUnit: o.userUnit, slice: o.slice, container: o.container, app: o.app,
      };
    }
    case EV.CLOSE: {
      const F = EVENT_CLOSE.fields;
      const core = closeCore(v, off, ctx);
      const o = connOwner(v, off + F.owner.offset, ctx).owner;
      return {
        type: 'close', at,
        ...core,
        payloadBytesSent: u64(v, off + F.payload_sent.offset),
        payloadBytesReceived: u64(v, off + F.payload_received.offset),
        previousState: TCP_STATES[v.getUint8(off + F.old_state.offset)] ?? 'unknown',
        remoteGeo: geoOf(ctx, core.remoteAddr),
        cgroupId: o.cgroupId, cgroupPath: o.cgroupPath, unit: o.unit, userUnit: o.userUnit, slice: o.slice, container: o.container, app: o.app,
      };
    }
    case EV.EXEC: {
      const F = EVENT_EXEC.fields;
      const fnLen = Math.min(v.getUint16(off + F.filename_len.offset, true), F.filename.size);
      const argsLen = Math.min(v.getUint16(off + F.args_len.offset, true), F.args.size);
      const pid = v.getUint32(off + F.tgid.offset, true);
      const cgroupId = v.getBigUint64(off + F.cgroup_id.offset, true).toString();
      const o = procOwner(ctx, cgroupId, pid).owner;
      return {
        type: 'exec', at,
        pid,
        ppid: v.getUint32(off + F.ppid.offset, true),
        uid: v.getUint32(off + F.uid.offset, true),
        gid: v.getUint32(off + F.gid.offset, true),
        cgroupId,
        comm: cString(b, off + F.comm.offset, 16),
        filename: Buffer.from(b.buffer, b.byteOffset + off + F.filename.offset, fnLen).toString('utf8'),
        args: splitArgs(b, off + F.args.offset, argsLen),
        argsTruncated: v.getUint8(off + F.args_truncated.offset) === 1,
        cgroupPath: o.cgroupPath, unit: o.unit, userUnit: o.userUnit, slice: o.slice, container: o.container, app: o.app,
      };
    }
    case EV.EXIT: {
      const F = EVENT_EXIT.fields;
      const status = v.getUint32(off + F.exit_code.offset, true);
      const pid = v.getUint32(off + F.tgid.offset, true);
      const o = procOwner(ctx, ctx.cgroupOfPid?.(pid) ?? null, pid).owner;
      return {
        type: 'exit', at,
        pid,
        ppid: v.getUint32(off + F.ppid.offset, true),
        uid: v.getUint32(off + F.uid.offset, true),
        comm: cString(b, off + F.comm.offset, 16),
        exitCode: (status >> 8) & 0xff,
        signal: status & 0x7f,
        durationMs: exitDurationMs(v, off),
        cgroupId: o.cgroupId, cgroupPath: o.cgroupPath, unit: o.unit, userUnit: o.userUnit, slice: o.slice, container: o.container, app: o.app,
      };
    }
    default:
      return null;
  }
}

/**
 * The record's event as a row (contract EVENT_FIELDS order), built from the bytes without an
 * event object; null for types this version does not know. Connection and close events are
 * written out field by field (they are nearly every event at high rates); exec and exit,
 * rare, go through the object.
 */
export function encodeRow(v: DataView, off: number, len: number, ctx: DecodeContext): string | null {
  if (!decodable(v, off, len)) return null;
  const b = bytesOf(v);
  const type = v.getUint16(off + EVENT_HDR.fields.type.offset, true);
  switch (type) {
    case EV.CONNECT:
    case EV.ACCEPT: {
      const at = atOf(v, off, ctx);
      readOwner(v, b, off + EVENT_CONN.fields.owner.offset);
      readKey(v, b, off + EVENT_CONN.fields.key.offset);
      const owner = connOwner(v, off + EVENT_CONN.fields.owner.offset, ctx).row;
      return `[${type === EV.CONNECT ? '"connect"' : '"accept"'},"${at}",${w.pid},${w.tid},${w.uid},${commJson()},"${k.protocol}",${k.ipv4 ? '"ipv4"' : '"ipv6"'},` +
        `"${k.localAddr}",${k.localPort},"${k.remoteAddr}",${k.remotePort},${attributedByJson(w.how)},${geoJson(geoOf(ctx, k.remoteAddr))}${owner}]`;
    }
    case EV.CLOSE: {
      const F = EVENT_CLOSE.fields;
      const at = atOf(v, off, ctx);
      readOwner(v, b, off + F.owner.offset);
      readKey(v, b, off + F.key.offset);
      const seen = v.getUint8(off + F.flow_seen.offset) === 1;
      const state = TCP_STATE_JSON[v.getUint8(off + F.old_state.offset)] ?? '"unknown"';
      const owner = connOwner(v, off + F.owner.offset, ctx).row;
      return `["close","${at}",${w.pid},${w.uid},${commJson()},"${k.protocol}",${k.ipv4 ? '"ipv4"' : '"ipv6"'},` +
        `"${k.localAddr}",${k.localPort},"${k.remoteAddr}",${k.remotePort},${attributedByJson(w.how)},` +
        `${seen},${seen ? ifnameJson(ctx, v.getUint32(off + F.ifindex.offset, true)) : 'null'},` +
        `${u64(v, off + F.tx_bytes.offset)},${u64(v, off + F.rx_bytes.offset)},${u64(v, off + F.tx_packets.offset)},${u64(v, off + F.rx_packets.offset)},` +
        `${seen ? u64(v, off + F.duration_ns.offset) / 1e6 : null},${u64(v, off + F.payload_sent.offset)},${u64(v, off + F.payload_received.offset)},${state},` +
        `${geoJson(geoOf(ctx, k.remoteAddr))}${owner}]`;
    }
    default: {
      const e = decodeEvent(v, off, len, ctx);
      return e && rowOf(e);
    }
  }
}

// The ISO time of the last record written as bytes (records come in bursts from the same
// millisecond: isoTime() hands out the same string then).
let atBytesFor = '';
let atBytes: Uint8Array = new Uint8Array(0);
function putAt(d: Uint8Array, p: number, at: string): number {
  if (at !== atBytesFor) {
    atBytes = Buffer.from(at, 'latin1');
    atBytesFor = at;
  }
  return putBytes(d, p, atBytes);
}

/** Room a connection or close row needs besides its variable pieces (numbers, addresses,
 * names from fixed tables and the punctuation: about 420 bytes at most). */
const ROW_FIXED_MAX = 640;

/**
 * encodeRow()'s row as UTF-8 bytes, written into `d` from `p` for connection and close
 * records (the types that come at high rates). Returns the position after the row, or -1
 * when it did not write it: another record type (use encodeRow()), or not enough room in
 * `d` after `p` (nothing written past what fits).
 */
export function encodeRowInto(v: DataView, off: number, len: number, ctx: DecodeContext, d: Uint8Array, p: number): number {
  if (!decodable(v, off, len)) return -1;
  const type = v.getUint16(off + EVENT_HDR.fields.type.offset, true);
  const close = type === EV.CLOSE;
  if (!close && type !== EV.CONNECT && type !== EV.ACCEPT) return -1;
  const b = bytesOf(v);
  const F = EVENT_CLOSE.fields;
  const at = atOf(v, off, ctx);
  const ownerAt = off + (close ? F.owner.offset : EVENT_CONN.fields.owner.offset);
  readOwner(v, b, ownerAt);
  readKey(v, b, off + (close ? F.key.offset : EVENT_CONN.fields.key.offset));
  const owner = connOwner(v, ownerAt, ctx).rowBytes;
  const comm = commBytes();
  const geo = geoBytes(geoOf(ctx, k.remoteAddr));
  const seen = close && v.getUint8(off + F.flow_seen.offset) === 1;
  const ifname = seen ? ifnameEntry(ctx, v.getUint32(off + F.ifindex.offset, true)).bytes : NULL_BYTES;
  if (p + ROW_FIXED_MAX + owner.length + comm.length + geo.length + ifname.length > d.length) return -1;
  // ["close","<at>",pid,[tid,]uid,comm,"proto","family","laddr",lport,"raddr",rport,"by",
  p = putAscii(d, p, close ? '["close","' : type === EV.CONNECT ? '["connect","' : '["accept","');
  p = putAt(d, p, at);
  d[p++] = 34; // "
  d[p++] = 44; // ,
  p = putNullableUint(d, p, w.pid);
  if (!close) p = putNullableUint(d, p, w.tid);
  p = putNullableUint(d, p, w.uid);
  p = putBytes(d, p, comm);
  d[p++] = 44;
  d[p++] = 34;
  p = putAscii(d, p, k.protocol);
  p = putAscii(d, p, k.ipv4 ? '","ipv4","' : '","ipv6","');
  p = putAscii(d, p, k.localAddr);
  d[p++] = 34;
  d[p++] = 44;
  p = putUint(d, p, k.localPort);
  d[p++] = 44;
  d[p++] = 34;
  p = putAscii(d, p, k.remoteAddr);
  d[p++] = 34;
  d[p++] = 44;
  p = putUint(d, p, k.remotePort);
  d[p++] = 44;
  p = putBytes(d, p, ATTRIBUTION_BYTES[w.how] ?? ATTRIBUTION_BYTES[0]!);
  d[p++] = 44;
  if (close) {
    // flowSeen,interface,tx,rx,txPackets,rxPackets,durationMs,sent,received,"state",
    p = putAscii(d, p, seen ? 'true,' : 'false,');
    p = putBytes(d, p, ifname);
    d[p++] = 44;
    for (const f of CLOSE_COUNTERS_1) {
      p = putUint(d, p, u64(v, off + f));
      d[p++] = 44;
    }
    if (seen) p = putNsAsMs(d, p, u64(v, off + F.duration_ns.offset));
    else p = putAscii(d, p, 'null');
    d[p++] = 44;
    for (const f of CLOSE_COUNTERS_2) {
      p = putUint(d, p, u64(v, off + f));
      d[p++] = 44;
    }
    p = putBytes(d, p, TCP_STATE_BYTES[v.getUint8(off + F.old_state.offset)] ?? UNKNOWN_STATE_BYTES);
    d[p++] = 44;
  }
  p = putBytes(d, p, geo);
  p = putBytes(d, p, owner);
  d[p++] = 93; // ]
  return p;
}

const CLOSE_COUNTERS_1 = [EVENT_CLOSE.fields.tx_bytes.offset, EVENT_CLOSE.fields.rx_bytes.offset, EVENT_CLOSE.fields.tx_packets.offset, EVENT_CLOSE.fields.rx_packets.offset];
const CLOSE_COUNTERS_2 = [EVENT_CLOSE.fields.payload_sent.offset, EVENT_CLOSE.fields.payload_received.offset];

function putNullableUint(d: Uint8Array, p: number, n: number | null): number {
  p = n === null ? putAscii(d, p, 'null') : putUint(d, p, n);
  d[p++] = 44;
  return p;
}

/** Exec and exit rows from their objects (EVENT_FIELDS order, as events/bus.ts eventRow). */
function rowOf(e: MonitorEvent): string {
  switch (e.type) {
    case 'exec':
      return JSON.stringify([e.type, e.at, e.pid, e.ppid, e.uid, e.gid, e.cgroupId, e.comm, e.filename, e.args, e.argsTruncated, e.cgroupPath, e.unit, e.userUnit, e.slice, e.container, e.app]);
    case 'exit':
      return JSON.stringify([e.type, e.at, e.pid, e.ppid, e.uid, e.comm, e.exitCode, e.signal, e.durationMs, e.cgroupId, e.cgroupPath, e.unit, e.userUnit, e.slice, e.container, e.app]);
    default:
      throw new Error(`no row form for ${e.type} records`);
  }
}

/**
 * The owner of a record (its identity, for the events filter) without decoding the rest:
 * the socket's owner for connection records, the process for exec and exit records.
 */
export function recordOwner(v: DataView, off: number, recordType: number, ctx: DecodeContext): OwnerEntry {
  const o = ownerOffset(recordType);
  if (o !== null) {
    if (!ownedByProcess(v.getUint8(off + o + OWNER.fields.how.offset))) return NO_OWNER;
    const cg = u64(v, off + o + OWNER.fields.cgroup_id.offset);
    const pid = v.getUint32(off + o + OWNER.fields.tgid.offset, true);
    return ctx.owners ? ctx.owners.of(cg, pid) : cg === 0 ? NO_OWNER : bareOwner(cg);
  }
  if (recordType === EV.EXEC) {
    const cg = u64(v, off + EVENT_EXEC.fields.cgroup_id.offset);
    const pid = v.getUint32(off + EVENT_EXEC.fields.tgid.offset, true);
    return ctx.owners ? ctx.owners.of(cg, pid) : cg === 0 ? NO_OWNER : bareOwner(cg);
  }
  const pid = v.getUint32(off + EVENT_EXIT.fields.tgid.offset, true);
  return procOwner(ctx, ctx.cgroupOfPid?.(pid) ?? null, pid);
}

/** Offset of the owner in connection and close records (null for other types). */
export function ownerOffset(type: number): number | null {
  return type === EV.CLOSE ? EVENT_CLOSE.fields.owner.offset : type === EV.CONNECT || type === EV.ACCEPT ? EVENT_CONN.fields.owner.offset : null;
}

/** The event type of a ring-buffer record type, without decoding it. */
export function recordEventType(type: number): EventType | undefined {
  return RECORD_TYPES[type];
}

const RECORD_TYPES: Record<number, EventType> = { [EV.CONNECT]: 'connect', [EV.ACCEPT]: 'accept', [EV.CLOSE]: 'close', [EV.EXEC]: 'exec', [EV.EXIT]: 'exit' };
