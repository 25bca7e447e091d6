// SPDX-License-Identifier: Apache-2.0
// IP addresses as the LB's maps hold them: 16 bytes, IPv4 in the first 4 (rest zero),
// and the text forms the LB's API accepts and prints (IPv6 in RFC 5952 form, in
// brackets when a port follows).
import net from 'node:net';

export type Family = 4 | 6;

export const AF_INET = 2;
export const AF_INET6 = 10;

export interface IpAddr {
  family: Family;
  /** 16 bytes; IPv4 uses the first 4. */
  bytes: Buffer;
}

export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function familyOfAf(af: number): Family | null {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : null;
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
  if (net.isIPv4(s) && parseV4(s, bytes, 0)) return { family: 4, bytes };
  if (parseV6(s, bytes)) return { family: 6, bytes };
  return null;
}

/** Canonical text: dotted quad, or RFC 5952 (lower case, longest zero run as ::). */
export function formatIp(family: Family, bytes: Uint8Array): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
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
  return a.family === 6 ? `[${ipText(a)}]:${port}` : `${ipText(a)}:${port}`;
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
  const total = a.family === 4 ? 32 : 128;
  for (let bit = len; bit < total; bit++) {
    if (a.bytes[bit >> 3]! & (0x80 >> (bit & 7))) return false;
  }
  return true;
}

export function isUnspecified(a: IpAddr): boolean {
  const n = a.family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) if (a.bytes[i] !== 0) return false;
  return true;
}

export function isMulticastOrBroadcast(a: IpAddr): boolean {
  if (a.family === 4) return a.bytes[0]! >= 224; // 224/4 multicast, 240/4 reserved, broadcast
  return a.bytes[0] === 0xff;
}

export function isLoopback(a: IpAddr): boolean {
  if (a.family === 4) return a.bytes[0] === 127;
  for (let i = 0; i < 15; i++) if (a.bytes[i] !== 0) return false;
  return a.bytes[15] === 1;
}

export function isLinkLocal(a: IpAddr): boolean {
  if (a.family === 4) return a.bytes[0] === 169 && a.bytes[1] === 254;
  return a.bytes[0] === 0xfe && (a.bytes[1]! & 0xc0) === 0x80;
}
