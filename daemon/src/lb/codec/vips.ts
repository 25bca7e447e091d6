// SPDX-License-Identifier: Apache-2.0
// The VIP configuration maps: emon_lb_vips (key and value), emon_lb_backend (slots by id)
// and emon_lb_vipcfg (what user space rebuilds a VIP from after a restart).
import { readU64, readUint, readUintBE, writeU64, writeUint, writeUintBE } from '../../bpf/layout.js';
import { familyOfAf, type IpAddr } from '../../net/ip.js';
import { BACKEND, BE, VIP, VIP_KEY, VIPCFG } from '../wire.js';
import { afOf, readAddr, readCString, writeAddr, writeCString } from './fields.js';

export interface VipKey {
  addr: IpAddr;
  port: number;
  proto: number;
}

export function encodeVipKey(k: VipKey, out = Buffer.alloc(VIP_KEY.size), base = 0): Buffer {
  const F = VIP_KEY.fields;
  out.fill(0, base, base + VIP_KEY.size);
  writeAddr(out, F.addr, k.addr, base);
  writeUintBE(out, F.port, k.port, base);
  writeUint(out, F.proto, k.proto, base);
  writeUint(out, F.family, afOf(k.addr.family), base);
  return out;
}

export function decodeVipKey(b: Buffer, base = 0): VipKey | null {
  const F = VIP_KEY.fields;
  const family = familyOfAf(readUint(b, F.family, base));
  if (!family) return null;
  return { addr: readAddr(b, F.addr, family, base), port: readUintBE(b, F.port, base), proto: readUint(b, F.proto, base) };
}

export interface VipValue {
  slot: number;
  gen: number;
  mode: number;
  ring: number;
}

export function encodeVip(v: VipValue): Buffer {
  const F = VIP.fields;
  const b = Buffer.alloc(VIP.size);
  writeUint(b, F.slot, v.slot);
  writeUint(b, F.gen, v.gen);
  writeUint(b, F.mode, v.mode);
  writeUint(b, F.ring, v.ring);
  return b;
}

export function decodeVip(b: Buffer, base = 0): VipValue {
  const F = VIP.fields;
  return { slot: readUint(b, F.slot, base), gen: readUint(b, F.gen, base), mode: readUint(b, F.mode, base), ring: readUint(b, F.ring, base) };
}

export interface BackendValue {
  addr: IpAddr;
  port: number;
  flags: number;
  vip: number;
  weight: number;
  egress: number;
}

/** A backend slot; null clears it. */
export function encodeBackend(v: BackendValue | null): Buffer {
  const F = BACKEND.fields;
  const b = Buffer.alloc(BACKEND.size);
  if (!v) return b;
  writeAddr(b, F.addr, v.addr);
  writeUintBE(b, F.port, v.port);
  writeUint(b, F.family, afOf(v.addr.family));
  writeUint(b, F.flags, v.flags);
  writeUint(b, F.vip, v.vip);
  writeUint(b, F.weight, v.weight);
  writeUint(b, F.egress, v.egress);
  return b;
}

/** Null for an unused slot. */
export function decodeBackend(b: Buffer, base = 0): BackendValue | null {
  const F = BACKEND.fields;
  const flags = readUint(b, F.flags, base);
  const family = familyOfAf(readUint(b, F.family, base));
  if (!(flags & BE.inUse) || !family) return null;
  return {
    addr: readAddr(b, F.addr, family, base), port: readUintBE(b, F.port, base), flags,
    vip: readUint(b, F.vip, base), weight: readUint(b, F.weight, base), egress: readUint(b, F.egress, base),
  };
}

export interface VipCfgValue {
  key: VipKey;
  ifindex: number;
  ifname: string;
  mode: number;
  hcType: number;
  hcRise: number;
  hcFall: number;
  hcPort: number;
  hcIntervalMs: number;
  hcTimeoutMs: number;
  hcPath: string;
  declHash: bigint;
  createdNs: bigint;
}

/** A VIP slot's settings; null clears the slot. */
export function encodeVipCfg(v: VipCfgValue | null): Buffer {
  const F = VIPCFG.fields;
  const b = Buffer.alloc(VIPCFG.size);
  if (!v) return b;
  encodeVipKey(v.key, b, F.key.offset);
  writeUint(b, F.ifindex, v.ifindex);
  writeCString(b, F.ifname, v.ifname, 'latin1');
  writeUint(b, F.in_use, 1);
  writeUint(b, F.mode, v.mode);
  writeUint(b, F.hc_type, v.hcType);
  writeUint(b, F.hc_rise, v.hcRise);
  writeUint(b, F.hc_fall, v.hcFall);
  writeUint(b, F.hc_port, v.hcPort);
  writeUint(b, F.hc_interval_ms, v.hcIntervalMs);
  writeUint(b, F.hc_timeout_ms, v.hcTimeoutMs);
  writeCString(b, F.hc_path, v.hcPath, 'utf8');
  writeU64(b, F.decl_hash, v.declHash);
  writeU64(b, F.created_ns, v.createdNs);
  return b;
}

/** Null for an unused slot. */
export function decodeVipCfg(b: Buffer): VipCfgValue | null {
  const F = VIPCFG.fields;
  if (readUint(b, F.in_use) !== 1) return null;
  const key = decodeVipKey(b, F.key.offset);
  if (!key) return null;
  return {
    key, ifindex: readUint(b, F.ifindex), ifname: readCString(b, F.ifname, 'latin1'), mode: readUint(b, F.mode),
    hcType: readUint(b, F.hc_type), hcRise: readUint(b, F.hc_rise), hcFall: readUint(b, F.hc_fall), hcPort: readUint(b, F.hc_port),
    hcIntervalMs: readUint(b, F.hc_interval_ms), hcTimeoutMs: readUint(b, F.hc_timeout_ms), hcPath: readCString(b, F.hc_path, 'utf8'),
    declHash: readU64(b, F.decl_hash), createdNs: readU64(b, F.created_ns),
  };
}
