// SPDX-License-Identifier: Apache-2.0
// IP address text <-> bytes (Node has no inet_ntop/inet_pton for raw bytes).
import net from 'node:net';

export const AF_INET = 2;
export const AF_INET6 = 10;

/** Formats 4 or 16 bytes at `off` as an address (IPv6 compressed per RFC 5952). */
export function formatIp(buf: Uint8Array, off: number, family: number): string {
  if (family === AF_INET) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!);
  // IPv4-mapped
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses an address into its family and 16 bytes (IPv4 in the first 4, rest zero). Null if invalid. */
export function parseIp(text: string): { family: number; bytes: Buffer } | null {
  const v = net.isIP(text);
  if (v === 4) {
    const b = Buffer.alloc(16);
    text.split('.').forEach((p, i) => (b[i] = Number(p)));
    return { family: AF_INET, bytes: b };
  }
  if (v !== 6) return null;
  let t = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  const b = Buffer.alloc(16);
  if (v4) {
    const p = v4[1]!.split('.').map(Number);
    t = t.slice(0, -v4[1]!.length) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = t.split('::') as [string, string | undefined];
  const hw = head ? head.split(':') : [];
  const tw = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const words = tail === undefined ? hw : [...hw, ...Array(8 - hw.length - tw.length).fill('0'), ...tw];
  words.forEach((w, i) => b.writeUInt16BE(parseInt(w, 16), i * 2));
  return { family: AF_INET6, bytes: b };
}

/** Parses `addr` or `addr/prefix` (CIDR). */
export function parseCidr(text: string): { family: number; bytes: Buffer; prefix: number } | null {
  const [a, p] = text.split('/');
  const ip = parseIp(a ?? '');
  if (!ip) return null;
  const max = ip.family === AF_INET ? 32 : 128;
  if (p === undefined) return { ...ip, prefix: max };
  if (!/^\d{1,3}$/.test(p) || Number(p) > max) return null;
  return { ...ip, prefix: Number(p) };
}

/** True when the address bytes fall inside the prefix. */
export function inCidr(family: number, bytes: Uint8Array, off: number, cidr: { family: number; bytes: Buffer; prefix: number }): boolean {
  if (family !== cidr.family) return false;
  let bits = cidr.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[off + i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}
