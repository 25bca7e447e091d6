// SPDX-License-Identifier: Apache-2.0
// Packets and filter expressions for the capture engine's property tests: a seeded
// generator of varied Ethernet frames (IPv4/IPv6; TCP, UDP, ICMP, ICMPv6, SCTP, GRE;
// options, extension headers, fragments, truncated headers, ARP and other link types)
// whose fields come from small sets, so that expressions about them match often and miss
// often. Deterministic for a seed: a failure names its seed and packet index.

import { rng } from './rand.js';

export { rng };

export type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

export const V4_ADDRS = ['198.18.0.1', '198.18.0.2', '198.19.7.9', '10.1.2.3', '192.0.2.200', '255.255.255.255'] as const;
export const V6_ADDRS = ['fd00:198::1', 'fd00:198::2', 'fd00:198::7:1', '2001:db8::5', 'fe80::1', 'ff02::1'] as const;
export const PORTS = [53, 80, 443, 9000, 9001, 40000, 65535, 0] as const;
const MACS = ['02:00:00:00:00:01', '02:00:00:00:00:02', 'ff:ff:ff:ff:ff:ff', '33:33:00:00:00:01'] as const;

function mac(s: string): Buffer {
  return Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
}

export function v4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

export function v6(s: string): Buffer {
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const hw = head ? head.split(':').filter(Boolean) : [];
  const tw = tail ? tail.split(':').filter(Boolean) : [];
  const words = [...hw, ...Array(8 - hw.length - tw.length).fill('0'), ...tw];
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(parseInt(w, 16), i * 2));
  return b;
}

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function payload(r: Rand, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function l4(r: Rand, proto: number): Buffer {
  const pl = payload(r, pick(r, [0, 0, 1, 6, 20, 100, 600, 1000, 1400]));
  switch (proto) {
    case 6: {
      const optLen = pick(r, [0, 0, 0, 12]);
      const h = Buffer.alloc(20 + optLen);
      h.writeUInt16BE(pick(r, PORTS), 0);
      h.writeUInt16BE(pick(r, PORTS), 2);
      h.writeUInt32BE(int(r, 0, 0xffffffff), 4);
      h.writeUInt32BE(int(r, 0, 0xffffffff), 8);
      h[12] = ((20 + optLen) / 4) << 4;
      h[13] = pick(r, [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x29, 0]);
      h.writeUInt16BE(int(r, 0, 0xffff), 14);
      for (let i = 20; i < h.length; i++) h[i] = 1; // NOPs
      return Buffer.concat([h, pl]);
    }
    case 17:
    case 132: {
      const h = Buffer.alloc(8);
      h.writeUInt16BE(pick(r, PORTS), 0);
      h.writeUInt16BE(pick(r, PORTS), 2);
      h.writeUInt16BE(8 + pl.length, 4);
      return Buffer.concat([h, pl]);
    }
    case 1:
    case 58: {
      const h = Buffer.alloc(8);
      h[0] = proto === 1 ? pick(r, [0, 8, 3, 11, 13]) : pick(r, [128, 129, 1, 135, 136, 133]);
      h[1] = int(r, 0, 3);
      h.writeUInt16BE(int(r, 0, 0xffff), 4);
      return Buffer.concat([h, pl]);
    }
    default:
      return pl;
  }
}

const PROTOS = [6, 6, 17, 17, 1, 58, 132, 47, 2] as const;

function ipv4Packet(r: Rand): Buffer {
  let proto: number = pick(r, PROTOS);
  if (proto === 58) proto = 1;
  const optLen = pick(r, [0, 0, 0, 4, 8]);
  const h = Buffer.alloc(20 + optLen);
  const frag = pick(r, ['none', 'none', 'none', 'none', 'first', 'later', 'df']);
  const body = frag === 'later' ? payload(r, pick(r, [8, 64, 500])) : l4(r, proto);
  h[0] = 0x40 | ((20 + optLen) >> 2);
  h[1] = pick(r, [0, 0x10, 0xb8]);
  h.writeUInt16BE(h.length + body.length, 2);
  h.writeUInt16BE(int(r, 0, 0xffff), 4);
  h.writeUInt16BE(frag === 'first' ? 0x2000 : frag === 'later' ? int(r, 1, 0x1fff) | pick(r, [0, 0x2000]) : frag === 'df' ? 0x4000 : 0, 6);
  h[8] = pick(r, [1, 64, 255]);
  h[9] = proto;
  v4(pick(r, V4_ADDRS)).copy(h, 12);
  v4(pick(r, V4_ADDRS)).copy(h, 16);
  if (optLen) {
    h[20] = 0x94; // router alert
    h[21] = 4;
    for (let i = 24; i < h.length; i++) h[i] = 1;
  }
  h.writeUInt16BE(csum(h), 10);
  return Buffer.concat([h, body]);
}

function ipv6Packet(r: Rand): Buffer {
  let proto: number = pick(r, PROTOS);
  if (proto === 1) proto = 58;
  const exts: Buffer[] = [];
  const chain: number[] = [];
  // Up to 8 headers: `protochain` follows that many in the kernel (translate.ts DEFAULT_LOOPS).
  const nExt = pick(r, [0, 0, 0, 1, 2, 3, 5, 8]);
  for (let i = 0; i < nExt; i++) chain.push(pick(r, [0, 60, 43, 44]));
  let later = false;
  for (let i = 0; i < chain.length; i++) {
    const next = i + 1 < chain.length ? chain[i + 1]! : proto;
    if (chain[i] === 44) {
      const f = Buffer.alloc(8);
      f[0] = next;
      const off = pick(r, [0, 0, 5, 100]);
      later ||= off !== 0;
      f.writeUInt16BE((off << 3) | pick(r, [0, 1]), 2);
      f.writeUInt32BE(int(r, 0, 0xffffffff), 4);
      exts.push(f);
    } else {
      const e = Buffer.alloc(8);
      e[0] = next;
      e[1] = 0;
      if (chain[i] === 43) e[2] = 0; // routing type 0, segments left 0
      else { e[2] = 1; e[3] = 4; }
      exts.push(e);
    }
  }
  const body = later ? payload(r, 40) : l4(r, proto);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000 | int(r, 0, 0xfffff), 0);
  h.writeUInt16BE(exts.reduce((n, e) => n + e.length, 0) + body.length, 4);
  h[6] = chain.length ? chain[0]! : proto;
  h[7] = pick(r, [1, 64, 255]);
  v6(pick(r, V6_ADDRS)).copy(h, 8);
  v6(pick(r, V6_ADDRS)).copy(h, 24);
  return Buffer.concat([h, ...exts, body]);
}

