// SPDX-License-Identifier: Apache-2.0
// The independent side of the capture tests: which frames of a tcpdump capture belong to
// a process's sockets (by their 5-tuple; later IP fragments, which carry no ports, by the
// first fragment's id), and the frames of a pcapng file as editcap converts it to pcap.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { jsonLines, type Host, type Lab, type LinkInfo } from './lab.js';
import { CTL_MAIN, destroyMonitorLab, monitorLab, PEER, startDaemon, type TestDaemon } from './daemon.js';
import { requireTool } from './privileged.js';
import { readPcapRecords, type PcapRecord } from './pcap-frames.js';

export interface Tuple {
  proto: 'tcp' | 'udp';
  localPort: number;
}

interface Parsed {
  proto: number;
  sport: number | null;
  dport: number | null;
  fragKey: string | null;
  first: boolean;
}

function parse(f: Buffer, l3 = 14): Parsed | null {
  if (f.length < l3 + 20) return null;
  const et = l3 === 14 ? f.readUInt16BE(12) : f[0]! >> 4 === 6 ? 0x86dd : 0x0800;
  if (et === 0x0800) {
    const ihl = (f[l3]! & 0xf) * 4;
    const proto = f[l3 + 9]!;
    const frag = f.readUInt16BE(l3 + 6);
    const isFrag = (frag & 0x3fff) !== 0;
    const first = (frag & 0x1fff) === 0;
    const fragKey = isFrag ? `4/${f.subarray(l3 + 12, l3 + 20).toString('hex')}/${proto}/${f.readUInt16BE(l3 + 4)}` : null;
    const o = l3 + ihl;
    const ports = first && o + 4 <= f.length;
    return { proto, sport: ports ? f.readUInt16BE(o) : null, dport: ports ? f.readUInt16BE(o + 2) : null, fragKey, first };
  }
  if (et === 0x86dd) {
    let nh = f[l3 + 6]!;
    let o = l3 + 40;
    let fragKey: string | null = null;
    let first = true;
    for (let i = 0; i < 8 && [0, 43, 44, 60].includes(nh); i++) {
      if (nh === 44) {
        first = (f.readUInt16BE(o + 2) & 0xfff8) === 0;
        fragKey = `6/${f.subarray(l3 + 8, l3 + 40).toString('hex')}/${f.readUInt32BE(o + 4)}`;
        nh = f[o]!;
        o += 8;
        if (!first) break;
        continue;
      }
      const next = f[o]!;
      o += (f[o + 1]! + 1) * 8;
      nh = next;
    }
    const ports = first && o + 4 <= f.length;
    return { proto: nh, sport: ports ? f.readUInt16BE(o) : null, dport: ports ? f.readUInt16BE(o + 2) : null, fragKey, first };
  }
  return null;
}

/** Frames of `records` whose local port (source if sent, destination if received) is one of the tuples'. */
export function framesOf(records: PcapRecord[], tuples: Tuple[]): PcapRecord[] {
  const want = (p: Parsed) => tuples.some((t) => (t.proto === 'tcp' ? 6 : 17) === p.proto && (p.sport === t.localPort || p.dport === t.localPort));
  const parsed = records.map((r) => parse(r.data));
  const fragsOfMine = new Set<string>();
  parsed.forEach((p) => {
    if (p?.fragKey && p.first && want(p)) fragsOfMine.add(p.fragKey);
  });
  return records.filter((_, i) => {
    const p = parsed[i];
    if (!p) return false;
    if (p.fragKey && !p.first) return fragsOfMine.has(p.fragKey);
    return want(p);
  });
}

/** The packets of a pcapng file, converted to pcap by editcap (Wireshark's reader, not ours). */
export function pcapngFrames(file: string): PcapRecord[] {
  const out = path.join(path.dirname(file), `${path.basename(file)}.pcap`);
  execFileSync('editcap', ['-F', 'pcap', file, out], { stdio: 'pipe' });
  const { records } = readPcapRecords(out);
  fs.rmSync(out, { force: true });
  return records;
}

