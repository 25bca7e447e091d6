// SPDX-License-Identifier: Apache-2.0
// VIP and backend changes: each validates its input completely, checks it against the
// state (state.ts), has the kernel writer (writer.ts) apply it as one transaction, and only
// then records it in the state, logs it and emits its event. LbManager runs them one at a
// time; nothing here waits for anything but a route probe.
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BackendInfo, RemoveVipResult, VipInfo } from '../contract/lb.js';
import { AppError, invalidParam } from '../errors.js';
import { LB_EVENTS } from './events.js';
import { backendInfo, vipInfo, type InfoSources } from './info.js';
import type { LbInterfaces } from './interfaces.js';
import type { LbHost } from './kernel.js';
import { maglevTable } from './maglev.js';
import type { LbSettings } from './options.js';
import { inTable, stateOf, vipIfnames, type BackendState, type LbState, type VipState } from './state.js';
import { objectParam, parseBackend, parseHealth, parseIfname, parseMode, parseVip, parseWeight } from './validate.js';
import { BE, RING_SIZE } from './wire.js';
import type { LbWriter } from './writer.js';

export interface ChangeContext {
  state: LbState;
  writer: LbWriter;
  ifs: LbInterfaces;
  host: LbHost;
  opts: LbSettings;
  log: Logger;
  events: EventEmitter;
  /** What info.ts needs to describe a VIP or backend. */
  info(): InfoSources;
  /** Brings the health checks in line with the state (after every change of VIPs or backends). */
  syncHealth(): void;
}

/** Maglev over the backends that take new flows. */
function tableOf(list: Iterable<BackendState>): Uint32Array {
  return maglevTable([...list].filter(inTable).map((b) => ({ id: b.id, key: b.spec.text, weight: b.weight })));
}

export class LbChanges {
  constructor(private readonly c: ChangeContext) {}

  /** `declHash`: the declaration it comes from (0: added live). */
  addVip(raw: unknown, declHash: bigint): VipInfo {
    const { state, ifs } = this.c;
    const p = objectParam(raw, '{ vip, mode?, interface?, health? }');
    const spec = parseVip('params.vip', p.vip);
    const mode = parseMode('params.mode', p.mode);
    const ifname = parseIfname('params.interface', p.interface);
    const health = parseHealth('params.health', p.health);
    if (state.vip(spec.text)) throw new AppError('VipExists', `VIP ${spec.text} already exists`, { field: 'params.vip', value: p.vip });
    const names = vipIfnames({ ifname: ifname ?? '' }, this.c.opts.interfaces);
    if (names.length === 0) {
      throw invalidParam('params.interface', p.interface, 'an interface to serve the VIP on (no default load-balancer interface is configured)');
    }
    const byName = ifs.byName();
    const want = new Map<number, string>();
    for (const n of names) {
      const i = byName.get(n);
      if (i === undefined) throw invalidParam('params.interface', n, `an existing interface (this host has ${[...byName.keys()].join(', ')})`);
      want.set(i, n);
    }
    const slot = state.freeSlot();
    const limit = state.limits.vips;
    if (slot === null) throw new AppError('TooManyVips', `all ${limit} VIP slots are in use`, { field: 'params.vip', value: p.vip, limit });

    const v: VipState = {
      spec, slot, mode, gen: 0, ring: 0, ifname: ifname ?? '', health, declHash,
      createdNs: this.c.host.realtimeNs(), backends: new Map(), table: new Uint32Array(RING_SIZE),
    };
    this.c.writer.addVip(v, want, state.portCount(spec.port));
    state.addVip(v);
    this.c.writer.syncIfaddrs();
    this.c.log.info({ vip: spec.text, mode, interfaces: [...want.values()] }, 'VIP added');
    this.c.events.emit(LB_EVENTS.vipAdded, { vip: spec.text });
    this.c.syncHealth();
    return vipInfo(this.c.info(), v);
  }

  removeVip(raw: unknown): RemoveVipResult {
    const v = this.c.state.findVip('params.vip', objectParam(raw, '{ vip }').vip);
    this.c.writer.deleteVip(v);
    this.c.state.removeVip(v);
    const flowsDeleted = this.c.writer.clearVip(v, this.c.state.portCount(v.spec.port));
    this.pruneInterfaces();
    this.c.log.info({ vip: v.spec.text, backends: v.backends.size, flowsDeleted }, 'VIP removed');
    this.c.events.emit(LB_EVENTS.vipRemoved, { vip: v.spec.text });
    this.c.syncHealth();
    return { vip: v.spec.text, removedBackends: v.backends.size, flowsDeleted };
  }