function eth(r: Rand, type: number): Buffer {
  const h = Buffer.alloc(14);
  mac(pick(r, MACS)).copy(h, 0);
  mac(pick(r, MACS)).copy(h, 6);
  h.writeUInt16BE(type, 12);
  return h;
}

export interface CorpusPacket {
  /** The whole Ethernet frame (what TC sees on a veth). */
  frame: Buffer;
  /** Whether the frame carries IPv4/IPv6 (its L3 packet is frame[14:]). */
  ip: boolean;
  origin: string;
}

/**
 * `n` frames from `seed`. Some are cut short after a random number of bytes (a header
 * that claims more than is there), which exercises every out-of-bounds path.
 */
export function generateFrames(seed: number, n: number): CorpusPacket[] {
  const r = rng(seed);
  const out: CorpusPacket[] = [];
  for (let i = 0; i < n; i++) {
    const kind = pick(r, ['v4', 'v4', 'v4', 'v6', 'v6', 'arp', 'other']);
    let frame: Buffer;
    if (kind === 'v4') frame = Buffer.concat([eth(r, 0x0800), ipv4Packet(r)]);
    else if (kind === 'v6') frame = Buffer.concat([eth(r, 0x86dd), ipv6Packet(r)]);
    else if (kind === 'arp') frame = Buffer.concat([eth(r, 0x0806), Buffer.from('0001080006040001', 'hex'), mac(MACS[0]), v4(pick(r, V4_ADDRS)), Buffer.alloc(6), v4(pick(r, V4_ADDRS))]);
    else frame = Buffer.concat([eth(r, pick(r, [0x88cc, 0x8847, 0x0842])), payload(r, int(r, 0, 80))]);
    // BPF_PROG_TEST_RUN refuses an IP frame shorter than its IP header, so cuts fall after
    // it: transport headers and payload reads run past the end.
    const min = kind === 'v4' ? 34 : kind === 'v6' ? 54 : 15;
    if (r() < 0.08 && frame.length > min) frame = frame.subarray(0, int(r, min, frame.length - 1));
    // bench/classifier/testrun.ts takes frames up to 2048 bytes.
    if (frame.length > 2000) frame = frame.subarray(0, 2000);
    out.push({ frame: Buffer.from(frame), ip: kind === 'v4' || kind === 'v6', origin: `generated seed ${seed} #${i}` });
  }
  return out;
}

