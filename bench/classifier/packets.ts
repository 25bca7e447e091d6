// SPDX-License-Identifier: Apache-2.0
// Test packets for bench/classifier: whole Ethernet frames, as BPF_PROG_TEST_RUN hands
// them to a TC program (the kernel sets skb->protocol from the Ethernet type). Addresses
// come from the ranges set aside for tests; nothing is ever sent.

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
export const TCP = 6;
export const UDP = 17;
const IPPROTO_HOPOPTS = 0;
const IPPROTO_DSTOPTS = 60;
const TCP_SYN = 0x02;
const TCP_ACK = 0x10;

export interface Packet {
  name: string;
  frame: Buffer;
  /** What the classifier must record for it (EMON_FLOW_F_*). */
  flowFlags: number;
}

function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  Buffer.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]).copy(b, 0);
  b.writeUInt16BE(type, 12);
  return b;
}

function csum16(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function ipv4(proto: number, payloadLen: number, options: Buffer = Buffer.alloc(0)): Buffer {
  const ihl = 20 + options.length;
  const h = Buffer.alloc(ihl);
  h[0] = 0x40 | (ihl >> 2);
  h.writeUInt16BE(ihl + payloadLen, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(0x4000, 6); // DF, not a fragment
  h[8] = 64;
  h[9] = proto;
  Buffer.from([198, 18, 0, 1]).copy(h, 12);
  Buffer.from([198, 18, 0, 2]).copy(h, 16);
  options.copy(h, 20);
  h.writeUInt16BE(csum16(h), 10);
  return h;
}

function ipv6(nextHeader: number, payloadLen: number): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payloadLen, 4);
  h[6] = nextHeader;
  h[7] = 64;
  Buffer.from('fd000198000000000000000000010001', 'hex').copy(h, 8);
  Buffer.from('fd000198000000000000000000010002', 'hex').copy(h, 24);
  return h;
}

function tcp(flags: number, payload: number): Buffer {
  const h = Buffer.alloc(20 + payload);
  h.writeUInt16BE(40000, 0);
  h.writeUInt16BE(443, 2);
  h.writeUInt32BE(1000, 4);
  h.writeUInt32BE(flags & TCP_ACK ? 2000 : 0, 8);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(64240, 14);
  return h;
}

function udp(payload: number): Buffer {
  const h = Buffer.alloc(8 + payload);
  h.writeUInt16BE(40000, 0);
  h.writeUInt16BE(53, 2);
  h.writeUInt16BE(8 + payload, 4);
  return h;
}

/** An IPv6 extension header of 8 bytes (Hop-by-Hop or Destination Options): one PadN option. */
function ext8(next: number): Buffer {
  return Buffer.from([next, 0, 0x01, 0x04, 0, 0, 0, 0]);
}

const frame = (...parts: Buffer[]): Buffer => Buffer.concat(parts);

/** 64 bytes on the wire (without FCS): Ethernet 14 + IPv4 20 + TCP 20 + 10 bytes of payload. */
export function tcp4(flags = TCP_SYN | TCP_ACK): Buffer {
  const l4 = tcp(flags, 10);
  return frame(eth(ETH_P_IP), ipv4(TCP, l4.length), l4);
}

export const PACKETS: Packet[] = [
  { name: 'IPv4 TCP, 64 B SYN/ACK', frame: tcp4(), flowFlags: 0 },
  (() => {
    const l4 = udp(22);
    return { name: 'IPv4 UDP, 64 B', frame: frame(eth(ETH_P_IP), ipv4(UDP, l4.length), l4), flowFlags: 0 };
  })(),
  (() => {
    const l4 = tcp(TCP_SYN | TCP_ACK, 10);
    return { name: 'IPv6 TCP, 84 B', frame: frame(eth(ETH_P_IPV6), ipv6(TCP, l4.length), l4), flowFlags: 0 };
  })(),
  (() => {
    // Router Alert (4 bytes): IHL 6.
    const l4 = tcp(TCP_SYN | TCP_ACK, 10);
    return { name: 'IPv4 TCP + 4 B IP options, 68 B', frame: frame(eth(ETH_P_IP), ipv4(TCP, l4.length, Buffer.from([0x94, 0x04, 0, 0])), l4), flowFlags: 1 };
  })(),
  (() => {
    // Hop-by-Hop -> Destination Options -> TCP: two headers to walk.
    const l4 = tcp(TCP_SYN | TCP_ACK, 10);
    const exts = frame(ext8(IPPROTO_DSTOPTS), ext8(TCP));
    return { name: 'IPv6 TCP + HBH + DSTOPTS, 100 B', frame: frame(eth(ETH_P_IPV6), ipv6(IPPROTO_HOPOPTS, exts.length + l4.length), exts, l4), flowFlags: 2 };
  })(),
];