/** Multiset difference of frames (hex): what `a` has that `b` lacks, and the reverse. */
export function frameDiff(a: PcapRecord[], b: PcapRecord[]): { onlyA: string[]; onlyB: string[] } {
  const count = new Map<string, number>();
  for (const r of a) count.set(r.data.toString('hex'), (count.get(r.data.toString('hex')) ?? 0) + 1);
  const onlyB: string[] = [];
  for (const r of b) {
    const h = r.data.toString('hex');
    const n = count.get(h) ?? 0;
    if (n > 0) count.set(h, n - 1);
    else onlyB.push(h);
  }
  const onlyA = [...count].flatMap(([h, n]) => Array<string>(n).fill(h));
  return { onlyA, onlyB };
}

export interface PcapngOption {
  code: number;
  /** The option's bytes (hex), as Wireshark's pcapng file dissector read them. */
  hex: string;
  fields: Record<string, unknown>;
}
export interface PcapngBlock {
  type: number;
  options: PcapngOption[];
  fields: Record<string, unknown>;
}

/**
 * Every block of a pcapng file with its options, read by Wireshark's own pcapng file
 * dissector (`tshark -X read_format:"MIME Files Format" -T json -x`), independent of the
 * writer under test.
 */
export function pcapngBlocks(file: string): PcapngBlock[] {
  const json = execFileSync('tshark', ['-r', file, '-X', 'read_format:MIME Files Format', '-T', 'json', '-x', '--no-duplicate-keys'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const layers = (JSON.parse(json) as Array<{ _source: { layers: Record<string, Record<string, unknown>> } }>)[0]!._source.layers['file-pcapng']!;
  const raw = layers['pcapng.block'];
  const blocks = (Array.isArray(raw) ? raw : [raw]) as Array<Record<string, unknown>>;
  const list = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
  return blocks.map((b) => {
    const data = (b['pcapng.block.data'] ?? {}) as Record<string, unknown>;
    const opts = list((data['pcapng.options'] as Record<string, unknown> | undefined)?.['pcapng.options.option'] as Record<string, unknown> | Array<Record<string, unknown>> | undefined);
    return {
      type: Number(b['pcapng.block.type']),
      fields: data,
      options: opts.map((o) => {
        const dataRaw = Object.entries(o).find(([k]) => k.startsWith('pcapng.options.option.data') && k.endsWith('_raw'))?.[1] as unknown[] | undefined;
        return { code: Number(o['pcapng.options.option.code']), hex: typeof dataRaw?.[0] === 'string' ? dataRaw[0] : '', fields: o };
      }),
    };
  });
}

/** tcpdump writing every frame of `ifname` in `host` to `file`, resolved once it listens.
 * `inOnly`: what the device received (on a collector: decapsulated copies, not what its own stack sends). */
export async function startTcpdump(host: Host, ifname: string, file: string, inOnly = false): Promise<ChildProcess> {
  const p = host.spawn('tcpdump', ['-i', ifname, ...(inOnly ? ['-Q', 'in'] : []), '-n', '-s', '0', '--immediate-mode', '-U', '-w', file]);
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump on ${ifname} did not start: ${err}`)), 10_000);
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return p;
}

/** Ends a tcpdump started by startTcpdump (SIGINT: it flushes its file), by its pid. */
export async function stopTcpdump(p: ChildProcess): Promise<void> {
  const exited = new Promise((r) => p.once('exit', r));
  process.kill(p.pid!, 'SIGINT');
  await exited;
}

/** Starts `ebpfmonctl capture` in `host`; resolves once the daemon answered (the session is live). */
export async function startCapture(host: Host, socket: string, args: string[], timeoutMs = 20_000): Promise<{ child: ChildProcess; stderr: () => string; exit: Promise<number> }> {
  const child = host.spawn(process.execPath, [CTL_MAIN, '--socket', socket, 'capture', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const exit = new Promise<number>((r) => child.once('exit', (c) => r(c ?? -1)));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`ebpfmonctl capture did not start in ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes('capturing on')) {
        clearTimeout(t);
        resolve();
      }
    });
    void exit.then((c) => reject(new Error(`ebpfmonctl capture exited (${c}): ${err}`)));
  });
  return { child, stderr: () => err, exit };
}

