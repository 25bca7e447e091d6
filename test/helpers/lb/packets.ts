// SPDX-License-Identifier: Apache-2.0
// Frames for BPF_PROG_TEST_RUN and their independent checks: every checksum is recomputed
// here from scratch (RFC 1071 over the whole header or message), never incrementally as
// the data path does, so a wrong incremental update cannot hide.
import { parseIp } from '../../../daemon/src/net/ip.js';

export function sum16(buf: Buffer, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < buf.length; i += 2) s += buf.readUInt16BE(i);
  if (buf.length & 1) s += buf[buf.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export const checksum = (buf: Buffer, init = 0): number => ~sum16(buf, init) & 0xffff;

function ip(a: string): Buffer {
  const p = parseIp(a);
  if (!p) throw new Error(`bad address ${a}`);
  return p.family === 'ipv4' ? p.bytes.subarray(0, 4) : p.bytes;
}

const MAC_A = Buffer.from('02000000000a', 'hex');
const MAC_B = Buffer.from('02000000000b', 'hex');

function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  MAC_B.copy(b, 0);
  MAC_A.copy(b, 6);
  b.writeUInt16BE(type, 12);
  return b;
}

function ip4Header(src: string, dst: string, proto: number, payloadLen: number, ttl = 64, df = true): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payloadLen, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(df ? 0x4000 : 0, 6);
  h[8] = ttl;
  h[9] = proto;
  ip(src).copy(h, 12);
  ip(dst).copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return h;
}

function ip6Header(src: string, dst: string, next: number, payloadLen: number, hop = 64): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payloadLen, 4);
  h[6] = next;
  h[7] = hop;
  ip(src).copy(h, 8);
  ip(dst).copy(h, 24);
  return h;
}

function pseudo(src: string, dst: string, proto: number, len: number): number {
  const s = ip(src);
  const d = ip(dst);
  const p = Buffer.alloc(s.length * 2 + (s.length === 4 ? 4 : 8));
  s.copy(p, 0);
  d.copy(p, s.length);
  if (s.length === 4) {
    p[9] = proto;
    p.writeUInt16BE(len, 10);
  } else {
    p.writeUInt32BE(len, 32);
    p[39] = proto;
  }
  return sum16(p);
}

export function udp(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  const u = Buffer.alloc(8 + payload.length);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  payload.copy(u, 8);
  const v6 = ip(src).length === 16;
  let c = checksum(u, pseudo(src, dst, 17, u.length));
  if (c === 0) c = 0xffff;
  u.writeUInt16BE(c, 6);
  return v6 ? Buffer.concat([ip6Header(src, dst, 17, u.length), u]) : Buffer.concat([ip4Header(src, dst, 17, u.length), u]);
}

export function tcpSyn(src: string, dst: string, sport: number, dport: number, payloadLen = 0): Buffer {
  const t = Buffer.alloc(20 + payloadLen);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(0x01020304, 4);
  t[12] = 5 << 4;
  t[13] = 0x02; // SYN
  t.writeUInt16BE(64240, 14);
  for (let i = 0; i < payloadLen; i++) t[20 + i] = i & 0xff;
  t.writeUInt16BE(checksum(t, pseudo(src, dst, 6, t.length)), 16);
  const v6 = ip(src).length === 16;
  return v6 ? Buffer.concat([ip6Header(src, dst, 6, t.length), t]) : Buffer.concat([ip4Header(src, dst, 6, t.length), t]);
}

/** ICMP (v4) or ICMPv6 error from `src` to `dst` quoting `quoted` (an IP packet). */
export function icmpError(src: string, dst: string, type: number, code: number, mtu: number, quoted: Buffer): Buffer {
  const v6 = ip(src).length === 16;
  const m = Buffer.alloc(8 + quoted.length);
  m[0] = type;
  m[1] = code;
  if (v6) m.writeUInt32BE(mtu, 4);
  else m.writeUInt16BE(mtu, 6);
  quoted.copy(m, 8);
  if (v6) {
    m.writeUInt16BE(checksum(m, pseudo(src, dst, 58, m.length)), 2);
    return Buffer.concat([ip6Header(src, dst, 58, m.length), m]);
  }
  m.writeUInt16BE(checksum(m), 2);
  return Buffer.concat([ip4Header(src, dst, 1, m.length), m]);
}

export function frame(ipPacket: Buffer): Buffer {
  return Buffer.concat([eth(ipPacket[0]! >> 4 === 6 ? 0x86dd : 0x0800), ipPacket]);
}

export interface L4View {
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  ttl: number;
}

function addrText(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  const w: string[] = [];
  for (let i = 0; i < 16; i += 2) w.push(b.readUInt16BE(i).toString(16));
  return w.join(':');
}

/** Parses an IP packet (no options) and checks every checksum; returns what it found. */
export function inspect(pkt: Buffer): L4View & { errors: string[]; l4: Buffer } {
  const errors: string[] = [];
  const v6 = pkt[0]! >> 4 === 6;
  const hl = v6 ? 40 : (pkt[0]! & 0xf) * 4;
  const src = pkt.subarray(v6 ? 8 : 12, v6 ? 24 : 16);
  const dst = pkt.subarray(v6 ? 24 : 16, v6 ? 40 : 20);
  const proto = v6 ? pkt[6]! : pkt[9]!;
  const total = v6 ? 40 + pkt.readUInt16BE(4) : pkt.readUInt16BE(2);
  if (!v6 && checksum(pkt.subarray(0, hl)) !== 0) errors.push('ipv4 header checksum');
  const l4 = pkt.subarray(hl, Math.min(total, pkt.length));
  const complete = total <= pkt.length;
  if ((proto === 6 || proto === 17) && complete) {
    const skip = proto === 17 && !v6 && l4.readUInt16BE(6) === 0;
    if (!skip && checksum(l4, pseudo(addrText(src), addrText(dst), proto, l4.length)) !== 0) errors.push(`${proto === 6 ? 'tcp' : 'udp'} checksum`);
  }
  if (proto === 1 && checksum(l4) !== 0) errors.push('icmp checksum');
  if (proto === 58 && checksum(l4, pseudo(addrText(src), addrText(dst), 58, l4.length)) !== 0) errors.push('icmpv6 checksum');
  return {
    proto, src: addrText(src), dst: addrText(dst), sport: proto === 6 || proto === 17 ? l4.readUInt16BE(0) : 0,
    dport: proto === 6 || proto === 17 ? l4.readUInt16BE(2) : 0, ttl: v6 ? pkt[7]! : pkt[8]!, errors, l4,
  };
}

/** Normalizes an address for comparison with inspect()'s text. */
export function norm(a: string): string {
  return addrText(ip(a));
}