/**
 * Frames that exercise every parsing branch (short transports, ICMP queries and replies,
 * options, extension headers, fragments, truncated headers, BIG TCP's zero length), each
 * with its own ports or ICMP id: two builds of the classifier that parse alike produce
 * identical flow tables and counters from them (bench/classifier --compare-obj).
 */
export function edgeCaseFrames(): Buffer[] {
  let port = 1000;
  const v4 = (proto: number, l4: Buffer, opts: Buffer = Buffer.alloc(0), fragOff = 0x4000, totLen?: number) => {
    const h = ipv4(proto, l4.length, opts);
    h.writeUInt16BE(fragOff, 6);
    if (totLen !== undefined) h.writeUInt16BE(totLen, 2);
    return frame(eth(ETH_P_IP), h, l4);
  };
  const v6 = (nh: number, rest: Buffer) => frame(eth(ETH_P_IPV6), ipv6(nh, rest.length), rest);
  const u = (n: number) => {
    const b = udp(n);
    b.writeUInt16BE(port++, 0);
    return b;
  };
  const t = (n: number, flags = TCP_SYN | TCP_ACK) => {
    const b = tcp(flags, n);
    b.writeUInt16BE(port++, 0);
    return b;
  };
  const icmp = (type: number, n: number) => {
    const b = Buffer.alloc(8 + n);
    b[0] = type;
    b.writeUInt16BE(port++, 4);
    return b;
  };
  const fragHdr = (nh: number, off: number, more: number) => {
    const b = Buffer.alloc(8);
    b[0] = nh;
    b.writeUInt16BE((off << 3) | more, 2);
    b.writeUInt32BE(99, 4);
    return b;
  };
  const out: Buffer[] = [];
  for (const n of [0, 1, 3, 4, 7, 8, 20, 100]) {
    out.push(v4(UDP, u(n)), v4(1, icmp(8, n)), v4(1, icmp(0, n)), v6(UDP, u(n)), v6(58, icmp(128, n)), v4(UDP, u(n), Buffer.from([0x94, 4, 0, 0])));
    out.push(v4(TCP, t(n)), v6(TCP, t(n)), v4(132, u(n)), v4(47, u(n)));
  }
  // Truncated transport headers (frames shorter than their IP header: BPF_PROG_TEST_RUN refuses them).
  out.push(v4(TCP, Buffer.alloc(10)), v4(UDP, Buffer.alloc(2)), v6(TCP, Buffer.alloc(5)), v4(1, Buffer.alloc(4)));
  // IPv4 fragments: the first (MF), a later one (offset 40 bytes).
  out.push(v4(UDP, u(40), Buffer.alloc(0), 0x2000), v4(UDP, Buffer.alloc(30), Buffer.alloc(0), 0x0005));
  // IPv6: fragment header (first, later), two option headers before UDP and before TCP.
  out.push(v6(44, frame(fragHdr(UDP, 0, 1), u(30))), v6(44, frame(fragHdr(UDP, 5, 0), Buffer.alloc(20))));
  out.push(v6(IPPROTO_HOPOPTS, frame(ext8(IPPROTO_DSTOPTS), ext8(UDP), u(2))), v6(IPPROTO_HOPOPTS, frame(ext8(TCP), t(0))));
  // tot_len 0 (BIG TCP super-packet).
  out.push(v4(TCP, t(10), Buffer.alloc(0), 0x4000, 0));
  return out;
}