/** The last Interface Statistics Block's counters (isb_ifrecv 4, isb_filteraccept 6, isb_osdrop 7, isb_usrdeliv 8). */
export function lastIsb(file: string): Record<number, number | string> {
  const isbs = pcapngBlocks(file).filter((b) => b.type === 5);
  return Object.fromEntries(isbs.at(-1)!.options.map((o) => [o.code, o.hex.length === 16 ? Number(Buffer.from(o.hex, 'hex').readBigUInt64LE()) : o.hex]));
}

export interface CaptureLab { lab: Lab; mon: Host; peer: Host; link: LinkInfo; daemon: TestDaemon; dir: string }

/**
 * The capture tests' host: a monitored link with the daemon on its `mon` side (that link
 * only), a directory every user's CLI can write its file into, and a UDP sink on the peer
 * at port 9001 for the test's senders.
 */
export async function captureLab(): Promise<CaptureLab> {
  const { lab, mon, peer, link } = await monitorLab();
  // What fails from here (a stale daemon bundle, a daemon that does not start) takes the
  // lab down with it: the caller never got it to destroy.
  let daemon: TestDaemon | undefined;
  try {
    const dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755);
    daemon = await startDaemon(mon, { config: { interfaces: [link.a.ifname] } });
    const srv = jsonLines(peer.spawn(process.execPath, [PEER, 'udp-server', '0.0.0.0', '9001']));
    await srv.next((o) => o.event === 'listening');
    return { lab, mon, peer, link, daemon, dir };
  } catch (err) {
    await destroyMonitorLab(daemon, lab).catch(() => {});
    throw err;
  }
}

/** captureLab() for the describe() it is called in: made before its first test (after
 * checking that `tools` are installed), destroyed after its last even when one failed. The
 * object returned is empty until then. */
export function captureLabSuite(...tools: string[]): CaptureLab {
  const l = {} as CaptureLab;
  before(async () => {
    if (tools.length) requireTool(...tools);
    Object.assign(l, await captureLab());
  });
  after(() => destroyMonitorLab(l.daemon, l.lab));
  return l;
}

/** Complete Enhanced Packet Blocks in a pcapng file, also one being written (a torn last
 * block is not counted; the tests check the format itself elsewhere). */
export function countEpbs(file: string): number {
  const b = fs.readFileSync(file);
  let n = 0;
  for (let o = 0; o + 12 <= b.length; ) {
    const len = b.readUInt32LE(o + 4);
    if (len < 12 || o + len > b.length) break;
    if (b.readUInt32LE(o) === 6) n++;
    o += len;
  }
  return n;
}

/**
 * A node -e script: reports its port, then on the line "go" sends a `bytes`-byte UDP
 * datagram every `everyMs` ms to argv host:port until any other line, then reports its count.
 */
export function udpSenderJs(bytes: number, everyMs: number): string {
  return `
const dgram = require('node:dgram'); const rl = require('node:readline');
const [host, port] = process.argv.slice(1);
const u = dgram.createSocket('udp4'); let sent = 0; let t = null;
u.bind(0, () => {
  console.log(JSON.stringify({ port: u.address().port }));
  rl.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l === 'go') t = setInterval(() => u.send(Buffer.alloc(${bytes}, sent & 0xff), Number(port), host, () => sent++), ${everyMs});
    else { clearInterval(t); setTimeout(() => { console.log(JSON.stringify({ sent })); u.close(); }, 50); }
  });
});`;
}

/** IPv4 UDP frames to port `dport` in a pcap file (Ethernet): for waiting until a truth
 * capture holds what a client sent without waiting for replies. */
export function udpFramesTo(file: string, dport: number): number {
  let n = 0;
  for (const r of readPcapRecords(file).records) {
    const d = r.data;
    if (d.length < 34 || d.readUInt16BE(12) !== 0x0800 || d[23] !== 17) continue;
    const l4 = 14 + (d[14]! & 0x0f) * 4;
    if (d.length >= l4 + 4 && d.readUInt16BE(l4 + 2) === dport) n++;
  }
  return n;
}
