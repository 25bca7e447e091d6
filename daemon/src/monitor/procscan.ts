// SPDX-License-Identifier: Apache-2.0
// The start-up socket scan done in user space: the last alternative, which no verifier can
// refuse. It joins what `ss -p` joins: the kernel's socket tables (/proc/net/{tcp,tcp6,
// udp,udp6}: tuple, state, inode) with every process's descriptors (/proc/<pid>/fd ->
// `socket:[inode]`), then writes the owners the BPF scan would write (emon_tuples for
// connected sockets, emon_binds for listening and bound ones; `how` = proc) without
// overwriting anything a hook learned. The classifier picks them up for flows that exist
// already (it looks again at unowned flows once a tick).
//
// It never holds the event loop for long: the work runs in slices of a few milliseconds
// with the loop free in between (about 1 s of slices for 50,000 sockets here:
// bench/scan).
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import type { BpfMap } from '../bpf/maps.js';
import { BPF_NOEXIST } from '../bpf/uapi.js';
import { CLOCK_BOOTTIME, clockNs } from '../sys/libc.js';
import { cgroup2Root } from '../sys/mounts.js';
import { ENDPOINT, FLOW_KEY, OWNER } from './wire.js';
import { markOwnerPorts } from './ownerports.js';
import { AF_INET, AF_INET6 } from '../net/ip.js';

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const TCP_LISTEN = 0x0a;
const HOW_PROC = 6;

/** One row of /proc/net/{tcp,udp}[6]. Addresses are 16 bytes (IPv4 in the first 4). */
export interface KernelSocket {
  family: number;
  proto: number;
  laddr: Buffer;
  lport: number;
  raddr: Buffer;
  rport: number;
  state: number;
  inode: number;
}

export interface ProcScanResult {
  /** Sockets recorded (tuples and endpoints written). */
  sockets: number;
  /** Sockets of the tables that no visible process holds (kernel sockets, other pid namespaces). */
  unheld: number;
  processes: number;
  namespaces: number;
  durationMs: number;
  /** Longest stretch the scan kept the event loop busy. */
  maxSliceMs: number;
}

/** Decodes an address column (`0100007F:0035`, or 32 hex digits for IPv6): 4-byte words in the kernel's byte order. */
export function parseProcAddr(col: string, family: number): { addr: Buffer; port: number } {
  const colon = col.indexOf(':');
  const hex = col.slice(0, colon);
  const port = parseInt(col.slice(colon + 1), 16);
  const addr = Buffer.alloc(16);
  const words = family === AF_INET ? 1 : 4;
  if (hex.length !== words * 8) throw new Error(`unexpected address ${col}`);
  for (let w = 0; w < words; w++) {
    // /proc prints each 32-bit word as the host sees it (%08X of the __be32 read as a u32).
    addr.writeUInt32LE(parseInt(hex.slice(w * 8, w * 8 + 8), 16) >>> 0, w * 4);
  }
  return { addr, port };
}

const V4MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function isV4Mapped(a: Buffer): boolean {
  return a.compare(V4MAPPED, 0, 12, 0, 12) === 0;
}

function isZero(a: Buffer): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== 0) return false;
  return true;
}

/** Parses one /proc/net table; `family` and `proto` from the file name. */
export function parseProcNet(text: string, family: number, proto: number): KernelSocket[] {
  const out: KernelSocket[] = [];
  let start = text.indexOf('\n') + 1; // header line
  while (start > 0 && start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const cols = text.slice(start, end).trim().split(/\s+/);
    start = end + 1;
    if (cols.length < 10) continue;
    const inode = Number(cols[9]);
    if (!inode) continue; // TIME_WAIT and request sockets: no file, no process
    const l = parseProcAddr(cols[1]!, family);
    const r = parseProcAddr(cols[2]!, family);
    out.push({ family, proto, laddr: l.addr, lport: l.port, raddr: r.addr, rport: r.port, state: parseInt(cols[3]!, 16), inode });
  }
  return out;
}

/**
 * The keys the kernel side would use for this socket: the flow key of a connected socket,
 * or the endpoint of a listening or bound one. Sockets on IPv4-mapped IPv6 addresses are
 * keyed as IPv4, like the packets they send (bpf/monitor/helpers.bpf.h flow_key_from_sk).
 */
