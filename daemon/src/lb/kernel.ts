// SPDX-License-Identifier: Apache-2.0
// What the LB manager needs from the kernel and the host, as narrow interfaces so that the
// manager also runs against in-memory fakes (test/helpers/lb/fakes.ts): the pinned maps
// (through the Deployment), XDP attachment, the interfaces and their addresses, and a route
// probe.
import dgram from 'node:dgram';
import os from 'node:os';
import type { BatchChunk } from '../bpf/maps.js';
import { BpfMap } from '../bpf/maps.js';
import type { ComponentDef, DeployResult } from '../bpf/deployment.js';
import type { XdpRecord } from '../bpf/manifest.js';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { ERRNO } from '../sys/errno.js';
import { readSysctl, type ReadSysctl } from './host.js';
import { CLOCK_MONOTONIC, clockNs } from '../sys/libc.js';
import { listLinks, watchLinks } from '../net/netlink.js';
import { ipText, parseIp, type Family, type IpAddr } from '../net/ip.js';
import { LB_MAP } from './components.js';
import { RING_SIZE, U32 } from './wire.js';
import { decodeU32, u32Key } from './codec/fields.js';

/** The part of BpfMap the manager uses (BpfMap satisfies it). */
export interface LbKernelMap {
  readonly name: string;
  readonly maxEntries: number;
  readonly keySize: number;
  readonly valueBytes: number;
  lookup(key: Uint8Array, out?: Buffer): Buffer | null;
  update(key: Uint8Array, value: Uint8Array, flags?: number): void;
  delete(key: Uint8Array): boolean;
  forEachChunk(onChunk: (c: BatchChunk) => void, chunk?: number): void;
  /** Optional batch update (fakes); real maps use BPF_MAP_UPDATE_BATCH through their fd. */
  updateBatch?(keys: Buffer, values: Buffer, count: number): void;
}

/** The part of Deployment the manager uses (Deployment satisfies it). */
export interface LbDeployment {
  deploy(def: ComponentDef): DeployResult;
  map(name: string): LbKernelMap;
  attachXdp(ifindex: number, ifname: string, prog: string, mode: 'native' | 'generic'): 'adopted' | 'attached' | 'replaced';
  detachXdp(ifindex: number): void;
  xdpRecords(): XdpRecord[];
}

export interface HostAddress {
  family: Family;
  address: string;
  /** Prefix length of the interface's subnet. */
  prefix: number;
}

/** The host around the manager: interfaces, addresses, clocks, route probes. */
export interface LbHost {
  links(): Array<{ ifindex: number; name: string }>;
  /** Addresses by interface name (non-loopback). */
  addresses(): Map<string, HostAddress[]>;
  /**
   * Asks the kernel for the route to `addr` (a connected UDP socket) and sends one empty
   * datagram to the discard port, which makes the kernel resolve the next hop's MAC for
   * bpf_fib_lookup. Returns the source address the kernel chose. Throws on no route.
   */
  probe(addr: IpAddr): Promise<{ local: string }>;
  monotonicNs(): bigint;
  realtimeNs(): bigint;
  /** A sysctl of the daemon's network namespace (`net.ipv4.ip_forward`), or null when absent. */
  sysctl: ReadSysctl;
  /** Calls `onChange` when interfaces appear, go or change; returns a function that stops it. */
  watchLinks?(onChange: () => void): () => void;
}

