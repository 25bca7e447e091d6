// SPDX-License-Identifier: Apache-2.0
// The load balancer's configuration in memory: VIPs by canonical text and by slot, backends
// by VIP and by id, and the questions asked of them (free slots and ids, VIPs per port,
// interfaces XDP must be on, health-check targets). It mirrors the pinned maps, which stay
// the source of truth (restore.ts rebuilds it from them); nothing here touches the kernel.
import type { BackendState as BackendStateName } from '../contract/lb.js';
import { AppError } from '../errors.js';
import type { HealthTarget } from './health.js';
import type { LbMaps } from './kernel.js';
import { parseBackend, parseVip, type BackendSpec, type HealthSpec, type VipSpec } from './validate.js';
import { BE, RING_SIZE, type LbMode } from './wire.js';

export interface BackendState {
  id: number;
  spec: BackendSpec;
  weight: number;
  flags: number;
  /** ifindex toward the backend (0: unknown). */
  egress: number;
}

export interface VipState {
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

export function stateOf(flags: number): BackendStateName {
  if (flags & BE.draining) return 'draining';
  if (flags & BE.down) return 'down';
  return 'active';
}

/** Whether a backend takes new flows (has slots in its VIP's Maglev table). */
export const inTable = (b: BackendState): boolean => (b.flags & (BE.draining | BE.down)) === 0;

export interface LbLimits {
  vips: number;
  /** Backend ids are 1..ids-1 (0 means "no backend"). */
  ids: number;
  perVip: number;
  rules: number;
}

/** What the maps hold (their real sizes, which a deployment may have changed). */
export function limitsOf(m: LbMaps, perVip: number): LbLimits {
  return {
    vips: Math.min(m.vips.maxEntries, m.vipcfg.maxEntries, m.vstats.maxEntries, Math.floor(m.ring.maxEntries / (2 * RING_SIZE))),
    ids: Math.min(m.backends.maxEntries, m.bstats.maxEntries),
    perVip,
    rules: Math.min(m.dcnt.maxEntries, m.drop4.maxEntries, m.drop6.maxEntries, m.dproto.maxEntries),
  };
}

export class LbState {
  private readonly byText = new Map<string, VipState>();
  private readonly bySlot = new Map<number, VipState>();
  private readonly ids = new Map<number, BackendState>();
  private nextId = 1;

  constructor(readonly limits: LbLimits) {}

  get vipCount(): number {
    return this.byText.size;
  }

  get backendCount(): number {
    return this.ids.size;
  }

  vip(text: string): VipState | undefined {
    return this.byText.get(text);
  }

  vipAt(slot: number): VipState | undefined {
    return this.bySlot.get(slot);
  }

  backend(id: number): BackendState | undefined {
    return this.ids.get(id);
  }

  /** VIPs in slot order. */
  vips(): VipState[] {
    return [...this.byText.values()].sort((a, b) => a.slot - b.slot);
  }

  addVip(v: VipState): void {
    this.byText.set(v.spec.text, v);
    this.bySlot.set(v.slot, v);
  }

  /** Forgets a VIP and its backends. */
  removeVip(v: VipState): void {
    this.byText.delete(v.spec.text);
    this.bySlot.delete(v.slot);
    for (const b of v.backends.values()) this.ids.delete(b.id);
  }

  /** A backend just added: the next id is looked for after it. */
  addBackend(v: VipState, b: BackendState): void {
    this.restoreBackend(v, b);
    this.nextId = b.id + 1;
  }

  /** A backend found in the maps. */
  restoreBackend(v: VipState, b: BackendState): void {
    v.backends.set(b.spec.text, b);
    this.ids.set(b.id, b);
    this.nextId = Math.max(this.nextId, b.id + 1);
  }

  removeBackend(v: VipState, b: BackendState): void {
    v.backends.delete(b.spec.text);
    this.ids.delete(b.id);
  }

  findVip(field: string, raw: unknown): VipState {
    const spec = parseVip(field, raw);
    const v = this.byText.get(spec.text);
    if (!v) throw new AppError('UnknownVip', `no VIP ${spec.text}`, { field, value: raw });
    return v;
  }

  findBackend(v: VipState, raw: unknown): BackendState {
    const spec = parseBackend('params.backend', raw, v.spec);
    const b = v.backends.get(spec.text);
    if (!b) throw new AppError('UnknownBackend', `VIP ${v.spec.text} has no backend ${spec.text}`, { field: 'params.backend', value: raw });
    return b;
  }

  /** A free backend id, searched round-robin from the last one given out. */
  allocId(): number | null {
    const cap = this.limits.ids;
    for (let i = 0; i < cap - 1; i++) {
      const id = ((this.nextId - 1 + i) % (cap - 1)) + 1;
      if (!this.ids.has(id)) return id;
    }
    return null;
  }

  freeSlot(): number | null {
    for (let s = 0; s < this.limits.vips; s++) if (!this.bySlot.has(s)) return s;
    return null;
  }

  /** VIPs on a destination port (emon_lb_vports: the data path skips ports without one). */
  portCount(port: number): number {
    let n = 0;
    for (const v of this.byText.values()) if (v.spec.port === port) n++;
    return n;
  }

  /** VIPs per destination port. */
  portCounts(): Map<number, number> {
    const want = new Map<number, number>();
    for (const v of this.byText.values()) want.set(v.spec.port, (want.get(v.spec.port) ?? 0) + 1);
    return want;
  }

  /** Interfaces XDP must be on: every VIP's, and the way to every nat-mode backend (replies arrive there). */
  neededInterfaces(defaults: string[], byName: Map<string, number>, byIndex: Map<number, string>): Map<number, string> {
    const need = new Map<number, string>();
    for (const v of this.byText.values()) {
      for (const n of vipIfnames(v, defaults)) {
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

  /** Every backend of a VIP that declares health checks. */
  healthTargets(): HealthTarget[] {
    const targets: HealthTarget[] = [];
    for (const v of this.byText.values()) {
      if (!v.health) continue;
      for (const b of v.backends.values()) {
        targets.push({ vip: v.spec.text, backend: b.spec.text, addr: b.spec.addr, port: b.spec.port, spec: v.health, down: (b.flags & BE.down) !== 0 });
      }
    }
    return targets;
  }
}

/** The interfaces a VIP is served on: its own, or the configured defaults. */
export function vipIfnames(v: { ifname: string }, defaults: string[]): string[] {
  return v.ifname ? [v.ifname] : defaults;
}