export function socketKeys(s: KernelSocket): { tuple: Buffer | null; endpoint: Buffer | null } {
  let family = s.family;
  let laddr = s.laddr;
  let raddr = s.raddr;
  if (family === AF_INET6 && (isV4Mapped(raddr) || (isV4Mapped(laddr) && isZero(raddr)))) {
    family = AF_INET;
    laddr = Buffer.concat([laddr.subarray(12, 16), Buffer.alloc(12)]);
    raddr = Buffer.concat([raddr.subarray(12, 16), Buffer.alloc(12)]);
  }
  if (s.rport === 0) {
    if (s.lport === 0) return { tuple: null, endpoint: null };
    const ep = Buffer.alloc(ENDPOINT.size);
    ep[ENDPOINT.fields.family.offset] = family;
    ep[ENDPOINT.fields.proto.offset] = s.proto;
    ep.writeUInt16LE(s.lport, ENDPOINT.fields.port.offset);
    laddr.copy(ep, ENDPOINT.fields.addr.offset);
    return { tuple: null, endpoint: ep };
  }
  if (s.proto === IPPROTO_TCP && s.state === TCP_LISTEN) return { tuple: null, endpoint: null };
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = family;
  k[FLOW_KEY.fields.proto.offset] = s.proto;
  k.writeUInt16LE(s.lport, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(s.rport, FLOW_KEY.fields.rport.offset);
  laddr.copy(k, FLOW_KEY.fields.laddr.offset);
  raddr.copy(k, FLOW_KEY.fields.raddr.offset);
  return { tuple: k, endpoint: null };
}

/** Runs work in slices: yields to the event loop whenever a slice has used its budget. */
class Slicer {
  private t0 = performance.now();
  maxSliceMs = 0;
  constructor(private readonly budgetMs: number) {}
  async tick(): Promise<void> {
    const used = performance.now() - this.t0;
    if (used < this.budgetMs) return;
    this.maxSliceMs = Math.max(this.maxSliceMs, used);
    await yieldLoop();
    this.t0 = performance.now();
  }
  end(): void {
    this.maxSliceMs = Math.max(this.maxSliceMs, performance.now() - this.t0);
  }
}

function listPids(proc: string): number[] {
  return fs
    .readdirSync(proc)
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .sort((a, b) => a - b);
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function netnsOf(proc: string, pid: number | 'self'): string | null {
  try {
    return fs.readlinkSync(path.join(proc, String(pid), 'ns/net'));
  } catch {
    return null;
  }
}

const SOCKET_LINK = /^socket:\[(\d+)\]$/;

export interface ProcScanOptions {
  owners: { tuples: BpfMap; binds: BpfMap };
  /** emon_owner_ports: a socket's local port is marked before its tuples or binds entry (ownerports.ts). */
  ownerPorts: BpfMap;
  /** Every network namespace (trackAllNamespaces), or only the daemon's own. */
  allNamespaces: boolean;
  /** procfs to read (tests point it elsewhere only for parsing). */
  proc?: string;
  /** Longest slice of work between two yields to the event loop. */
  sliceMs?: number;
}

/** Scans /proc and records the owner of every TCP and UDP socket a process holds. */
export async function procSocketScan(opts: ProcScanOptions): Promise<ProcScanResult> {
  const proc = opts.proc ?? '/proc';
  const slicer = new Slicer(opts.sliceMs ?? 4);
  const t0 = performance.now();
  const pids = listPids(proc);

  // The socket tables, one read per namespace (any process in it shows it).
  const ownNs = netnsOf(proc, 'self');
  const tablesFrom = new Map<string, number | 'self'>();
  if (ownNs) tablesFrom.set(ownNs, 'self');
  if (opts.allNamespaces) {
    for (const pid of pids) {
      const ns = netnsOf(proc, pid);
      if (ns && !tablesFrom.has(ns)) tablesFrom.set(ns, pid);
      await slicer.tick();
    }
  }
  const byInode = new Map<number, KernelSocket>();
  for (const from of tablesFrom.values()) {
    for (const [file, family, proto] of [['tcp', AF_INET, IPPROTO_TCP], ['tcp6', AF_INET6, IPPROTO_TCP], ['udp', AF_INET, IPPROTO_UDP], ['udp6', AF_INET6, IPPROTO_UDP]] as const) {
      // Read off the event loop (the kernel formats these tables as they are read).
      let text: string;
      try {
        text = await fs.promises.readFile(path.join(proc, String(from), 'net', file), 'utf8');
      } catch {
        continue; // the process left, or IPv6 is disabled
      }
      for (const s of parseProcNet(text, family, proto)) byInode.set(s.inode, s);
      await slicer.tick();
    }
  }

  // Every process's descriptors, lowest pid first: the first holder wins, as in the BPF scan.
  const cgRoot = cgroup2Root();
  const cgIds = new Map<string, bigint>();
  const owner = Buffer.alloc(OWNER.size);
  let sockets = 0;
  let processes = 0;
  const claimed = new Set<number>();
  for (const pid of pids) {
    await slicer.tick();
    if (claimed.size === byInode.size) break;
    const fdDir = path.join(proc, String(pid), 'fd');
    let fds: string[];
    try {
      fds = fs.readdirSync(fdDir);
    } catch {
      continue; // gone, or a kernel thread
    }
    let ownerReady = false;
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(path.join(fdDir, fd));
      } catch {
        continue;
      }
      const m = SOCKET_LINK.exec(link);
      if (!m) continue;
      const inode = Number(m[1]);
      const s = byInode.get(inode);
      if (!s || claimed.has(inode)) continue;
      claimed.add(inode);
      if (!ownerReady) {
        if (!fillOwner(owner, proc, pid, cgRoot, cgIds)) break;
        ownerReady = true;
        processes++;
      }
      const { tuple, endpoint } = socketKeys(s);
      if (tuple) {
        markOwnerPorts(opts.ownerPorts, [tuple.readUInt16LE(FLOW_KEY.fields.lport.offset)]);
        opts.owners.tuples.tryUpdate(tuple, owner, BPF_NOEXIST);
      } else if (endpoint) {
        markOwnerPorts(opts.ownerPorts, [endpoint.readUInt16LE(ENDPOINT.fields.port.offset)]);
        opts.owners.binds.tryUpdate(endpoint, owner, BPF_NOEXIST);
      } else {
        continue;
      }
      sockets++;
    }
  }
  slicer.end();
  return {
    sockets,
    unheld: byInode.size - claimed.size,
    processes,
    namespaces: tablesFrom.size,
    durationMs: Math.round(performance.now() - t0),
    maxSliceMs: Math.round(slicer.maxSliceMs * 10) / 10,
  };
}