export function systemHost(): LbHost {
  return {
    links: () => listLinks().map((l) => ({ ifindex: l.ifindex, name: l.name })),
    sysctl: readSysctl,
    watchLinks: (onChange) => {
      const w = watchLinks(onChange);
      return () => w.close();
    },
    addresses: () => {
      const out = new Map<string, HostAddress[]>();
      for (const [name, list] of Object.entries(os.networkInterfaces())) {
        const addrs: HostAddress[] = [];
        for (const a of list ?? []) {
          if (a.internal) continue;
          const prefix = Number((a.cidr ?? '').split('/')[1] ?? (a.family === 'IPv4' ? 32 : 128));
          addrs.push({ family: a.family === 'IPv4' ? 'ipv4' : 'ipv6', address: a.address.split('%')[0]!, prefix });
        }
        out.set(name, addrs);
      }
      return out;
    },
    probe: (addr) =>
      new Promise((resolve, reject) => {
        const sock = dgram.createSocket(addr.family === 'ipv4' ? 'udp4' : 'udp6');
        const fail = (err: Error) => {
          sock.close();
          reject(err);
        };
        sock.once('error', fail);
        // On failure (no route) Node calls this callback with the error instead of emitting 'error'.
        const onConnect = (err?: Error) => {
          if (err) {
            fail(err);
            return;
          }
          let local: string;
          try {
            local = sock.address().address;
          } catch (err) {
            fail(err as Error);
            return;
          }
          sock.send(Buffer.alloc(0), (err) => {
            sock.close();
            // The send only helps neighbour resolution; the route answer is what matters.
            if (err && (err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') reject(err);
            else resolve({ local });
          });
        };
        sock.connect(9, ipText(addr), onConnect as () => void);
      }),
    monotonicNs: () => clockNs(CLOCK_MONOTONIC),
    realtimeNs: () => BigInt(Date.now()) * 1_000_000n,
  };
}

/** True when `addr` lies in `net/prefix`. */
export function inSubnet(addr: IpAddr, net: string, prefix: number): boolean {
  const n = parseIp(net);
  if (!n || n.family !== addr.family) return false;
  for (let bit = 0; bit < prefix; bit++) {
    const m = 0x80 >> (bit & 7);
    if ((addr.bytes[bit >> 3]! & m) !== (n.bytes[bit >> 3]! & m)) return false;
  }
  return true;
}

// --- typed access to the LB's maps ---------------------------------------------------------

export type LbMaps = { [K in keyof typeof LB_MAP]: LbKernelMap };

export function openMaps(d: LbDeployment): LbMaps {
  const out = {} as Record<string, LbKernelMap>;
  for (const [k, name] of Object.entries(LB_MAP)) out[k] = d.map(name);
  return out as LbMaps;
}

// The Maglev tables live in an array map of __u32 keys and values (emon_lb_ring). Batches
// of them are plain u32 arrays in the host's byte order, as the kernel takes them: typed
// arrays over explicit ArrayBuffers (koffi takes their addresses; V8 never moves them).

/** Writes `table` at entries [base, base + table.length) of an array map of u32 (one syscall on a real map). */
export function writeU32Range(m: LbKernelMap, base: number, table: Uint32Array): void {
  const n = table.length;
  if (base + n > m.maxEntries) throw new BpfError('updating', m.name, ERRNO.E2BIG, { detail: `entries ${base}..${base + n - 1} beyond ${m.maxEntries}` });
  const ids = new Uint32Array(new ArrayBuffer(n * U32.size));
  for (let i = 0; i < n; i++) ids[i] = base + i;
  const keys = Buffer.from(ids.buffer);
  const values = Buffer.from(table.buffer, table.byteOffset, n * U32.size);
  if (m instanceof BpfMap) {
    const count = new Uint32Array(new ArrayBuffer(4));
    count[0] = n;
    const ret = L.bpf_map_update_batch(m.fd, keys, Buffer.from(values), count, null);
    if (ret < 0) throw new BpfError('updating', m.name, -ret, { detail: `batch of ${n} at ${base}` });
    return;
  }
  if (m.updateBatch) {
    m.updateBatch(keys, Buffer.from(values), n);
    return;
  }
  const at = (b: Buffer, i: number) => b.subarray(i * U32.size, (i + 1) * U32.size);
  for (let i = 0; i < n; i++) m.update(at(keys, i), at(values, i));
}

/** Reads entries [base, base + n) of an array map of u32. */
export function readU32Range(m: LbKernelMap, base: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  if (m instanceof BpfMap) {
    const keys = new Uint32Array(new ArrayBuffer(n * U32.size));
    const values = new Uint32Array(new ArrayBuffer(n * U32.size));
    // An array's batch token is the last key read: start right before `base`.
    const inBatch = new Uint32Array(new ArrayBuffer(4));
    inBatch[0] = (base - 1) >>> 0;
    const outBatch = Buffer.from(new ArrayBuffer(4));
    const count = new Uint32Array(new ArrayBuffer(4));
    count[0] = n;
    const ret = L.bpf_map_lookup_batch(m.fd, base === 0 ? null : Buffer.from(inBatch.buffer), outBatch, Buffer.from(keys.buffer), Buffer.from(values.buffer), count, null);
    if (ret < 0 && ret !== -ERRNO.ENOENT) throw new BpfError('reading', m.name, -ret, { detail: `batch of ${n} at ${base}` });
    const got = count[0]!;
    for (let i = 0; i < got; i++) {
      const k = keys[i]! - base;
      if (k >= 0 && k < n) out[k] = values[i]!;
    }
    if (got === n) return out;
  }
  for (let i = 0; i < n; i++) {
    const v = m.lookup(u32Key(base + i));
    out[i] = v ? decodeU32(v) : 0;
  }
  return out;
}

/** Ring entry index of a VIP's table half. */
export function ringBase(slot: number, half: number): number {
  return (slot * 2 + (half & 1)) * RING_SIZE;
}

/** Every entry of a map as (key, value) copies. */
export function entries(m: LbKernelMap): Array<{ key: Buffer; value: Buffer }> {
  const out: Array<{ key: Buffer; value: Buffer }> = [];
  m.forEachChunk((c) => {
    for (let i = 0; i < c.count; i++) {
      out.push({
        key: Buffer.from(c.keys.subarray(i * m.keySize, (i + 1) * m.keySize)),
        value: Buffer.from(c.values.subarray(i * m.valueBytes, (i + 1) * m.valueBytes)),
      });
    }
  });
  return out;
}

/** Number of entries of a map (no copies). */
export function countEntries(m: LbKernelMap): number {
  let n = 0;
  m.forEachChunk((c) => {
    n += c.count;
  });
  return n;
}
