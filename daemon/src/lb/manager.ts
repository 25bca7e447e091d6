// SPDX-License-Identifier: Apache-2.0
// LbManager: the user side of the XDP load balancer. It owns no state the kernel does not
// have: the pinned maps are the configuration (VIPs, backends, Maglev tables, drop list,
// settings), so a restarted daemon rebuilds its view from them and changes nothing.
//
// Every change is validated completely before the first kernel write, and applied so that
// a failure leaves the running configuration as it was:
//   - Maglev tables are double-buffered per VIP: the new table goes into the idle half,
//     then one map update flips the VIP to it (the commit point). Rolling back is flipping
//     back: the old half is never written while it is live.
//   - everything written before the commit point (backend slots, counters, XDP
//     attachments) is undone if a later step fails.
// Changes are serialized (one at a time), so concurrent RPCs cannot interleave.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { AppError, invalidParam } from '../errors.js';
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST } from '../bpf/uapi.js';
import { hostPort, ipText } from '../net/ip.js';
import type {
  AddBackendParams, AddVipParams, BackendInfo, BackendParams, BackendState as BackendStateName,
  DeclaredVip, DropRuleParams, DropRuleInfo, LbFlowsParams, LbFlows, LbList, LbStats, RemoveVipResult,
  VipInfo, VipParams,
} from '../contract/lb.js';
import type { ApplyReport, GcResult, SetWeightParams } from './api.js';
import { LB_COMPONENT } from './components.js';
import { addU64, decodeU32, decodeU8, encodeU8, u32Key } from './codec/fields.js';
import { connBackend, natBackend } from './codec/flows.js';
import { decodeConfig, encodeConfig } from './codec/settings.js';
import {
  decodeBackend, decodeVip, decodeVipCfg, decodeVipKey, encodeBackend, encodeVip, encodeVipCfg, encodeVipKey, type VipKey,
} from './codec/vips.js';
import { BE, HC, LB_LAYOUT_VERSION, MODE, MODE_NAME, RING_SIZE, STAT, type LbMode } from './wire.js';
import { LB_EVENTS } from './events.js';
import { HealthChecker, type HealthTarget } from './health.js';
import {
  entries, openMaps, readU32Range, ringBase, systemHost, writeU32Range,
  type LbDeployment, type LbHost, type LbMaps,
} from './kernel.js';
import { maglevTable, tableShares } from './maglev.js';
import { readFlows, readStats } from './view.js';
import { LbInterfaces } from './interfaces.js';
import { DropList } from './droplist.js';
import { kernelError, transact, type Step } from './tx.js';
import { collect } from './gc.js';
import { lbHostWarnings } from './host.js';
import {
  PROTO_NAME, healthType, parseBackend, parseDropRule, parseHealth, parseIfname, parseMode, parseVip, parseWeight,
  vipText, type BackendSpec, type HealthSpec, type VipSpec,
} from './validate.js';

export interface LbManagerOptions {
  /** Interfaces a VIP is served on when it names none. */
  interfaces?: string[];
  /** XDP attach mode (default native; generic works everywhere, slower). */
  xdpMode?: 'native' | 'generic';
  /** nat-mode source ports (default 61000-65535): keep outside ip_local_port_range. */
  natPorts?: { min: number; max: number };
  /** Flows older than this are copied into the long-lived table (default 30 s; 0: never). */
  promoteAfterMs?: number;
  /**
   * Idle time after which the GC deletes long-lived and NAT entries (default tcp 900 s,
   * udp 120 s), and the time a NAT entry may wait for its backend's first reply (default
   * 10 s): a flood of SYNs that are never answered must not hold the NAT ports.
   */
  idleTimeoutMs?: { tcp?: number; udp?: number; embryonic?: number };
  /** GC period (default 10 s; 0: only when gc() is called). */
  gcIntervalMs?: number;
  /** Backends per VIP (default 1024: 64 table slots per backend keep Maglev's imbalance small). */
  maxBackendsPerVip?: number;
  /** Run the health checks VIPs declare (default true). */
  healthChecks?: boolean;
  /** The host around the manager (tests pass a fake). */
  host?: LbHost;
}

interface BackendState {
  id: number;
  spec: BackendSpec;
  weight: number;
  flags: number;
  /** ifindex toward the backend (0: unknown). */
  egress: number;
}

interface VipState {
  spec: VipSpec;
  slot: number;
  mode: LbMode;
  gen: number;
  ring: number;
  /** The interface given with --interface; '' when the VIP uses the configured defaults. */
  ifname: string;
  health: HealthSpec | null;
  declHash: bigint;
  createdNs: bigint;
  backends: Map<string, BackendState>;
  /** The live Maglev table (read from the kernel on first use after a restore). */
  table: Uint32Array | null;
}


function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function params(v: unknown, shape: string): Record<string, unknown> {
  if (!isObj(v)) throw invalidParam('params', v, `an object ${shape}`);
  return v;
}

function stateOf(flags: number): BackendStateName {
  if (flags & BE.draining) return 'draining';
  if (flags & BE.down) return 'down';
  return 'active';
}

const inTable = (b: BackendState) => (b.flags & (BE.draining | BE.down)) === 0;

