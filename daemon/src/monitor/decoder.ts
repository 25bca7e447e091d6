// SPDX-License-Identifier: Apache-2.0
// Ring-buffer records -> events (contract/events.ts: the shapes `ebpfmonctl events --json`
// prints). Decoding mirrors bpf/sockets.h and bpf/procs.h through the layouts in wire.ts.
import { AF_INET, formatIpAt } from '../net/ip.js';
import { protocolName } from '../net/protocols.js';
import { ATTRIBUTIONS, KERNEL_COMM, TCP_STATES } from '../contract/common.js';
import type { EventType, MonitorEvent } from '../contract/events.js';
import { cString, EV, EVENT_CLOSE, EVENT_CONN, EVENT_EXEC, EVENT_EXIT, EVENT_HDR, FLOW_KEY, HOW_KERNEL, OWNER, ownedByProcess } from './wire.js';

export interface DecodeContext {
  /** CLOCK_BOOTTIME ns -> wall-clock ms */
  toMs(ns: bigint): number;
  ifname(ifindex: number): string | null;
}

function key(v: DataView, b: Uint8Array, o: number) {
  const family = v.getUint8(o + FLOW_KEY.fields.family.offset);
  return {
    protocol: protocolName(v.getUint8(o + FLOW_KEY.fields.proto.offset)),
    family: family === AF_INET ? ('ipv4' as const) : ('ipv6' as const),
    localAddr: formatIpAt(b, o + FLOW_KEY.fields.laddr.offset, family),
    localPort: v.getUint16(o + FLOW_KEY.fields.lport.offset, true),
    remoteAddr: formatIpAt(b, o + FLOW_KEY.fields.raddr.offset, family),
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
    attributedBy: ATTRIBUTIONS[how] ?? ('none' as const),
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
  const at = isoTime(ctx.toMs(v.getBigUint64(off + EVENT_HDR.fields.ts_ns.offset, true)));
  switch (type) {
    case EV.CONNECT:
    case EV.ACCEPT: {
      if (len < EVENT_CONN.size) return null;
      const o = owner(v, b, off + EVENT_CONN.fields.owner.offset);
      const k = key(v, b, off + EVENT_CONN.fields.key.offset);
      // Written out rather than spread: one object shape, built in one go.
      return {
        type: type === EV.CONNECT ? 'connect' : 'accept', at,
        protocol: k.protocol, family: k.family, localAddr: k.localAddr, localPort: k.localPort, remoteAddr: k.remoteAddr, remotePort: k.remotePort,
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
        type: 'close', at,
        protocol: k.protocol, family: k.family, localAddr: k.localAddr, localPort: k.localPort, remoteAddr: k.remoteAddr, remotePort: k.remotePort,
        pid: o.pid, uid: o.uid, comm: o.comm, attributedBy: o.attributedBy,
        flowSeen: seen,
        interface: seen ? ctx.ifname(v.getUint32(off + F.ifindex.offset, true)) : null,
        txBytes: u64(F.tx_bytes.offset), rxBytes: u64(F.rx_bytes.offset),
        txPackets: u64(F.tx_packets.offset), rxPackets: u64(F.rx_packets.offset),
        durationMs: seen ? u64(F.duration_ns.offset) / 1e6 : null,
        payloadBytesSent: u64(F.payload_sent.offset),
        payloadBytesReceived: u64(F.payload_received.offset),
        previousState: TCP_STATES[v.getUint8(off + F.old_state.offset)] ?? 'unknown',
      };
    }
    case EV.EXEC: {
      if (len < EVENT_EXEC.size) return null;
      const F = EVENT_EXEC.fields;
      const fnLen = Math.min(v.getUint16(off + F.filename_len.offset, true), F.filename.size);
      const argsLen = Math.min(v.getUint16(off + F.args_len.offset, true), F.args.size);
      return {
        type: 'exec', at,
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
        type: 'exit', at,
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

/** The event type of a ring-buffer record type, without decoding it. */
export function recordEventType(type: number): EventType | undefined {
  return RECORD_TYPES[type];
}

const RECORD_TYPES: Record<number, EventType> = { [EV.CONNECT]: 'connect', [EV.ACCEPT]: 'accept', [EV.CLOSE]: 'close', [EV.EXEC]: 'exec', [EV.EXIT]: 'exit' };
