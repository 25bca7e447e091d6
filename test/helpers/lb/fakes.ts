// SPDX-License-Identifier: Apache-2.0
// In-memory stand-ins for the LB manager's kernel and host (daemon/src/lb/kernel.ts
// interfaces): maps with the kernel's update-flag semantics, XDP attach records, a host
// with interfaces and routes, and a fault injector that fails the n-th kernel write.
import crypto from 'node:crypto';
import type { BatchChunk } from '../../../daemon/src/bpf/maps.js';
import type { ComponentDef, DeployResult } from '../../../daemon/src/bpf/deployment.js';
import type { XdpRecord } from '../../../daemon/src/bpf/manifest.js';
import { BpfError } from '../../../daemon/src/bpf/errors.js';
import { BPF_EXIST, BPF_NOEXIST } from '../../../daemon/src/bpf/uapi.js';
import { ERRNO } from '../../../daemon/src/sys/errno.js';
import { LB_MAP } from '../../../daemon/src/lb/components.js';
import { LB_MAP_TYPES, RING_SIZE } from '../../../daemon/src/lb/wire.js';
import { inSubnet, type HostAddress, type LbDeployment, type LbHost, type LbKernelMap } from '../../../daemon/src/lb/kernel.js';
import { ipText, type IpAddr } from '../../../daemon/src/net/ip.js';

export const NCPU = 2;

export class Faults {
  writes = 0;
  /** Fail the write with this number (1-based), or never (0). */
  failAt = 0;

  check(name: string): void {
    this.writes++;
    if (this.failAt && this.writes === this.failAt) throw new BpfError('updating', name, ERRNO.EIO, { detail: 'injected' });
  }
}

interface Spec {
  kind: 'array' | 'hash';
  keySize: number;
  valueSize: number;
  maxEntries: number;
  percpu?: boolean;
}

export class FakeMap implements LbKernelMap {
  readonly valueBytes: number;
  readonly keySize: number;
  readonly maxEntries: number;
  private readonly hash = new Map<string, Buffer>();
  private readonly array: Buffer | null;

  constructor(readonly name: string, spec: Spec, private readonly faults: Faults) {
    this.keySize = spec.keySize;
    this.maxEntries = spec.maxEntries;
    this.valueBytes = spec.percpu ? Math.ceil(spec.valueSize / 8) * 8 * NCPU : spec.valueSize;
    this.array = spec.kind === 'array' ? Buffer.alloc(this.valueBytes * spec.maxEntries) : null;
  }

  lookup(key: Uint8Array, out?: Buffer): Buffer | null {
    let v: Buffer | undefined;
    if (this.array) {
      const i = Buffer.from(key).readUInt32LE(0);
      if (i >= this.maxEntries) return null;
      v = this.array.subarray(i * this.valueBytes, (i + 1) * this.valueBytes);
    } else {
      v = this.hash.get(Buffer.from(key).toString('hex'));
      if (!v) return null;
    }
    const o = out ?? Buffer.alloc(this.valueBytes);
    v.copy(o);
    return o;
  }

