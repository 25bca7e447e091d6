// SPDX-License-Identifier: Apache-2.0
// IP addresses: text <-> 16 bytes (IPv4 in the first 4, the rest zero, as every ebpfmon map
// holds them), canonical text (RFC 5952), CIDR prefixes, and the address classes the load
// balancer refuses. One module for the monitor and the balancer (Node has no inet_pton for
// raw bytes).
import net from 'node:net';
import type { Family } from '../contract/common.js';

export type { Family };

/** Kernel address families (socket.h). */
export const AF_INET = 2;
export const AF_INET6 = 10;

export interface IpAddr {
  family: Family;
  /** 16 bytes; IPv4 uses the first 4. */
  bytes: Buffer;
}

export interface Cidr extends IpAddr {
  prefix: number;
}

export function afOf(family: Family): number {
  return family === 'ipv4' ? AF_INET : AF_INET6;
}

export function familyOfAf(af: number): Family | null {
  return af === AF_INET ? 'ipv4' : af === AF_INET6 ? 'ipv6' : null;
}

function parseV4(s: string, out: Buffer, at: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return false;
    const v = Number(p);
    if (v > 255) return false;
    out[at + i] = v;
  }
  return true;
}

function parseV6(s: string, out: Buffer): boolean {
  if (!net.isIPv6(s) || s.includes('%')) return false;
  let head = s;
  let tail = '';
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const words = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const groups = part.split(':');
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (g.includes('.')) {
        if (i !== groups.length - 1) return null;
        const b = Buffer.alloc(4);
        if (!parseV4(g, b, 0)) return null;
        out.push(b.readUInt16BE(0), b.readUInt16BE(2));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const h = words(head);
  const t = words(tail);
  if (!h || !t) return false;
  const fill = 8 - h.length - t.length;
  if (dbl < 0 ? fill !== 0 : fill < 1) return false;
  const all = [...h, ...new Array<number>(dbl < 0 ? 0 : fill).fill(0), ...t];
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return true;
}

/** Parses a literal IPv4 or IPv6 address; null when it is not one. */
export function parseIp(s: string): IpAddr | null {
  const bytes = Buffer.alloc(16);
  if (net.isIPv4(s) && parseV4(s, bytes, 0)) return { family: 'ipv4', bytes };
  if (parseV6(s, bytes)) return { family: 'ipv6', bytes };
  return null;
}

/** Canonical text: dotted quad, or RFC 5952 (lower case, longest zero run as ::, IPv4-mapped as ::ffff:a.b.c.d). */
export function formatIp(family: Family, bytes: Uint8Array): string {
  return formatIpAt(bytes, 0, family === 'ipv4' ? AF_INET : AF_INET6);
}

/** The address of kernel family `af` (AF_INET, AF_INET6) at `off` in a buffer: for decoders. */
export function formatIpAt(buf: Uint8Array, off: number, af: number): string {
  if (af === AF_INET) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((buf[off + i * 2]! << 8) | buf[off + i * 2 + 1]!);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(w);
  return `${hex(w.slice(0, bestAt))}::${hex(w.slice(bestAt + bestLen))}`;
}

export function ipText(a: IpAddr): string {
  return formatIp(a.family, a.bytes);
}

/** "198.18.1.2:80" or "[fd00::2]:80". */
export function hostPort(a: IpAddr, port: number): string {
  return a.family === 'ipv6' ? `[${ipText(a)}]:${port}` : `${ipText(a)}:${port}`;
}

/**
 * Splits "ADDR", "ADDR:PORT", "[V6]" or "[V6]:PORT". A bare IPv6 address (several colons,
 * no brackets) has no port. Returns null when the text has none of these shapes.
 */
export function splitHostPort(s: string): { host: string; port: string | null } | null {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    const host = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest === '') return { host, port: null };
    if (!rest.startsWith(':')) return null;
    return { host, port: rest.slice(1) };
  }
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = s.split(':') as [string, string];
    return { host, port };
  }
  return { host: s, port: null };
}

export function sameAddr(a: IpAddr, b: IpAddr): boolean {
  return a.family === b.family && a.bytes.equals(b.bytes);
}

/** True when bits beyond `len` are all zero. */
export function hostBitsZero(a: IpAddr, len: number): boolean {
  const total = a.family === 'ipv4' ? 32 : 128;
  for (let bit = len; bit < total; bit++) {
    if (a.bytes[bit >> 3]! & (0x80 >> (bit & 7))) return false;
  }
  return true;
}

export function isUnspecified(a: IpAddr): boolean {
  const n = a.family === 'ipv4' ? 4 : 16;
  for (let i = 0; i < n; i++) if (a.bytes[i] !== 0) return false;
  return true;
}

export function isMulticastOrBroadcast(a: IpAddr): boolean {
  if (a.family === 'ipv4') return a.bytes[0]! >= 224; // 224/4 multicast, 240/4 reserved, broadcast
  return a.bytes[0] === 0xff;
}

export function isLoopback(a: IpAddr): boolean {
  if (a.family === 'ipv4') return a.bytes[0] === 127;
  for (let i = 0; i < 15; i++) if (a.bytes[i] !== 0) return false;
  return a.bytes[15] === 1;
}

export function isLinkLocal(a: IpAddr): boolean {
  if (a.family === 'ipv4') return a.bytes[0] === 169 && a.bytes[1] === 254;
  return a.bytes[0] === 0xfe && (a.bytes[1]! & 0xc0) === 0x80;
}

/** Parses `addr` or `addr/prefix` (CIDR); null when it is neither. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = ip.family === 'ipv4' ? 32 : 128;
  if (slash < 0) return { ...ip, prefix: max };
  const p = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(p) || Number(p) > max) return null;
  return { ...ip, prefix: Number(p) };
}

/** True when the address of kernel family `af` at `off` falls inside the prefix. */
export function inCidr(af: number, bytes: Uint8Array, off: number, cidr: Cidr): boolean {
  if (af !== afOf(cidr.family)) return false;
  let bits = cidr.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[off + i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}
