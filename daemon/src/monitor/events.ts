// SPDX-License-Identifier: Apache-2.0
// Ring-buffer records -> event objects (the shapes `ebpfmonctl events --json` prints),
// and the bus that hands them to subscribers. Decoding mirrors bpf/sockets.h and
// bpf/procs.h through the layouts in wire.ts.
import { AF_INET, formatIp } from '../util/ip.js';
import { PROTO_NAMES } from './flows.js';
import { cString, EV, EVENT_CLOSE, EVENT_CONN, EVENT_EXEC, EVENT_EXIT, EVENT_HDR, FLOW_KEY, HOW_KERNEL, HOW_NAMES, KERNEL_COMM, OWNER, ownedByProcess, type AttributedBy } from './wire.js';

export const EVENT_TYPES = ['connect', 'accept', 'close', 'exec', 'exit', 'lb'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

interface Base {
  time: string;
  pid: number | null;
  uid: number | null;
  comm: string | null;
}

/** The connection's 4-tuple and how its owner was learned. */
interface ConnBase extends Base {
  proto: string;
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  attributedBy: AttributedBy;
}

export interface ConnEvent extends ConnBase {
  type: 'connect' | 'accept';
  tid: number | null;
}

export interface CloseEvent extends ConnBase {
  type: 'close';
  /** A monitored interface carried the flow: the IP-layer counts below are its final counts. */
  flowSeen: boolean;
  interface: string | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  durationMs: number | null;
  /** TCP payload bytes, from the socket (any interface, loopback too). */
  payloadBytesSent: number;
  payloadBytesReceived: number;
  /** TCP state before close (`syn_sent` means the connection never succeeded). */
  previousState: string;
}

export interface ExecEvent extends Base {
  type: 'exec';
  ppid: number;
  gid: number;
  cgroupId: string;
  filename: string;
  args: string[];
  argsTruncated: boolean;
}

export interface ExitEvent extends Base {
  type: 'exit';
  ppid: number;
  exitCode: number;
  signal: number;
  durationMs: number | null;
}

/** The load balancer changed (a VIP or backend added, removed or drained, a health check
 * took a backend down or up, a drop rule...). `name` is one of daemon/src/lb/events.ts. */
export interface LbEvent extends Base {
  type: 'lb';
  pid: null;
  uid: null;
  comm: null;
  name: string;
  detail: Record<string, unknown>;
}

export type MonitorEvent = ConnEvent | CloseEvent | ExecEvent | ExitEvent | LbEvent;

const TCP_STATE_NAMES = ['', 'established', 'syn_sent', 'syn_recv', 'fin_wait1', 'fin_wait2', 'time_wait', 'closed', 'close_wait', 'last_ack', 'listen', 'closing', 'syn_recv'];

export interface DecodeContext {
  /** CLOCK_BOOTTIME ns -> wall-clock ms */
  toMs(ns: bigint): number;
  ifname(ifindex: number): string | null;
}

function key(v: DataView, b: Uint8Array, o: number) {
  const family = v.getUint8(o + FLOW_KEY.fields.family.offset);
  return {
    proto: PROTO_NAMES[v.getUint8(o + FLOW_KEY.fields.proto.offset)] ?? 'unknown',
    family: family === AF_INET ? ('ipv4' as const) : ('ipv6' as const),
    localAddr: formatIp(b, o + FLOW_KEY.fields.laddr.offset, family),
    localPort: v.getUint16(o + FLOW_KEY.fields.lport.offset, true),
    remoteAddr: formatIp(b, o + FLOW_KEY.fields.raddr.offset, family),
    remotePort: v.getUint16(o + FLOW_KEY.fields.rport.offset, true),
  };
}

function owner(v: DataView, b: Uint8Array, o: number) {
  const how = v.getUint8(o + OWNER.fields.how.offset);
  const owned = ownedByProcess(how);
  return {
    pid: owned ? v.getUint32(o + OWNER.fields.tgid.offset, true) : null,
    tid: owned ? v.getUint32(o + OWNER.fields.pid.offset, true) : null,
    uid: owned ? v.getUint32(o + OWNER.fields.uid.offset, true) : null,
    comm: owned ? cString(b, o + OWNER.fields.comm.offset, 16) : how === HOW_KERNEL ? KERNEL_COMM : null,
    attributedBy: HOW_NAMES[how] ?? ('none' as const),
  };
}

/** Splits the NUL-separated argument block (the last one may be cut short). */
function splitArgs(b: Uint8Array, off: number, len: number): string[] {
  const s = Buffer.from(b.buffer, b.byteOffset + off, len).toString('utf8');
  const parts = s.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

// Events come in bursts from the same milliseconds: one ISO string per millisecond.
let lastMs = NaN;
let lastIso = '';
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

/** Decodes one ring-buffer record; null for types this version does not know. */
export function decodeEvent(v: DataView, off: number, len: number, ctx: DecodeContext): MonitorEvent | null {
  if (len < EVENT_HDR.size) return null;
  const b = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const type = v.getUint16(off + EVENT_HDR.fields.type.offset, true);
  const time = isoTime(ctx.toMs(v.getBigUint64(off + EVENT_HDR.fields.ts_ns.offset, true)));
  switch (type) {
    case EV.CONNECT:
    case EV.ACCEPT: {
      if (len < EVENT_CONN.size) return null;
      const o = owner(v, b, off + EVENT_CONN.fields.owner.offset);
      const k = key(v, b, off + EVENT_CONN.fields.key.offset);
      // Written out rather than spread: one object shape, built in one go.
      return {
        type: type === EV.CONNECT ? 'connect' : 'accept', time,
        proto: k.proto, family: k.family, localAddr: k.localAddr, localPort: k.localPort, remoteAddr: k.remoteAddr, remotePort: k.remotePort,
        pid: o.pid, tid: o.tid, uid: o.uid, comm: o.comm, attributedBy: o.attributedBy,
      };
    }
    case EV.CLOSE: {
      if (len < EVENT_CLOSE.size) return null;
      const F = EVENT_CLOSE.fields;
      const o = owner(v, b, off + F.owner.offset);
      const k = key(v, b, off + F.key.offset);
      const seen = v.getUint8(off + F.flow_seen.offset) === 1;
      const u64 = (fo: number) => Number(v.getBigUint64(off + fo, true));
      return {
        type: 'close', time,
        proto: k.proto, family: k.family, localAddr: k.localAddr, localPort: k.localPort, remoteAddr: k.remoteAddr, remotePort: k.remotePort,
        pid: o.pid, uid: o.uid, comm: o.comm, attributedBy: o.attributedBy,
        flowSeen: seen,
        interface: seen ? ctx.ifname(v.getUint32(off + F.ifindex.offset, true)) : null,
        txBytes: u64(F.tx_bytes.offset), rxBytes: u64(F.rx_bytes.offset),
        txPackets: u64(F.tx_packets.offset), rxPackets: u64(F.rx_packets.offset),
        durationMs: seen ? u64(F.duration_ns.offset) / 1e6 : null,
        payloadBytesSent: u64(F.payload_sent.offset),
        payloadBytesReceived: u64(F.payload_received.offset),
        previousState: TCP_STATE_NAMES[v.getUint8(off + F.old_state.offset)] ?? 'unknown',
      };
    }
    case EV.EXEC: {
      if (len < EVENT_EXEC.size) return null;
      const F = EVENT_EXEC.fields;
      const fnLen = Math.min(v.getUint16(off + F.filename_len.offset, true), F.filename.size);
      const argsLen = Math.min(v.getUint16(off + F.args_len.offset, true), F.args.size);
      return {
        type: 'exec', time,
        pid: v.getUint32(off + F.tgid.offset, true),
        ppid: v.getUint32(off + F.ppid.offset, true),
        uid: v.getUint32(off + F.uid.offset, true),
        gid: v.getUint32(off + F.gid.offset, true),
        cgroupId: v.getBigUint64(off + F.cgroup_id.offset, true).toString(),
        comm: cString(b, off + F.comm.offset, 16),
        filename: Buffer.from(b.buffer, b.byteOffset + off + F.filename.offset, fnLen).toString('utf8'),
        args: splitArgs(b, off + F.args.offset, argsLen),
        argsTruncated: v.getUint8(off + F.args_truncated.offset) === 1,
      };
    }
    case EV.EXIT: {
      if (len < EVENT_EXIT.size) return null;
      const F = EVENT_EXIT.fields;
      const status = v.getUint32(off + F.exit_code.offset, true);
      const start = v.getBigUint64(off + F.start_ns.offset, true);
      const ts = v.getBigUint64(off + EVENT_HDR.fields.ts_ns.offset, true);
      return {
        type: 'exit', time,
        pid: v.getUint32(off + F.tgid.offset, true),
        ppid: v.getUint32(off + F.ppid.offset, true),
        uid: v.getUint32(off + F.uid.offset, true),
        comm: cString(b, off + F.comm.offset, 16),
        exitCode: (status >> 8) & 0xff,
        signal: status & 0x7f,
        durationMs: start && ts > start ? Number(ts - start) / 1e6 : null,
      };
    }
    default:
      return null;
  }
}

export type EventListener = (e: MonitorEvent) => void;

const TYPE_NAMES: Record<number, EventType> = { [EV.CONNECT]: 'connect', [EV.ACCEPT]: 'accept', [EV.CLOSE]: 'close', [EV.EXEC]: 'exec', [EV.EXIT]: 'exit' };

// The last event serialized: publish() hands one event to every subscriber in turn, so
// one slot is a full cache (a WeakMap cost more than it saved with one subscriber).
let lastSerialized: MonitorEvent | null = null;
let lastJson = '';
/** An event as JSON, computed once however many subscribers receive it. */
export function eventJson(e: MonitorEvent): string {
  if (e !== lastSerialized) {
    lastJson = JSON.stringify(e);
    lastSerialized = e;
  }
  return lastJson;
}

/** Fan-out of decoded events to subscribers. A listener that throws is dropped, not fatal. */
export class EventBus {
  /** Each listener and the event types it wants (all when not said). */
  private readonly listeners = new Map<EventListener, ReadonlySet<EventType> | null>();
  /** How many listeners want each type: records of a type nobody wants are only counted. */
  private readonly wanted: Record<EventType, number> = { connect: 0, accept: 0, close: 0, exec: 0, exit: 0, lb: 0 };
  readonly counts: Record<EventType, number> = { connect: 0, accept: 0, close: 0, exec: 0, exit: 0, lb: 0 };
  undecodable = 0;

  subscribe(fn: EventListener, types?: Iterable<EventType>): () => void {
    const set = types ? new Set(types) : null;
    this.listeners.set(fn, set);
    for (const t of EVENT_TYPES) if (!set || set.has(t)) this.wanted[t]++;
    return () => this.remove(fn);
  }

  private remove(fn: EventListener): void {
    if (!this.listeners.has(fn)) return;
    const set = this.listeners.get(fn)!;
    this.listeners.delete(fn);
    for (const t of EVENT_TYPES) if (!set || set.has(t)) this.wanted[t]--;
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  /** Counts a record of a type no listener wants, without decoding it. False for unknown
   * types and for types someone wants. */
  countOnly(type: number): boolean {
    const name = TYPE_NAMES[type];
    if (!name || this.wanted[name] > 0) return false;
    this.counts[name]++;
    return true;
  }

  publish(e: MonitorEvent): void {
    this.counts[e.type]++;
    for (const [fn, types] of this.listeners) {
      if (types && !types.has(e.type)) continue;
      try {
        fn(e);
      } catch {
        this.remove(fn);
      }
    }
  }
}