  update(key: Uint8Array, value: Uint8Array, flags = 0): void {
    this.faults.check(this.name);
    if (key.length !== this.keySize) throw new BpfError('updating', this.name, ERRNO.EINVAL, { detail: 'key size' });
    if (value.length !== this.valueBytes) throw new BpfError('updating', this.name, ERRNO.EINVAL, { detail: `value size ${value.length} != ${this.valueBytes}` });
    if (this.array) {
      const i = Buffer.from(key).readUInt32LE(0);
      if (i >= this.maxEntries) throw new BpfError('updating', this.name, ERRNO.E2BIG);
      if (flags === BPF_NOEXIST) throw new BpfError('updating', this.name, ERRNO.EEXIST);
      Buffer.from(value).copy(this.array, i * this.valueBytes);
      return;
    }
    const k = Buffer.from(key).toString('hex');
    const have = this.hash.has(k);
    if (flags === BPF_NOEXIST && have) throw new BpfError('updating', this.name, ERRNO.EEXIST);
    if (flags === BPF_EXIST && !have) throw new BpfError('updating', this.name, ERRNO.ENOENT);
    if (!have && this.hash.size >= this.maxEntries) throw new BpfError('updating', this.name, ERRNO.E2BIG);
    this.hash.set(k, Buffer.from(value));
  }

  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    this.faults.check(this.name);
    const saved = this.faults.failAt;
    this.faults.failAt = 0; // one batch, one injectable failure
    try {
      for (let i = 0; i < count; i++) this.update(keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes));
    } finally {
      this.faults.writes -= count;
      this.faults.failAt = saved;
    }
  }

  delete(key: Uint8Array): boolean {
    this.faults.check(this.name);
    if (this.array) throw new BpfError('deleting', this.name, ERRNO.EINVAL);
    return this.hash.delete(Buffer.from(key).toString('hex'));
  }

  forEachChunk(onChunk: (c: BatchChunk) => void, chunk = 4096): void {
    const rows: Array<[Buffer, Buffer]> = [];
    if (this.array) {
      for (let i = 0; i < this.maxEntries; i++) {
        const k = Buffer.alloc(4);
        k.writeUInt32LE(i);
        rows.push([k, this.array.subarray(i * this.valueBytes, (i + 1) * this.valueBytes)]);
      }
    } else {
      for (const [k, v] of this.hash) rows.push([Buffer.from(k, 'hex'), v]);
    }
    for (let i = 0; i < rows.length; i += chunk) {
      const part = rows.slice(i, i + chunk);
      onChunk({ keys: Buffer.concat(part.map((r) => r[0])), values: Buffer.concat(part.map((r) => r[1])), count: part.length });
    }
  }

  /** Content digest (tests compare states). */
  digest(): string {
    const h = crypto.createHash('sha256');
    if (this.array) h.update(this.array);
    else for (const k of [...this.hash.keys()].sort()) h.update(k).update(this.hash.get(k)!);
    return h.digest('hex');
  }

  /** Test-only: puts an entry without fault accounting (to stage data-path state). */
  put(key: Buffer, value: Buffer): void {
    if (this.array) value.copy(this.array, key.readUInt32LE(0) * this.valueBytes);
    else this.hash.set(key.toString('hex'), Buffer.from(value));
  }
}

export interface Sizes {
  vips: number;
  backends: number;
  rules: number;
}

export class FakeDeployment implements LbDeployment {
  readonly faults = new Faults();
  readonly maps = new Map<string, FakeMap>();
  readonly xdp = new Map<number, XdpRecord>();
  failAttach = false;
  deploys = 0;

  constructor(sizes: Sizes = { vips: 4, backends: 16, rules: 8 }) {
    // Key and value sizes from the wire format (checked against lb.bpf.o's map definitions).
    const s = (map: keyof typeof LB_MAP, kind: Spec['kind'], maxEntries: number, percpu = false): [string, Spec] =>
      [LB_MAP[map], { kind, keySize: LB_MAP_TYPES[map].key.size, valueSize: LB_MAP_TYPES[map].value.size, maxEntries, percpu }];
    const specs: Record<string, Spec> = Object.fromEntries([
      s('vips', 'hash', sizes.vips),
      s('ring', 'array', sizes.vips * 2 * RING_SIZE),
      s('backends', 'array', sizes.backends),
      s('conns', 'hash', 1024),
      s('long', 'hash', 1024),
      s('nat', 'hash', 1024),
      s('ifaddr', 'hash', 64),
      s('nhc', 'array', sizes.backends, true),
      s('vports', 'array', 65536),
      s('vstats', 'array', sizes.vips, true),
      s('bstats', 'array', sizes.backends, true),
      s('stats', 'array', 32, true),
      s('drops', 'array', 32, true),
      s('drop4', 'hash', sizes.rules),
      s('drop6', 'hash', sizes.rules),
      s('dproto', 'hash', sizes.rules),
      s('dcnt', 'array', sizes.rules, true),
      s('cfg', 'array', 1),
      s('vipcfg', 'array', sizes.vips),
    ]);
    for (const [name, spec] of Object.entries(specs)) this.maps.set(name, new FakeMap(name, spec, this.faults));
  }

  deploy(def: ComponentDef): DeployResult {
    this.deploys++;
    return { component: def.name, adopted: this.deploys > 1, probes: [] };
  }