  async addBackend(raw: unknown): Promise<BackendInfo> {
    const { state, ifs } = this.c;
    const p = objectParam(raw, '{ vip, backend, weight? }');
    const v = state.findVip('params.vip', p.vip);
    const spec = parseBackend('params.backend', p.backend, v.spec);
    const weight = parseWeight('params.weight', p.weight);
    const have = v.backends.get(spec.text);
    if (have) {
      throw new AppError('BackendExists', `VIP ${v.spec.text} already has backend ${spec.text} (${stateOf(have.flags)})`, { field: 'params.backend', value: p.backend, state: stateOf(have.flags) });
    }
    const { perVip, ids } = state.limits;
    if (v.backends.size >= perVip) {
      throw new AppError('TooManyBackends', `VIP ${v.spec.text} has ${v.backends.size} backends, the most a VIP may have`, { field: 'params.backend', value: p.backend, limit: perVip });
    }
    const id = state.allocId();
    if (id === null) {
      throw new AppError('TooManyBackends', `the backend table is full (${ids - 1} backends across all VIPs)`, { field: 'params.backend', value: p.backend, limit: ids - 1 });
    }
    const egress = await ifs.probe(spec, v.mode);
    if (!state.vip(v.spec.text)) throw new AppError('UnknownVip', `VIP ${v.spec.text} was removed meanwhile`, { field: 'params.vip' });

    const b: BackendState = { id, spec, weight, flags: BE.inUse, egress };
    const want = new Map<number, string>();
    const egressName = ifs.byIndex().get(egress);
    if (v.mode === 'nat' && egressName) want.set(egress, egressName);
    this.c.writer.addBackend(v, b, tableOf([...v.backends.values(), b]), want);
    state.addBackend(v, b);
    this.c.writer.syncIfaddrs();
    this.c.log.info({ vip: v.spec.text, backend: spec.text, weight, id }, 'backend added');
    this.c.events.emit(LB_EVENTS.backendAdded, { vip: v.spec.text, backend: spec.text });
    this.c.syncHealth();
    return backendInfo(this.c.info(), v, b);
  }

  removeBackend(raw: unknown): BackendInfo {
    const [v, b] = this.find(raw, '{ vip, backend }');
    this.c.writer.removeBackend(v, b, tableOf([...v.backends.values()].filter((x) => x !== b)));
    const info = { ...backendInfo(this.c.info(), v, b), tableShare: 0 };
    this.c.state.removeBackend(v, b);
    const flows = this.c.writer.sweepBackendFlows(b);
    this.pruneInterfaces();
    this.c.log.info({ vip: v.spec.text, backend: b.spec.text, flowsDeleted: flows }, 'backend removed');
    this.c.events.emit(LB_EVENTS.backendRemoved, { vip: v.spec.text, backend: b.spec.text });
    this.c.syncHealth();
    return info;
  }

  drainBackend(raw: unknown): BackendInfo {
    const [v, b] = this.find(raw, '{ vip, backend }');
    if (b.flags & BE.draining) return backendInfo(this.c.info(), v, b);
    this.setFlags(v, b, b.flags | BE.draining, `draining backend ${b.spec.text} of ${v.spec.text}`);
    this.c.log.info({ vip: v.spec.text, backend: b.spec.text }, 'backend draining');
    this.c.events.emit(LB_EVENTS.backendDrained, { vip: v.spec.text, backend: b.spec.text });
    return backendInfo(this.c.info(), v, b);
  }

  setBackendWeight(raw: unknown): BackendInfo {
    const [v, b, q] = this.find(raw, '{ vip, backend, weight }');
    this.setWeight(v, b, parseWeight('params.weight', q.weight));
    return backendInfo(this.c.info(), v, b);
  }

  /** A health transition; nothing when the backend is gone or already in that state. */
  setBackendHealth(vip: string, backend: string, up: boolean): void {
    const v = this.c.state.vip(vip);
    const b = v?.backends.get(backend);
    if (!v || !b) return;
    const flags = up ? b.flags & ~BE.down : b.flags | BE.down;
    if (flags === b.flags) return;
    this.setFlags(v, b, flags, `marking ${backend} ${up ? 'up' : 'down'}`);
  }

  setWeight(v: VipState, b: BackendState, weight: number): void {
    if (b.weight === weight) return;
    const next: BackendState = { ...b, weight };
    this.c.writer.replaceBackend(v, b, next, tableOf([...v.backends.values()].map((x) => (x === b ? next : x))), false, `changing the weight of ${b.spec.text}`);
    b.weight = weight;
  }

  /** Table first (no new flows), then the slot's flags (which only steer new SYNs of old tuples). */
  private setFlags(v: VipState, b: BackendState, flags: number, what: string): void {
    const next: BackendState = { ...b, flags };
    this.c.writer.replaceBackend(v, b, next, tableOf([...v.backends.values()].map((x) => (x === b ? next : x))), true, what);
    b.flags = flags;
  }

  private find(raw: unknown, shape: string): [VipState, BackendState, Record<string, unknown>] {
    const q = objectParam(raw, shape);
    const v = this.c.state.findVip('params.vip', q.vip);
    return [v, this.c.state.findBackend(v, q.backend), q];
  }

  /** Detaches XDP where no VIP and no nat backend needs it any more. */
  private pruneInterfaces(): void {
    const { ifs } = this.c;
    ifs.prune(this.c.state.neededInterfaces(this.c.opts.interfaces, ifs.byName(), ifs.byIndex()));
  }
}
