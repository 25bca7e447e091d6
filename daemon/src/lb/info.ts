// SPDX-License-Identifier: Apache-2.0
// What `lb list` and the change methods answer about a VIP and its backends (contract
// VipInfo, BackendInfo), from the in-memory state, the live Maglev table, the health
// checker and the host's interfaces and sysctls.
import type { BackendInfo, VipInfo } from '../contract/lb.js';
import { ipText } from '../net/ip.js';
import type { HealthChecker } from './health.js';
import { lbHostWarnings, type ReadSysctl } from './host.js';
import type { LbInterfaces } from './interfaces.js';
import { tableShares } from './maglev.js';
import { inTable, stateOf, vipIfnames, type BackendState, type LbState, type VipState } from './state.js';
import type { LbWriter } from './writer.js';

export interface InfoSources {
  state: LbState;
  writer: LbWriter;
  ifs: LbInterfaces;
  health: HealthChecker | null;
  /** Interfaces of VIPs that name none. */
  defaults: string[];
  sysctl: ReadSysctl;
}

export function backendInfo(src: InfoSources, v: VipState, b: BackendState): BackendInfo {
  // A VIP being removed has no table to read.
  const share = inTable(b) && src.state.vip(v.spec.text) ? tableShares(src.writer.liveTable(v)).get(b.id) ?? 0 : 0;
  const h = src.health?.status(v.spec.text, b.spec.text) ?? null;
  return {
    vip: v.spec.text, backend: b.spec.text, address: ipText(b.spec.addr), port: b.spec.port, weight: b.weight,
    state: stateOf(b.flags), id: b.id, tableShare: Math.round(share * 1e6) / 1e6,
    via: src.ifs.byIndex().get(b.egress) ?? null,
    health: h ? { state: h.state, checks: h.checks, lastResult: h.lastResult, lastCheckAt: h.lastCheckAt } : null,
  };
}

export function vipInfo(src: InfoSources, v: VipState): VipInfo {
  const ifnames = vipIfnames(v, src.defaults);
  return {
    vip: v.spec.text, address: ipText(v.spec.addr), port: v.spec.port, protocol: v.spec.protoName, family: v.spec.addr.family,
    mode: v.mode, interfaces: ifnames, health: v.health, tableGeneration: v.gen,
    source: v.declHash ? 'config' : 'live',
    warnings: lbHostWarnings(v.spec.addr.family, ifnames, src.sysctl),
    backends: [...v.backends.values()].sort((a, b) => a.id - b.id).map((b) => backendInfo(src, v, b)),
  };
}