  map(name: string): FakeMap {
    const m = this.maps.get(name);
    if (!m) throw new Error(`no fake map ${name}`);
    return m;
  }

  attachXdp(ifindex: number, ifname: string, prog: string, mode: 'native' | 'generic'): 'adopted' | 'attached' | 'replaced' {
    this.faults.check(`xdp ${ifname}`);
    if (this.failAttach) throw new BpfError('attaching', prog, ERRNO.EBUSY, { target: ifname });
    const had = this.xdp.get(ifindex);
    this.xdp.set(ifindex, { ifindex, ifname, program: prog, mode, link: `xdp_${ifname}`, attachedAt: 'now' });
    return had ? 'adopted' : 'attached';
  }

  detachXdp(ifindex: number): void {
    this.xdp.delete(ifindex);
  }

  xdpRecords(): XdpRecord[] {
    return [...this.xdp.values()];
  }

  /** Digest of everything but counters and the idle halves of the Maglev tables. */
  configDigest(liveTables: Record<string, string>): string {
    const h = crypto.createHash('sha256');
    for (const name of [LB_MAP.vips, LB_MAP.backends, LB_MAP.vipcfg, LB_MAP.drop4, LB_MAP.drop6, LB_MAP.dproto, LB_MAP.vports]) h.update(name).update(this.map(name).digest());
    // Settings, without the next-hop cache generation (a restart bumps it on purpose).
    h.update(this.map(LB_MAP.cfg).lookup(Buffer.alloc(4))!.subarray(0, 20));
    h.update(JSON.stringify(liveTables));
    h.update(JSON.stringify([...this.xdp.values()].map((r) => [r.ifindex, r.ifname, r.mode]).sort()));
    return h.digest('hex');
  }
}

export interface FakeIface {
  ifindex: number;
  name: string;
  addrs: HostAddress[];
}

export class FakeHost implements LbHost {
  now = 1_000_000_000_000n;
  probes: string[] = [];

  constructor(readonly ifaces: FakeIface[] = DEFAULT_IFACES) {}

  links(): Array<{ ifindex: number; name: string }> {
    return [{ ifindex: 1, name: 'lo' }, ...this.ifaces.map((i) => ({ ifindex: i.ifindex, name: i.name }))];
  }

  addresses(): Map<string, HostAddress[]> {
    return new Map(this.ifaces.map((i) => [i.name, i.addrs]));
  }

  async probe(addr: IpAddr): Promise<{ local: string }> {
    this.probes.push(ipText(addr));
    for (const i of this.ifaces) for (const a of i.addrs) if (inSubnet(addr, a.address, a.prefix)) return { local: a.address };
    throw Object.assign(new Error('connect ENETUNREACH'), { code: 'ENETUNREACH' });
  }

  monotonicNs(): bigint {
    return this.now;
  }

  realtimeNs(): bigint {
    return 1_700_000_000_000_000_000n;
  }

  /** Forwarding on, loose reverse-path filter: a host ready to balance (tests change it). */
  sysctls = new Map<string, string>([['net.ipv6.conf.all.forwarding', '1'], ['net.ipv4.conf.all.rp_filter', '0']]);
  sysctl(name: string): string | null {
    if (/^net\.ipv4\.conf\.[^.]+\.forwarding$/.test(name)) return this.sysctls.get(name) ?? '1';
    return this.sysctls.get(name) ?? null;
  }
}

export const DEFAULT_IFACES: FakeIface[] = [
  { ifindex: 2, name: 'front', addrs: [{ family: 'ipv4', address: '198.18.1.2', prefix: 24 }, { family: 'ipv6', address: 'fd00:198::1:2', prefix: 112 }] },
  { ifindex: 3, name: 'back1', addrs: [{ family: 'ipv4', address: '198.18.2.1', prefix: 24 }, { family: 'ipv6', address: 'fd00:198::2:1', prefix: 112 }] },
  { ifindex: 4, name: 'back2', addrs: [{ family: 'ipv4', address: '198.18.3.1', prefix: 24 }, { family: 'ipv6', address: 'fd00:198::3:1', prefix: 112 }] },
];
