// SPDX-License-Identifier: Apache-2.0
// TypeScript mirror of bpf/l7.h (checked against the objects' BTF by
// test/unit/daemon/l7/layout.test.ts) and the record decoders. Decoded records hold a copy of
// the payload bytes; they are parsed and dropped, never logged.
import { field as f, type StructSpec } from '../bpf/layout.js';
import { AF_INET, formatIpAt } from '../net/ip.js';
import { protocolName } from '../net/protocols.js';
import type { Family, ProtocolName } from '../contract/common.js';

export const EV_L7 = 16;
export const EV_SSL = 17;

export const CFG_L7_DNS = 1 << 1;
export const CFG_L7_HTTP = 1 << 2;
export const CFG_L7_TLS = 1 << 3;

export const L7_KIND = { dns: 2, http: 3, tls: 4 } as const;
export const L7_F_SKIPPED = 1 << 0;
export const L7_F_TAP = 1 << 1;
export const SSL_F_KEY = 1 << 0;
export const SSL_F_EX = 1 << 1;
export const SSL_F_EOF = 1 << 2;

export const L7_REC = {
  name: 'emon_l7_rec', size: 88, object: 'l7.bpf.o',
  fields: {
    hdr: f(0, 16), key: f(16, 40), tgid: f(56, 4), uid: f(60, 4), seq: f(64, 4), ack: f(68, 4), len: f(72, 4),
    cap_len: f(76, 2), kind: f(78, 1), dir: f(79, 1), tcp_flags: f(80, 1), flags: f(81, 1), _pad: f(82, 6), data: f(88, 0),
  },
} as const satisfies StructSpec;

export const SSL_REC = {
  name: 'emon_ssl_rec', size: 104, object: 'ssl.bpf.o',
  fields: {
    hdr: f(0, 16), key: f(16, 40), ssl: f(56, 8), tgid: f(64, 4), tid: f(68, 4), uid: f(72, 4), seq: f(76, 4), len: f(80, 4),
    cap_len: f(84, 2), dir: f(86, 1), flags: f(87, 1), comm: f(88, 16), data: f(104, 0),
  },
} as const satisfies StructSpec;

export const L7_STAT_MAX = 16;

/** A flow's key as the contract spells it (contract/flows.ts Flow). */
export interface FlowKey {
  protocol: ProtocolName | string;
  family: Family;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
}

export function decodeKey(v: DataView, off: number): FlowKey {
  const af = v.getUint8(off);
  const bytes = new Uint8Array(v.buffer, v.byteOffset + off, 40);
  return {
    protocol: protocolName(v.getUint8(off + 1)),
    family: af === AF_INET ? 'ipv4' : 'ipv6',
    localAddr: formatIpAt(bytes, 8, af),
    localPort: v.getUint16(off + 2, true),
    remoteAddr: formatIpAt(bytes, 24, af),
    remotePort: v.getUint16(off + 4, true),
  };
}

export function keyString(k: FlowKey): string {
  return `${k.protocol}|${k.localAddr}|${k.localPort}|${k.remoteAddr}|${k.remotePort}`;
}

export interface L7Record {
  tsNs: number;
  /** The raw 40-byte flow key as a string: a cheap map key (decode with `key`). */
  rawKey: string;
  readonly key: FlowKey;
  tgid: number;
  uid: number;
  seq: number;
  ack: number;
  len: number;
  kind: number;
  dir: 0 | 1;
  tcpFlags: number;
  flags: number;
  /** The captured bytes: a view of the ring buffer, valid only while the handler runs. */
  data: Uint8Array;
}

export interface SslRecord {
  tsNs: number;
  key?: FlowKey;
  ssl: bigint;
  tgid: number;
  tid: number;
  uid: number;
  seq: number;
  len: number;
  dir: 0 | 1;
  flags: number;
  comm: string;
  data: Buffer;
}

/** Record type at `off` (the common header), or -1 when too short. */
export function recordType(v: DataView, off: number, len: number): number {
  return len >= 16 ? v.getUint16(off, true) : -1;
}

export function decodeL7(v: DataView, off: number, len: number): L7Record | null {
  if (len < L7_REC.size) return null;
  const F = L7_REC.fields;
  const cap = Math.min(v.getUint16(off + F.cap_len.offset, true), len - L7_REC.size);
  const bytes = new Uint8Array(v.buffer, v.byteOffset + off, len);
  let key: FlowKey | undefined;
  return {
    tsNs: Number(v.getBigUint64(off + 8, true)),
    rawKey: Buffer.from(bytes.buffer, bytes.byteOffset + F.key.offset, 40).toString('latin1'),
    get key(): FlowKey {
      return (key ??= decodeKey(v, off + F.key.offset));
    },
    tgid: v.getUint32(off + F.tgid.offset, true),
    uid: v.getUint32(off + F.uid.offset, true),
    seq: v.getUint32(off + F.seq.offset, true),
    ack: v.getUint32(off + F.ack.offset, true),
    len: v.getUint32(off + F.len.offset, true),
    kind: v.getUint8(off + F.kind.offset),
    dir: (v.getUint8(off + F.dir.offset) & 1) as 0 | 1,
    tcpFlags: v.getUint8(off + F.tcp_flags.offset),
    flags: v.getUint8(off + F.flags.offset),
    data: bytes.subarray(L7_REC.size, L7_REC.size + cap),
  };
}

export function decodeSsl(v: DataView, off: number, len: number): SslRecord | null {
  if (len < SSL_REC.size) return null;
  const F = SSL_REC.fields;
  const cap = Math.min(v.getUint16(off + F.cap_len.offset, true), len - SSL_REC.size);
  const flags = v.getUint8(off + F.flags.offset);
  const commBytes = new Uint8Array(v.buffer, v.byteOffset + off + F.comm.offset, 16);
  const nul = commBytes.indexOf(0);
  const r: SslRecord = {
    tsNs: Number(v.getBigUint64(off + 8, true)),
    ssl: v.getBigUint64(off + F.ssl.offset, true),
    tgid: v.getUint32(off + F.tgid.offset, true),
    tid: v.getUint32(off + F.tid.offset, true),
    uid: v.getUint32(off + F.uid.offset, true),
    seq: v.getUint32(off + F.seq.offset, true),
    len: v.getUint32(off + F.len.offset, true),
    dir: (v.getUint8(off + F.dir.offset) & 1) as 0 | 1,
    flags,
    comm: Buffer.from(commBytes.subarray(0, nul < 0 ? 16 : nul)).toString('latin1'),
    data: Buffer.from(new Uint8Array(v.buffer, v.byteOffset + off + SSL_REC.size, cap)),
  };
  if (flags & SSL_F_KEY) r.key = decodeKey(v, off + F.key.offset);
  return r;
}