export class LbManager {
  /** lb.* events (see events.ts); the daemon forwards them to subscribers. */
  readonly events = new EventEmitter();
  private readonly log: Logger;
  private readonly m: LbMaps;
  private readonly host: LbHost;
  private readonly opts: Required<Omit<LbManagerOptions, 'host' | 'idleTimeoutMs' | 'natPorts'>> & {
    natPorts: { min: number; max: number };
    idle: { tcp: bigint; udp: bigint; embryonic: bigint };
  };
  private readonly vips = new Map<string, VipState>();
  private readonly bySlot = new Map<number, VipState>();
  private readonly ids = new Map<number, BackendState>();
  private readonly drops: DropList;
  /** Source address the kernel chose toward backends, per "ifindex/family" (preferred for NAT). */
  private readonly ifs: LbInterfaces;
  private readonly limits: { vips: number; ids: number; perVip: number; rules: number };
  private nextId = 1;
  /** emon_lb_config.nh_gen: bumped to invalidate the data path's next-hop caches. */
  private nhGen = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private health: HealthChecker | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(deployment: LbDeployment, logger: Logger, opts: LbManagerOptions = {}) {
    this.log = logger.child({ component: 'lb' });
    this.host = opts.host ?? systemHost();
    const natPorts = opts.natPorts ?? { min: 61000, max: 65535 };
    if (!Number.isInteger(natPorts.min) || !Number.isInteger(natPorts.max) || natPorts.min < 1024 || natPorts.max > 65535 || natPorts.min > natPorts.max) {
      throw invalidParam('lb.natPorts', natPorts, 'a port range { min, max } within 1024..65535');
    }
    this.opts = {
      interfaces: opts.interfaces ?? [],
      xdpMode: opts.xdpMode ?? 'native',
      natPorts,
      promoteAfterMs: opts.promoteAfterMs ?? 30_000,
      idle: {
        tcp: BigInt(opts.idleTimeoutMs?.tcp ?? 900_000) * 1_000_000n,
        udp: BigInt(opts.idleTimeoutMs?.udp ?? 120_000) * 1_000_000n,
        embryonic: BigInt(opts.idleTimeoutMs?.embryonic ?? 10_000) * 1_000_000n,
      },
      gcIntervalMs: opts.gcIntervalMs ?? 10_000,
      maxBackendsPerVip: opts.maxBackendsPerVip ?? 1024,
      healthChecks: opts.healthChecks ?? true,
    };

    this.checkPortRanges();
    const deployed = deployment.deploy(LB_COMPONENT);
    this.log.info({ adopted: deployed.adopted, reason: deployed.reason }, deployed.adopted ? 'adopted pinned load balancer' : 'loaded load balancer');
    this.m = openMaps(deployment);
    this.ifs = new LbInterfaces(deployment, this.host, this.m.ifaddr, this.opts.xdpMode, this.log);
    this.limits = {
      vips: Math.min(this.m.vips.maxEntries, this.m.vipcfg.maxEntries, this.m.vstats.maxEntries, Math.floor(this.m.ring.maxEntries / (2 * RING_SIZE))),
      ids: Math.min(this.m.backends.maxEntries, this.m.bstats.maxEntries),
      perVip: this.opts.maxBackendsPerVip,
      rules: Math.min(this.m.dcnt.maxEntries, this.m.drop4.maxEntries, this.m.drop6.maxEntries, this.m.dproto.maxEntries),
    };
    this.drops = new DropList(this.m, this.limits.rules, this.log);
    this.restore();
  }