/** The expressions the issue names, and a few that use every cBPF feature libpcap emits
 * (scratch memory, X-relative loads, arithmetic, shifts, division, the packet length). */
export const FIXED_EXPRESSIONS: readonly string[] = [
  '',
  'tcp port 9000',
  'udp',
  'icmp',
  'icmp6',
  'host 198.18.0.1 and not port 53',
  'net 198.18.0.0/15',
  'tcp[tcpflags] & tcp-syn != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn',
  'ip6 and tcp',
  'greater 1000',
  'less 100',
  'ip and udp dst port 53',
  'ip6 host fd00:198::1',
  'ip6 net fd00:198::/64 and udp',
  'src host 198.18.0.2 or dst host fd00:198::2',
  'portrange 9000-9001',
  'tcp and (ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2)) != 0',
  'ip[6:2] & 0x1fff != 0',
  'ip[8] < 64',
  'icmp[icmptype] == icmp-echo',
  'icmp6 and ip6[40] == 128',
  'udp[8:4] / 3 > 1000',
  'udp[8:4] % 7 == 3',
  'tcp[4:4] * 3 == 0',
  'tcp[0:2] << 3 > 100000',
  'tcp[0:2] >> 20 == 0',
  'len >= 64 and len <= 600',
  'ip proto 132',
  'ip proto 47 or ip6 proto 47',
  'ip6 protochain 6',
  'ip multicast or ip6 multicast',
  'arp',
  'not ip and not ip6',
  'vlan',
  'ether host 02:00:00:00:00:01',
  'ether broadcast',
  'tcp port 443 or udp port 53 or icmp',
  '(tcp or udp) and port 40000 and not host 10.1.2.3',
  'ip[0] & 0xf > 5',
  'tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420',
];

const ATOMS = [
  'tcp', 'udp', 'icmp', 'icmp6', 'ip', 'ip6', 'arp', 'sctp',
  'port 53', 'port 9000', 'src port 40000', 'dst port 443', 'portrange 0-100',
  'host 198.18.0.1', 'host fd00:198::2', 'src net 198.18.0.0/16', 'dst net 10.0.0.0/8', 'net 2001:db8::/32',
  'greater 200', 'less 60', 'tcp[13] & 2 != 0', 'ip[1] & 0xfc == 0xb8', 'ip6[7] == 255', 'udp[4:2] > 100',
  'ip[6] & 0x20 != 0', 'icmp[0] == 0', 'tcp[12] >> 4 > 5', 'ip6 protochain 17',
] as const;

/** `n` random boolean combinations of the atoms above. */
export function randomExpressions(seed: number, n: number): string[] {
  const r = rng(seed);
  const gen = (depth: number): string => {
    if (depth === 0 || r() < 0.35) return pick(r, ATOMS);
    const kind = pick(r, ['and', 'or', 'not']);
    if (kind === 'not') return `not (${gen(depth - 1)})`;
    return `(${gen(depth - 1)}) ${kind} (${gen(depth - 1)})`;
  };
  return Array.from({ length: n }, () => gen(3));
}
