// SPDX-License-Identifier: Apache-2.0
// Rebuilds the in-memory state from the pinned maps, which are the configuration: a
// restarted daemon sees what the previous one left and changes nothing the data path uses.
// It only clears what an interrupted change left behind (settings of a VIP whose removal
// stopped half-way, backend slots whose VIP is gone).
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { hostPort } from '../net/ip.js';
import { decodeU32, u32Key } from './codec/fields.js';
import { decodeConfig } from './codec/settings.js';
import { decodeBackend, decodeVip, decodeVipCfg, decodeVipKey, encodeBackend, encodeVipCfg, type VipCfgValue } from './codec/vips.js';
import { entries, type LbMaps } from './kernel.js';
import type { BackendState, LbState, VipState } from './state.js';
import { PROTO_NAME, vipText, type BackendSpec, type HealthSpec, type VipSpec } from './validate.js';
import { HC, LB_LAYOUT_VERSION, MODE_NAME } from './wire.js';

export interface Restored {
  /** The maps were just created (no settings written yet). */
  fresh: boolean;
  /** emon_lb_config.nh_gen as the previous daemon left it (0 when fresh). */
  nhGen: number;
}

/** Fills `state` from the maps. Throws when the maps were made for another layout. */
export function restoreState(m: LbMaps, state: LbState, log: Logger): Restored {
  const cfgBuf = m.cfg.lookup(u32Key(0));
  const cfg = cfgBuf ? decodeConfig(cfgBuf) : null;
  if (cfg && cfg.layout !== 0 && cfg.layout !== LB_LAYOUT_VERSION) {
    throw new AppError('NotAvailable', `pinned load balancer maps have layout ${cfg.layout}, this daemon uses ${LB_LAYOUT_VERSION}; run \`ebpfmon --teardown\``);
  }

  for (const { key, value } of entries(m.vips)) {
    const k = decodeVipKey(key);
    const v = decodeVip(value);
    const proto = k ? PROTO_NAME[k.proto] : undefined;
    if (!k || !proto) continue;
    const raw = m.vipcfg.lookup(u32Key(v.slot));
    const c = raw ? decodeVipCfg(raw) : null;
    const spec: VipSpec = { addr: k.addr, port: k.port, proto: k.proto, protoName: proto, text: vipText(k.addr, k.port, proto) };
    const st: VipState = {
      spec, slot: v.slot, mode: MODE_NAME[v.mode] ?? 'nat', gen: v.gen, ring: v.ring & 1,
      ifname: c?.ifname ?? '', health: c ? healthFromCfg(c) : null, declHash: c?.declHash ?? 0n,
      createdNs: c?.createdNs ?? 0n, backends: new Map(), table: null,
    };
    state.addVip(st);
  }
  // Settings left by a VIP whose removal was interrupted.
  for (let slot = 0; slot < m.vipcfg.maxEntries; slot++) {
    if (state.vipAt(slot)) continue;
    const b = m.vipcfg.lookup(u32Key(slot));
    if (b && decodeVipCfg(b)) m.vipcfg.update(u32Key(slot), encodeVipCfg(null));
  }
  for (const { key, value } of entries(m.backends)) {
    const id = decodeU32(key);
    const b = decodeBackend(value);
    if (!b) continue;
    const v = state.vipAt(b.vip);
    if (!v || b.addr.family !== v.spec.addr.family) {
      log.warn({ id }, 'clearing a backend slot whose VIP is gone');
      m.backends.update(key, encodeBackend(null));
      continue;
    }
    const spec: BackendSpec = { addr: b.addr, port: b.port, text: hostPort(b.addr, b.port) };
    const st: BackendState = { id, spec, weight: b.weight, flags: b.flags, egress: b.egress };
    state.restoreBackend(v, st);
  }
  return { fresh: !cfg || cfg.layout === 0, nhGen: cfg?.nhGen ?? 0 };
}

function healthFromCfg(c: VipCfgValue): HealthSpec | null {
  if (c.hcType === HC.none) return null;
  return {
    type: c.hcType === HC.http ? 'http' : 'tcp', port: c.hcPort, path: c.hcPath || '/', intervalMs: c.hcIntervalMs,
    timeoutMs: c.hcTimeoutMs, rise: c.hcRise, fall: c.hcFall,
  };
}
