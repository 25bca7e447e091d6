// SPDX-License-Identifier: Apache-2.0
// tcpdump as an independent oracle: capture on an interface, then read the pcap file and
// count IP-layer bytes (from each packet's own IP header: IPv4 total length, IPv6 40 +
// payload length) per flow. Later fragments, which carry no ports, are joined to their
// flow by fragment id, the same rule the classifier must follow.
import fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { Host } from './lab.js';

export interface Packet {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  ipBytes: number;
  sport: number | null;
  dport: number | null;
  fragment: boolean;
  ipOptions: boolean;
  v6ExtHeaders: boolean;
  icmpType: number | null;
}

function ip4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function ip6(b: Buffer, o: number): string {
  const w: string[] = [];
  for (let i = 0; i < 8; i++) w.push(b.readUInt16BE(o + 2 * i).toString(16));
  // same compression as the daemon (RFC 5952): longest run of zero words
  let best = -1;
  let len = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === '0') j++;
    if (j - i > len && j - i > 1) { best = i; len = j - i; }
    i = j;
  }
  return best < 0 ? w.join(':') : `${w.slice(0, best).join(':')}::${w.slice(best + len).join(':')}`;
}

export function readPcap(file: string): Packet[] {
  const b = fs.readFileSync(file);
  if (b.length < 24) return [];
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const linktype = u32(20);
  const out: Packet[] = [];
  const fragPorts = new Map<string, [number, number]>();
  const pending: Array<{ p: Packet; key: string }> = [];
  for (let off = 24; off + 16 <= b.length; ) {
    const incl = u32(off + 8);
    const pkt = b.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    let l3 = linktype === 1 ? 14 : linktype === 113 ? 16 : 0;
    let etype = linktype === 1 ? pkt.readUInt16BE(12) : linktype === 113 ? pkt.readUInt16BE(14) : 0;
    if (etype === 0x8100 && linktype === 1) {
      etype = pkt.readUInt16BE(16);
      l3 += 4;
    }
    if (etype === 0x0800) {
      const ihl = (pkt[l3]! & 0x0f) * 4;
      const proto = pkt[l3 + 9]!;
      const frag = pkt.readUInt16BE(l3 + 6);
      const isFrag = (frag & 0x3fff) !== 0;
      const first = (frag & 0x1fff) === 0;
      const p: Packet = {
        family: 4, src: ip4(pkt, l3 + 12), dst: ip4(pkt, l3 + 16), proto, ipBytes: pkt.readUInt16BE(l3 + 2),
        sport: null, dport: null, fragment: isFrag, ipOptions: ihl > 20, v6ExtHeaders: false, icmpType: null,
      };
      const key = `4/${p.src}/${p.dst}/${proto}/${pkt.readUInt16BE(l3 + 4)}`;
      if (first) l4(p, pkt, l3 + ihl);
      if (isFrag && first && p.sport !== null) fragPorts.set(key, [p.sport, p.dport!]);
      if (isFrag && !first) pending.push({ p, key });
      out.push(p);
    } else if (etype === 0x86dd) {
      let nh = pkt[l3 + 6]!;
      let o = l3 + 40;
      const p: Packet = {
        family: 6, src: ip6(pkt, l3 + 8), dst: ip6(pkt, l3 + 24), proto: nh, ipBytes: 40 + pkt.readUInt16BE(l3 + 4),
        sport: null, dport: null, fragment: false, ipOptions: false, v6ExtHeaders: false, icmpType: null,
      };
      let first = true;
      let key = '';
      for (let i = 0; i < 8 && [0, 43, 44, 51, 60, 135].includes(nh); i++) {
        p.v6ExtHeaders = true;
        if (nh === 44) {
          p.fragment = true;
          first = (pkt.readUInt16BE(o + 2) & 0xfff8) === 0;
          key = `6/${p.src}/${p.dst}/${pkt.readUInt32BE(o + 4)}`;
          nh = pkt[o]!;
          o += 8;
          if (!first) break;
          continue;
        }
        const next = pkt[o]!;
        o += nh === 51 ? (pkt[o + 1]! + 2) * 4 : (pkt[o + 1]! + 1) * 8;
        nh = next;
      }
      p.proto = nh;
      if (first) l4(p, pkt, o);
      if (p.fragment && first && p.sport !== null) fragPorts.set(key, [p.sport, p.dport!]);
      if (p.fragment && !first) pending.push({ p, key: key });
      out.push(p);
    }
  }
  for (const { p, key } of pending) {
    const ports = fragPorts.get(key.startsWith('6/') ? key : `${key}`);
    if (ports) [p.sport, p.dport] = ports;
  }
  return out;
}

function l4(p: Packet, pkt: Buffer, o: number): void {
  if (o + 4 > pkt.length) return;
  if (p.proto === 6 || p.proto === 17 || p.proto === 132 || p.proto === 136) {
    p.sport = pkt.readUInt16BE(o);
    p.dport = pkt.readUInt16BE(o + 2);
  } else if (p.proto === 1 || p.proto === 58) {
    p.icmpType = pkt[o]!;
  }
}

/** IP-layer totals of a flow seen from `local`: tx = packets from local, rx = packets to local. */
export function flowTotals(pkts: Packet[], m: { local: string; remote: string; proto: number; localPort?: number; remotePort?: number }) {
  const t = { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, fragments: 0, ipOptions: false, v6ExtHeaders: false };
  for (const p of pkts) {
    if (p.proto !== m.proto) continue;
    const tx = p.src === m.local && p.dst === m.remote;
    const rx = p.src === m.remote && p.dst === m.local;
    if (!tx && !rx) continue;
    const lp = tx ? p.sport : p.dport;
    const rp = tx ? p.dport : p.sport;
    if (m.localPort !== undefined && lp !== m.localPort) continue;
    if (m.remotePort !== undefined && rp !== m.remotePort) continue;
    if (tx) {
      t.txBytes += p.ipBytes;
      t.txPackets++;
    } else {
      t.rxBytes += p.ipBytes;
      t.rxPackets++;
    }
    if (p.fragment) t.fragments++;
    t.ipOptions ||= p.ipOptions;
    t.v6ExtHeaders ||= p.v6ExtHeaders;
  }
  return t;
}

export class Capture {
  private constructor(private readonly child: ChildProcess, readonly file: string) {}

  /** Starts tcpdump on `ifname` inside `host`; resolves once it is capturing. `snaplen`:
   * bytes kept per packet (256: headers; more for payload such as a TLS ClientHello). */
  static async start(host: Host, ifname: string, file: string, filter: string[] = [], snaplen = 256): Promise<Capture> {
    const child = host.spawn('tcpdump', ['-i', ifname, '-n', '--immediate-mode', '-Z', 'root', '-U', '-s', String(snaplen), '-w', file, ...filter]);
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (err.includes('listening on')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (c) => reject(new Error(`tcpdump exited ${c}: ${err}`)));
    });
    return new Capture(child, file);
  }

  /** Stops the capture (after letting in-flight packets land) and returns the packets. */
  async stop(settleMs = 300): Promise<Packet[]> {
    await new Promise((r) => setTimeout(r, settleMs));
    const done = new Promise((r) => this.child.once('exit', r));
    process.kill(this.child.pid!, 'SIGINT');
    await done;
    return readPcap(this.file);
  }
}