  /** Local sockets use ip_local_port_range; a NAT port among them could take their replies. */
  private checkPortRanges(): void {
    let text: string;
    try {
      text = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    } catch {
      return;
    }
    const [lo, hi] = text.trim().split(/\s+/).map(Number);
    if (lo === undefined || hi === undefined) return;
    const { min, max } = this.opts.natPorts;
    if (min <= hi && lo <= max) {
      this.log.warn({ natPorts: `${min}-${max}`, localPorts: `${lo}-${hi}` },
        'the NAT port range overlaps ip_local_port_range: a local connection to a backend could lose replies to a nat flow');
    }
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /** Starts the periodic GC and the health checks. */
  start(): void {
    if (this.closed) return;
    if (this.opts.gcIntervalMs > 0 && !this.gcTimer) {
      this.gcTimer = setInterval(() => {
        void this.serial(() => this.gcNow()).catch((err) => this.log.warn({ err }, 'lb gc failed'));
      }, this.opts.gcIntervalMs);
      this.gcTimer.unref();
    }
    if (this.opts.healthChecks && !this.health) {
      this.health = new HealthChecker(this.events, this.log, (t, up) => this.setBackendHealth(t.vip, t.backend, up));
      this.syncHealth();
    }
  }

  /** Stops timers and checks. Everything in the kernel stays as it is (pinned). */
  close(): void {
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.gcTimer = null;
    this.health?.stop();
    this.health = null;
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(() => {
      if (this.closed) throw new AppError('NotAvailable', 'the load balancer is shutting down');
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  // --- restore ------------------------------------------------------------------------------

  private restore(): void {
    const zero = u32Key(0);
    const cfgBuf = this.m.cfg.lookup(zero);
    const cfg = cfgBuf ? decodeConfig(cfgBuf) : null;
    if (cfg && cfg.layout !== 0 && cfg.layout !== LB_LAYOUT_VERSION) {
      throw new AppError('NotAvailable', `pinned load balancer maps have layout ${cfg.layout}, this daemon uses ${LB_LAYOUT_VERSION}; run \`ebpfmon --teardown\``);
    }
    const fresh = !cfg || cfg.layout === 0;
    // A new daemon (maybe a new program) starts from fresh routes.
    this.nhGen = ((cfg?.nhGen ?? 0) + 1) >>> 0;

    for (const { key, value } of entries(this.m.vips)) {
      const k = decodeVipKey(key);
      const v = decodeVip(value);
      const proto = k ? PROTO_NAME[k.proto] : undefined;
      if (!k || !proto) continue;
      const c = decodeVipCfg(this.m.vipcfg.lookup(u32Key(v.slot)) ?? Buffer.alloc(0).fill(0, 0, 0)) ?? null;
      const spec: VipSpec = { addr: k.addr, port: k.port, proto: k.proto, protoName: proto, text: vipText(k.addr, k.port, proto) };
      const st: VipState = {
        spec, slot: v.slot, mode: MODE_NAME[v.mode] ?? 'nat', gen: v.gen, ring: v.ring & 1,
        ifname: c?.ifname ?? '', health: c ? this.healthFromCfg(c) : null, declHash: c?.declHash ?? 0n,
        createdNs: c?.createdNs ?? 0n, backends: new Map(), table: null,
      };
      this.vips.set(spec.text, st);
      this.bySlot.set(st.slot, st);
    }
    // Settings left by a VIP whose removal was interrupted.
    for (let slot = 0; slot < this.m.vipcfg.maxEntries; slot++) {
      if (this.bySlot.has(slot)) continue;
      const b = this.m.vipcfg.lookup(u32Key(slot));
      if (b && decodeVipCfg(b)) this.m.vipcfg.update(u32Key(slot), encodeVipCfg(null));
    }
    for (const { key, value } of entries(this.m.backends)) {
      const id = decodeU32(key);
      const b = decodeBackend(value);
      if (!b) continue;
      const v = this.bySlot.get(b.vip);
      if (!v || b.addr.family !== v.spec.addr.family) {
        this.log.warn({ id }, 'clearing a backend slot whose VIP is gone');
        this.m.backends.update(key, encodeBackend(null));
        continue;
      }
      const spec: BackendSpec = { addr: b.addr, port: b.port, text: hostPort(b.addr, b.port) };
      const st: BackendState = { id, spec, weight: b.weight, flags: b.flags, egress: b.egress };
      v.backends.set(spec.text, st);
      this.ids.set(id, st);
      this.nextId = Math.max(this.nextId, id + 1);
    }
    this.drops.restore();
    this.syncVports();
    this.writeConfig();
    this.ifs.reattach();
    this.syncIfaddrs();
    this.log.info({ vips: this.vips.size, backends: this.ids.size, dropRules: this.drops.size, fresh }, fresh ? 'load balancer maps created' : 'load balancer state restored from pinned maps');
  }

  private healthFromCfg(c: NonNullable<ReturnType<typeof decodeVipCfg>>): HealthSpec | null {
    if (c.hcType === HC.none) return null;
    return {
      type: c.hcType === HC.http ? 'http' : 'tcp', port: c.hcPort, path: c.hcPath || '/', intervalMs: c.hcIntervalMs,
      timeoutMs: c.hcTimeoutMs, rise: c.hcRise, fall: c.hcFall,
    };
  }

  private writeConfig(): void {
    const flags = this.drops.cfgFlags();
    this.m.cfg.update(u32Key(0), encodeConfig({
      promoteNs: BigInt(this.opts.promoteAfterMs) * 1_000_000n,
      natPortMin: this.opts.natPorts.min,
      natPortMax: this.opts.natPorts.max,
      flags,
      layout: LB_LAYOUT_VERSION,
      nhGen: this.nhGen,
    }));
  }

  /** VIPs per destination port (emon_lb_vports: the data path skips ports without one). */
  private portCount(port: number): number {
    let n = 0;
    for (const v of this.vips.values()) if (v.spec.port === port) n++;
    return n;
  }

  private setVport(port: number, n: number): void {
    this.m.vports.update(u32Key(port), encodeU8(n), BPF_ANY);
  }

  /** Makes emon_lb_vports match the VIPs (after a restore, whatever an interrupted change left). */
  private syncVports(): void {
    const want = new Map<number, number>();
    for (const v of this.vips.values()) want.set(v.spec.port, (want.get(v.spec.port) ?? 0) + 1);
    for (const { key, value } of entries(this.m.vports)) {
      const port = decodeU32(key);
      const n = Math.min(want.get(port) ?? 0, 255);
      if (decodeU8(value) !== n) this.setVport(port, n);
    }
  }

  // --- interfaces ---------------------------------------------------------------------------

  private vipIfnames(v: { ifname: string }): string[] {
    return v.ifname ? [v.ifname] : this.opts.interfaces;
  }

  /** Interfaces XDP must be on: every VIP's, and the way to every nat-mode backend (replies arrive there). */
  private neededInterfaces(): Map<number, string> {
    const byName = this.ifs.byName();
    const byIndex = this.ifs.byIndex();
    const need = new Map<number, string>();
    for (const v of this.vips.values()) {
      for (const n of this.vipIfnames(v)) {
        const i = byName.get(n);
        if (i !== undefined) need.set(i, n);
      }
      if (v.mode !== 'nat') continue;
      for (const b of v.backends.values()) {
        const n = byIndex.get(b.egress);
        if (n !== undefined) need.set(b.egress, n);
      }
    }
    return need;
  }

  /** emon_lb_ifaddr in step with the host; cached next hops carry the nat source, so a change invalidates them. */
  private syncIfaddrs(): void {
    if (!this.ifs.syncAddresses()) return;
    this.nhGen = (this.nhGen + 1) >>> 0;
    this.writeConfig();
  }

  // --- kernel helpers -------------------------------------------------------------------------

  private zeroSlot(map: LbMaps[keyof LbMaps], idx: number): void {
    map.update(u32Key(idx), Buffer.alloc(map.valueBytes), BPF_ANY);
  }

  /** Adds to a counter only user space writes (on CPU 0's slot; the data path never touches it). */
  private addStat(idx: number, n: number): void {
    if (n <= 0) return;
    const key = u32Key(idx);
    const v = this.m.stats.lookup(key) ?? Buffer.alloc(this.m.stats.valueBytes);
    addU64(v, n);
    this.m.stats.update(key, v, BPF_ANY);
  }

  private writeBackend(v: VipState, b: BackendState): void {
    this.m.backends.update(u32Key(b.id), encodeBackend({ addr: b.spec.addr, port: b.spec.port, flags: b.flags | BE.inUse, vip: v.slot, weight: b.weight, egress: b.egress }), BPF_ANY);
  }

  private vipKey(v: { spec: VipSpec }): Buffer {
    return encodeVipKey({ addr: v.spec.addr, port: v.spec.port, proto: v.spec.proto });
  }

  private tableOf(list: Iterable<BackendState>): Uint32Array {
    return maglevTable([...list].filter(inTable).map((b) => ({ id: b.id, key: b.spec.text, weight: b.weight })));
  }

  /**
   * Installs `table` as the VIP's live table: written into the idle half, then the VIP is
   * flipped to it in one update. Returns the undo (flip back to the untouched old half).
   */
  private flip(v: VipState, table: Uint32Array): () => void {
    const next = v.ring ^ 1;
    writeU32Range(this.m.ring, ringBase(v.slot, next), table);
    const key = this.vipKey(v);
    const before = encodeVip({ slot: v.slot, gen: v.gen, mode: MODE[v.mode], ring: v.ring });
    this.m.vips.update(key, encodeVip({ slot: v.slot, gen: v.gen + 1, mode: MODE[v.mode], ring: next }), BPF_EXIST);
    const prev = { ring: v.ring, gen: v.gen, table: v.table };
    v.ring = next;
    v.gen = (v.gen + 1) >>> 0;
    v.table = table;
    return () => {
      this.m.vips.update(key, before, BPF_EXIST);
      v.ring = prev.ring;
      v.gen = prev.gen;
      v.table = prev.table;
    };
  }

  private liveTable(v: VipState): Uint32Array {
    v.table ??= readU32Range(this.m.ring, ringBase(v.slot, v.ring), RING_SIZE);
    return v.table;
  }

  /** Deletes conn, long-lived and NAT entries of these backend ids. Returns how many. */
  private sweepFlows(ids: Set<number>): number {
    if (ids.size === 0) return 0;
    let conns = 0;
    let total = 0;
    for (const [map, isNat] of [[this.m.conns, false], [this.m.long, false], [this.m.nat, true]] as const) {
      for (const { key, value } of entries(map)) {
        const id = isNat ? natBackend(value) : connBackend(value);
        if (!ids.has(id)) continue;
        if (map.delete(key)) {
          total++;
          if (map === this.m.conns) conns++;
        }
      }
    }
    this.addStat(STAT.connDeleted, conns);
    return total;
  }

  private transact(what: string, steps: Step[]): void {
    transact(this.log, what, steps);
  }

  // --- lookups ------------------------------------------------------------------------------

  private findVip(field: string, raw: unknown): VipState {
    const spec = parseVip(field, raw);
    const v = this.vips.get(spec.text);
    if (!v) throw new AppError('UnknownVip', `no VIP ${spec.text}`, { field, value: raw });
    return v;
  }

  private findBackend(v: VipState, raw: unknown): BackendState {
    const spec = parseBackend('params.backend', raw, v.spec);
    const b = v.backends.get(spec.text);
    if (!b) throw new AppError('UnknownBackend', `VIP ${v.spec.text} has no backend ${spec.text}`, { field: 'params.backend', value: raw });
    return b;
  }

  private allocId(): number | null {
    const cap = this.limits.ids;
    for (let i = 0; i < cap - 1; i++) {
      const id = ((this.nextId - 1 + i) % (cap - 1)) + 1;
      if (!this.ids.has(id)) return id;
    }
    return null;
  }

  private freeSlot(): number | null {
    for (let s = 0; s < this.limits.vips; s++) if (!this.bySlot.has(s)) return s;
    return null;
  }

  // --- VIPs ---------------------------------------------------------------------------------

  addVip(p: AddVipParams): Promise<VipInfo> {
    return this.serial(() => this.doAddVip(p, 0n));
  }

  private doAddVip(raw: unknown, declHash: bigint): VipInfo {
    const p = params(raw, '{ vip, mode?, interface?, health? }');
    const spec = parseVip('params.vip', p.vip);
    const mode = parseMode('params.mode', p.mode);
    const ifname = parseIfname('params.interface', p.interface);
    const health = parseHealth('params.health', p.health);
    if (this.vips.has(spec.text)) throw new AppError('VipExists', `VIP ${spec.text} already exists`, { field: 'params.vip', value: p.vip });
    const names = ifname ? [ifname] : this.opts.interfaces;
    if (names.length === 0) {
      throw invalidParam('params.interface', p.interface, 'an interface to serve the VIP on (no default load-balancer interface is configured)');
    }
    const byName = this.ifs.byName();
    const want = new Map<number, string>();
    for (const n of names) {
      const i = byName.get(n);
      if (i === undefined) throw invalidParam('params.interface', n, `an existing interface (this host has ${[...byName.keys()].join(', ')})`);
      want.set(i, n);
    }
    const slot = this.freeSlot();
    if (slot === null) throw new AppError('TooManyVips', `all ${this.limits.vips} VIP slots are in use`, { field: 'params.vip', value: p.vip, limit: this.limits.vips });

    const v: VipState = {
      spec, slot, mode, gen: 0, ring: 0, ifname: ifname ?? '', health, declHash,
      createdNs: this.host.realtimeNs(), backends: new Map(), table: new Uint32Array(RING_SIZE),
    };
    const key = this.vipKey(v);
    this.transact(`adding VIP ${spec.text}`, [
      () => {
        this.m.vipcfg.update(u32Key(slot), this.vipCfg(v), BPF_ANY);
        return () => this.m.vipcfg.update(u32Key(slot), encodeVipCfg(null), BPF_ANY);
      },
      () => this.zeroSlot(this.m.vstats, slot),
      () => {
        const n = this.portCount(spec.port);
        this.setVport(spec.port, n + 1);
        return () => this.setVport(spec.port, n);
      },
      // A slot's old table must not route the new VIP's first packets.
      () => writeU32Range(this.m.ring, ringBase(slot, 0), v.table!),
      () => {
        const attached = this.ifs.ensure(want);
        return () => attached.forEach((i) => this.ifs.detach(i));
      },
      () => this.m.vips.update(key, encodeVip({ slot, gen: 0, mode: MODE[mode], ring: 0 }), BPF_NOEXIST),
    ]);
    this.vips.set(spec.text, v);
    this.bySlot.set(slot, v);
    this.syncIfaddrs();
    this.log.info({ vip: spec.text, mode, interfaces: [...want.values()] }, 'VIP added');
    this.events.emit(LB_EVENTS.vipAdded, { vip: spec.text });
    this.syncHealth();
    return this.vipInfo(v);
  }

  private vipCfg(v: VipState): Buffer {
    const k: VipKey = { addr: v.spec.addr, port: v.spec.port, proto: v.spec.proto };
    const byName = this.ifs.byName();
    return encodeVipCfg({
      key: k, ifindex: v.ifname ? byName.get(v.ifname) ?? 0 : 0, ifname: v.ifname, mode: MODE[v.mode],
      hcType: healthType(v.health), hcRise: v.health?.rise ?? 0, hcFall: v.health?.fall ?? 0, hcPort: v.health?.port ?? 0,
      hcIntervalMs: v.health?.intervalMs ?? 0, hcTimeoutMs: v.health?.timeoutMs ?? 0, hcPath: v.health?.path ?? '',
      declHash: v.declHash, createdNs: v.createdNs,
    });
  }

  removeVip(p: VipParams): Promise<RemoveVipResult> {
    return this.serial(() => {
      const v = this.findVip('params.vip', params(p, '{ vip }').vip);
      try {
        this.m.vips.delete(this.vipKey(v)); // commit: from here the VIP's packets pass untouched
      } catch (err) {
        throw kernelError(err, `removing VIP ${v.spec.text}`);
      }
      this.vips.delete(v.spec.text);
      this.bySlot.delete(v.slot);
      const ids = new Set([...v.backends.values()].map((b) => b.id));
      let flowsDeleted = 0;
      try {
        for (const id of ids) this.m.backends.update(u32Key(id), encodeBackend(null), BPF_ANY);
        this.m.vipcfg.update(u32Key(v.slot), encodeVipCfg(null), BPF_ANY);
        flowsDeleted = this.sweepFlows(ids);
      } catch (err) {
        // The VIP is gone from the data path; leftovers are cleared at the next restore.
        this.log.warn({ err, vip: v.spec.text }, 'VIP removed; clearing its backends failed');
      }
      for (const id of ids) this.ids.delete(id);
      try {
        this.setVport(v.spec.port, this.portCount(v.spec.port));
      } catch (err) {
        this.log.warn({ err, vip: v.spec.text }, 'could not update the VIP port table (fixed at the next restore)');
      }
      this.ifs.prune(this.neededInterfaces());
      this.log.info({ vip: v.spec.text, backends: ids.size, flowsDeleted }, 'VIP removed');
      this.events.emit(LB_EVENTS.vipRemoved, { vip: v.spec.text });
      this.syncHealth();
      return { vip: v.spec.text, removedBackends: ids.size, flowsDeleted };
    });
  }

  // --- backends -----------------------------------------------------------------------------

  addBackend(p: AddBackendParams): Promise<BackendInfo> {
    return this.serial(() => this.doAddBackend(p));
  }

  private async doAddBackend(raw: unknown): Promise<BackendInfo> {
    const p = params(raw, '{ vip, backend, weight? }');
    const v = this.findVip('params.vip', p.vip);
    const spec = parseBackend('params.backend', p.backend, v.spec);
    const weight = parseWeight('params.weight', p.weight);
    const have = v.backends.get(spec.text);
    if (have) {
      throw new AppError('BackendExists', `VIP ${v.spec.text} already has backend ${spec.text} (${stateOf(have.flags)})`, { field: 'params.backend', value: p.backend, state: stateOf(have.flags) });
    }
    if (v.backends.size >= this.limits.perVip) {
      throw new AppError('TooManyBackends', `VIP ${v.spec.text} has ${v.backends.size} backends, the most a VIP may have`, { field: 'params.backend', value: p.backend, limit: this.limits.perVip });
    }
    const id = this.allocId();
    if (id === null) {
      throw new AppError('TooManyBackends', `the backend table is full (${this.limits.ids - 1} backends across all VIPs)`, { field: 'params.backend', value: p.backend, limit: this.limits.ids - 1 });
    }
    const egress = await this.ifs.probe(spec, v.mode);
    if (!this.vips.has(v.spec.text)) throw new AppError('UnknownVip', `VIP ${v.spec.text} was removed meanwhile`, { field: 'params.vip' });

    const b: BackendState = { id, spec, weight, flags: BE.inUse, egress };
    const table = this.tableOf([...v.backends.values(), b]);
    const want = new Map<number, string>();
    const egressName = this.ifs.byIndex().get(egress);
    if (v.mode === 'nat' && egressName) want.set(egress, egressName);
    this.transact(`adding backend ${spec.text} to ${v.spec.text}`, [
      () => {
        this.writeBackend(v, b);
        return () => this.m.backends.update(u32Key(id), encodeBackend(null), BPF_ANY);
      },
      () => this.zeroSlot(this.m.bstats, id),
      // An id may be reused: its cached next hop must not be the previous backend's.
      () => this.zeroSlot(this.m.nhc, id),
      () => {
        const attached = this.ifs.ensure(want);
        return () => attached.forEach((i) => this.ifs.detach(i));
      },
      () => this.flip(v, table),
    ]);
    v.backends.set(spec.text, b);
    this.ids.set(id, b);
    this.nextId = id + 1;
    this.syncIfaddrs();
    this.log.info({ vip: v.spec.text, backend: spec.text, weight, id }, 'backend added');
    this.events.emit(LB_EVENTS.backendAdded, { vip: v.spec.text, backend: spec.text });
    this.syncHealth();
    return this.backendInfo(v, b);
  }

  removeBackend(p: BackendParams): Promise<BackendInfo> {
    return this.serial(() => {
      const q = params(p, '{ vip, backend }');
      const v = this.findVip('params.vip', q.vip);
      const b = this.findBackend(v, q.backend);
      const rest = [...v.backends.values()].filter((x) => x !== b);
      this.transact(`removing backend ${b.spec.text} from ${v.spec.text}`, [
        () => this.flip(v, this.tableOf(rest)),
        () => this.m.backends.update(u32Key(b.id), encodeBackend(null), BPF_ANY),
      ]);
      const info = { ...this.backendInfo(v, b), tableShare: 0 };
      v.backends.delete(b.spec.text);
      this.ids.delete(b.id);
      let flows = 0;
      try {
        flows = this.sweepFlows(new Set([b.id]));
      } catch (err) {
        this.log.warn({ err }, 'could not delete the removed backend\'s flow entries (the data path re-schedules them)');
      }
      this.ifs.prune(this.neededInterfaces());
      this.log.info({ vip: v.spec.text, backend: b.spec.text, flowsDeleted: flows }, 'backend removed');
      this.events.emit(LB_EVENTS.backendRemoved, { vip: v.spec.text, backend: b.spec.text });
      this.syncHealth();
      return info;
    });
  }

  /** No new flows; established flows keep the backend until they end (or it is removed). */
  drainBackend(p: BackendParams): Promise<BackendInfo> {
    return this.serial(() => {
      const q = params(p, '{ vip, backend }');
      const v = this.findVip('params.vip', q.vip);
      const b = this.findBackend(v, q.backend);
      if (b.flags & BE.draining) return this.backendInfo(v, b);
      const flags = b.flags | BE.draining;
      this.setFlags(v, b, flags, `draining backend ${b.spec.text} of ${v.spec.text}`);
      this.log.info({ vip: v.spec.text, backend: b.spec.text }, 'backend draining');
      this.events.emit(LB_EVENTS.backendDrained, { vip: v.spec.text, backend: b.spec.text });
      return this.backendInfo(v, b);
    });
  }

  /** Changes a backend's weight (not an `lb` command: configuration files use it). */
  setBackendWeight(p: SetWeightParams): Promise<BackendInfo> {
    return this.serial(() => {
      const q = params(p, '{ vip, backend, weight }');
      const v = this.findVip('params.vip', q.vip);
      const b = this.findBackend(v, q.backend);
      const weight = parseWeight('params.weight', q.weight);
      this.doSetWeight(v, b, weight);
      return this.backendInfo(v, b);
    });
  }

  private doSetWeight(v: VipState, b: BackendState, weight: number): void {
    if (b.weight === weight) return;
    const next: BackendState = { ...b, weight };
    const table = this.tableOf([...v.backends.values()].map((x) => (x === b ? next : x)));
    this.transact(`changing the weight of ${b.spec.text}`, [
      () => {
        this.writeBackend(v, next);
        return () => this.writeBackend(v, b);
      },
      () => this.flip(v, table),
    ]);
    b.weight = weight;
  }

  /** Table first (no new flows), then the slot's flags (which only steer new SYNs of old tuples). */
  private setFlags(v: VipState, b: BackendState, flags: number, what: string): void {
    const next: BackendState = { ...b, flags };
    const table = this.tableOf([...v.backends.values()].map((x) => (x === b ? next : x)));
    this.transact(what, [
      () => this.flip(v, table),
      () => {
        this.writeBackend(v, next);
        return () => this.writeBackend(v, b);
      },
    ]);
    b.flags = flags;
  }

  /** Health transitions (called by the checker); throws if the kernel refused. */
  setBackendHealth(vip: string, backend: string, up: boolean): Promise<void> {
    return this.serial(() => {
      const v = this.vips.get(vip);
      const b = v?.backends.get(backend);
      if (!v || !b) return;
      const flags = up ? b.flags & ~BE.down : b.flags | BE.down;
      if (flags === b.flags) return;
      this.setFlags(v, b, flags, `marking ${backend} ${up ? 'up' : 'down'}`);
    });
  }

  private syncHealth(): void {
    if (!this.health) return;
    const targets: HealthTarget[] = [];
    for (const v of this.vips.values()) {
      if (!v.health) continue;
      for (const b of v.backends.values()) {
        targets.push({ vip: v.spec.text, backend: b.spec.text, addr: b.spec.addr, port: b.spec.port, spec: v.health, down: (b.flags & BE.down) !== 0 });
      }
    }
    this.health.sync(targets);
  }

  // --- drop list ----------------------------------------------------------------------------

  addDropRule(p: DropRuleParams): Promise<DropRuleInfo> {
    return this.serial(() => {
      const raw = params(p, '{ rule }').rule;
      const info = this.drops.add(parseDropRule('params.rule', raw), raw, () => this.writeConfig());
      this.log.info({ rule: info.rule, id: info.id }, 'drop rule added');
      this.events.emit(LB_EVENTS.dropAdded, { rule: info.rule });
      return info;
    });
  }

  removeDropRule(p: DropRuleParams): Promise<DropRuleInfo> {
    return this.serial(() => {
      const raw = params(p, '{ rule }').rule;
      const info = this.drops.remove(parseDropRule('params.rule', raw), raw, () => this.writeConfig());
      this.log.info({ rule: info.rule }, 'drop rule removed');
      this.events.emit(LB_EVENTS.dropRemoved, { rule: info.rule });
      return info;
    });
  }

  listDropRules(): { rules: DropRuleInfo[] } {
    return { rules: this.drops.list() };
  }

  // --- configuration file -------------------------------------------------------------------

  /**
   * VIPs the configuration file declares. A declaration applied once is not re-applied
   * while it stays the same, so live changes (a removed backend, a drain) survive
   * restarts; when the declaration changes, its new backends and weights are applied.
   * Everything is validated before anything changes.
   */
  applyConfig(declared: DeclaredVip[]): Promise<ApplyReport> {
    return this.serial(async () => {
      if (!Array.isArray(declared)) throw invalidParam('lb.vips', declared, 'a list of VIP declarations');
      const plans = declared.map((d, i) => {
        const f = `lb.vips[${i}]`;
        const p = params(d, '{ vip, mode?, interface?, health?, backends? }');
        const spec = parseVip(`${f}.vip`, p.vip);
        const mode = parseMode(`${f}.mode`, p.mode);
        const ifname = parseIfname(`${f}.interface`, p.interface);
        const health = parseHealth(`${f}.health`, p.health);
        const list = p.backends === undefined ? [] : p.backends;
        if (!Array.isArray(list)) throw invalidParam(`${f}.backends`, list, 'a list of { backend, weight? }');
        const seen = new Set<string>();
        const backends = list.map((b: unknown, j: number) => {
          const q = params(b, '{ backend, weight? }');
          const bs = parseBackend(`${f}.backends[${j}].backend`, q.backend, spec);
          if (seen.has(bs.text)) throw invalidParam(`${f}.backends[${j}].backend`, q.backend, `a backend not already listed for ${spec.text}`);
          seen.add(bs.text);
          return { spec: bs, weight: parseWeight(`${f}.backends[${j}].weight`, q.weight) };
        });
        const norm = JSON.stringify({ vip: spec.text, mode, ifname, health, backends: backends.map((b) => [b.spec.text, b.weight]) });
        const hash = crypto.createHash('sha256').update(norm).digest().readBigUInt64LE(0) || 1n;
        return { spec, mode, ifname, health, backends, hash, raw: p };
      });
      const texts = new Set<string>();
      plans.forEach((pl, i) => {
        if (texts.has(pl.spec.text)) throw invalidParam(`lb.vips[${i}].vip`, pl.raw.vip, 'a VIP declared once');
        texts.add(pl.spec.text);
      });

      const report: ApplyReport = { vips: [] };
      for (const pl of plans) {
        const existing = this.vips.get(pl.spec.text);
        try {
          if (!existing) {
            this.doAddVip({ vip: pl.spec.text, mode: pl.mode, interface: pl.ifname ?? undefined, health: pl.health ?? undefined }, pl.hash);
            for (const b of pl.backends) await this.doAddBackend({ vip: pl.spec.text, backend: b.spec.text, weight: b.weight });
            report.vips.push({ vip: pl.spec.text, action: 'added' });
            continue;
          }
          if (existing.declHash === pl.hash) {
            report.vips.push({ vip: pl.spec.text, action: 'unchanged' });
            continue;
          }
          const conflicts: string[] = [];
          if (existing.mode !== pl.mode) conflicts.push(`mode is ${existing.mode}, declared ${pl.mode}`);
          if (existing.ifname !== (pl.ifname ?? '')) conflicts.push(`interface is ${existing.ifname || '(defaults)'}, declared ${pl.ifname ?? '(defaults)'}`);
          if (conflicts.length) {
            report.vips.push({ vip: pl.spec.text, action: 'conflict', detail: `${conflicts.join('; ')}: remove the VIP to apply the declaration` });
            continue;
          }
          for (const b of pl.backends) {
            const have = existing.backends.get(b.spec.text);
            if (!have) await this.doAddBackend({ vip: pl.spec.text, backend: b.spec.text, weight: b.weight });
            else this.doSetWeight(existing, have, b.weight);
          }
          existing.health = pl.health;
          existing.declHash = pl.hash;
          this.m.vipcfg.update(u32Key(existing.slot), this.vipCfg(existing), BPF_ANY);
          report.vips.push({ vip: pl.spec.text, action: 'updated' });
        } catch (err) {
          const e = err instanceof AppError ? err : kernelError(err, `applying ${pl.spec.text}`);
          this.log.warn({ err: e, vip: pl.spec.text }, 'declared VIP not applied');
          report.vips.push({ vip: pl.spec.text, action: 'conflict', detail: e.message });
        }
      }
      this.syncHealth();
      this.events.emit(LB_EVENTS.configApplied, { vips: report.vips.map((r) => ({ vip: r.vip, action: r.action })) });
      return report;
    });
  }

  // --- reads --------------------------------------------------------------------------------

  private backendInfo(v: VipState, b: BackendState): BackendInfo {
    const share = inTable(b) && this.vips.has(v.spec.text) ? tableShares(this.liveTable(v)).get(b.id) ?? 0 : 0;
    const h = this.health?.status(v.spec.text, b.spec.text) ?? null;
    return {
      vip: v.spec.text, backend: b.spec.text, address: ipText(b.spec.addr), port: b.spec.port, weight: b.weight,
      state: stateOf(b.flags), id: b.id, tableShare: Math.round(share * 1e6) / 1e6,
      via: this.ifs.byIndex().get(b.egress) ?? null,
      health: h ? { state: h.state, checks: h.checks, lastResult: h.lastResult, lastCheckAt: h.lastCheckAt } : null,
    };
  }

  private vipInfo(v: VipState): VipInfo {
    return {
      vip: v.spec.text, address: ipText(v.spec.addr), port: v.spec.port, protocol: v.spec.protoName, family: v.spec.addr.family,
      mode: v.mode, interfaces: this.vipIfnames(v), health: v.health, tableGeneration: v.gen,
      source: v.declHash ? 'config' : 'live',
      warnings: lbHostWarnings(v.spec.addr.family, this.vipIfnames(v), (n) => this.host.sysctl(n)),
      backends: [...v.backends.values()].sort((a, b) => a.id - b.id).map((b) => this.backendInfo(v, b)),
    };
  }

  list(): LbList {
    return {
      vips: [...this.vips.values()].sort((a, b) => a.slot - b.slot).map((v) => this.vipInfo(v)),
      interfaces: this.ifs.attached().map((r) => ({ name: r.ifname, ifindex: r.ifindex, mode: r.mode })),
      limits: { vips: this.limits.vips, backends: this.limits.ids - 1, backendsPerVip: this.limits.perVip, dropRules: this.limits.rules },
    };
  }

  /** The live Maglev table of a VIP (backend ids by slot), for tests and diagnostics. */
  table(vip: string): { table: Uint32Array; ids: Record<string, number> } {
    const v = this.findVip('params.vip', vip);
    return { table: this.liveTable(v), ids: Object.fromEntries([...v.backends.values()].map((b) => [b.spec.text, b.id])) };
  }

  stats(): LbStats {
    return readStats(this.m, [...this.vips.values()].sort((a, b) => a.slot - b.slot).map((v) => ({
      text: v.spec.text, slot: v.slot,
      backends: [...v.backends.values()].sort((a, b) => a.id - b.id).map((b) => ({ text: b.spec.text, id: b.id })),
    })));
  }

  flows(p: LbFlowsParams = {}): LbFlows {
    const q = params(p, '{ vip?, limit? }');
    const only = q.vip === undefined || q.vip === null ? null : this.findVip('params.vip', q.vip);
    const limit = q.limit === undefined || q.limit === null ? 1000 : q.limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 100_000) throw invalidParam('params.limit', q.limit, 'an integer 1..100000');
    return readFlows(this.m, {
      vip: (text) => {
        const v = this.vips.get(text);
        return v && (!only || v === only) ? { text: v.spec.text, mode: v.mode } : undefined;
      },
      backend: (id) => this.ids.get(id)?.spec.text,
      now: this.host.monotonicNs(),
      limit,
    });
  }

  // --- GC -----------------------------------------------------------------------------------

  gc(): Promise<GcResult> {
    return this.serial(() => this.gcNow());
  }

  /**
   * Deletes long-lived and NAT entries idle beyond the protocol's timeout (a flow is idle
   * when neither its forward entries nor its replies were seen), and entries of backends
   * that no longer exist. Also refreshes the interface addresses.
   */
  /** Collects idle long-lived and NAT entries (see gc.ts) and refreshes the interface addresses. */
  private gcNow(): GcResult {
    const r = collect(this.m, { live: (id) => this.ids.has(id), now: this.host.monotonicNs(), idle: this.opts.idle });
    this.syncIfaddrs();
    if (r.longDeleted || r.natDeleted) this.log.debug(r, 'lb gc');
    return r;
  }
}