/** The owner record of a process, as the kernel hooks write it; false if it is gone. */
function fillOwner(o: Buffer, proc: string, pid: number, cgRoot: string | null, cgIds: Map<string, bigint>): boolean {
  const status = readOr(path.join(proc, String(pid), 'status'), '');
  if (!status) return false;
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const comm = readOr(path.join(proc, String(pid), 'comm'), '').replace(/\n$/, '');
  o.fill(0);
  o.writeUInt32LE(pid, OWNER.fields.tgid.offset);
  o.writeUInt32LE(pid, OWNER.fields.pid.offset);
  o.writeUInt32LE(uid, OWNER.fields.uid.offset);
  o.writeUInt32LE(gid, OWNER.fields.gid.offset);
  o.writeBigUInt64LE(cgroupId(proc, pid, cgRoot, cgIds), OWNER.fields.cgroup_id.offset);
  o.writeBigUInt64LE(clockNs(CLOCK_BOOTTIME), OWNER.fields.learned_ns.offset);
  Buffer.from(comm, 'utf8').copy(o, OWNER.fields.comm.offset, 0, OWNER.fields.comm.size - 1);
  o[OWNER.fields.how.offset] = HOW_PROC;
  return true;
}

/** The cgroup v2 id of a process: the inode number of its cgroup directory (what bpf_get_current_cgroup_id returns). */
function cgroupId(proc: string, pid: number, root: string | null, cache: Map<string, bigint>): bigint {
  if (!root) return 0n;
  const line = /^0::(.*)$/m.exec(readOr(path.join(proc, String(pid), 'cgroup'), ''));
  if (!line) return 0n;
  const rel = line[1]!;
  let id = cache.get(rel);
  if (id === undefined) {
    try {
      id = fs.statSync(path.join(root, rel), { bigint: true }).ino;
    } catch {
      id = 0n;
    }
    cache.set(rel, id);
  }
  return id;
}
