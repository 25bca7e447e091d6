// SPDX-License-Identifier: Apache-2.0
// TypeScript mirror of bpf/lb.h: constants, struct layouts (checked against the BTF of
// build/bpf/lb.bpf.o by test/unit/daemon/lb/layout.test.ts, and the #defines and enums against
// lb.h's text), and encoders/decoders for every key and value the manager touches.
// Ports and addresses that the data path compares with packet bytes are network order
// in the maps; here they are numbers (host order) and IpAddr.
import { field as f, type StructSpec } from '../bpf/layout.js';
import { AF_INET, AF_INET6, familyOfAf, type Family, type IpAddr } from '../net/ip.js';
import { LB_COUNTERS, type LbCounterName, type LbMode } from '../contract/lb.js';

export const LB_LAYOUT_VERSION = 1;
export const RING_SIZE = 65537;

/** The maps' sizes in bpf/lb.h (EMON_LB_MAX_*; test/unit/daemon/lb/layout.test.ts checks them).
 * The connection tables' sizes are configurable (lb.maps.*: these are the defaults). */
export const LB_DEFAULT_SIZES = {
  maxVips: 32,
  maxBackends: 4096,
  maxConns: 262144,
  maxLong: 65536,
  maxNat: 131072,
  maxRules: 1024,
  maxIfaddrs: 256,
} as const;


export const FLOW_SEED = 0x1b5eed01;
export const NAT_SEED = 0x1b5eed02;
export const TOUCH_NS = 1_000_000_000n;
export const NAT_TRIES = 8;

export const MODE = { nat: 1, dsr: 2 } as const satisfies Record<LbMode, number>;
export type { LbMode };
export const MODE_NAME: Record<number, LbMode> = { 1: 'nat', 2: 'dsr' };

export const BE = { inUse: 1, draining: 2, down: 4 } as const;

export const HOW_NAME: Record<number, 'maglev' | 'restored' | 'rescheduled'> = { 1: 'maglev', 2: 'restored', 3: 'rescheduled' };
export const CONN_LONG = 1;
export const CONN_DSR = 2;
export const NAT_REPLIED = 1;
export const NH_FLAGS = { onlink: 1, laddr: 2 } as const;
export const NH_TTL_NS = 1_000_000_000n;

export const HC = { none: 0, tcp: 1, http: 2 } as const;
export const PK = { any: 0, port: 1, type: 2 } as const;
export const CFG = { drop4: 1, drop6: 2, dpTcp: 4, dpUdp: 8, dpIcmp: 16, dpOther: 32 } as const;

/** The emon_lb_config flag that enables protocol drop rules for `proto`. */
export function protoCfgBit(proto: number): number {
  if (proto === 6) return CFG.dpTcp;
  if (proto === 17) return CFG.dpUdp;
  if (proto === 1 || proto === 58) return CFG.dpIcmp;
  return CFG.dpOther;
}

/** emon_lb_stats / emon_lb_drops slots: enum emon_lb_stat and enum emon_lb_drop, named by
 * contract LB_COUNTERS and LB_DROP_REASONS (index = position). */
export const STAT = Object.fromEntries(LB_COUNTERS.map((n, i) => [n, i])) as Record<LbCounterName, number>;
export const STAT_MAX = 32;
export const DROP_MAX = 32;

// --- layouts ------------------------------------------------------------------------------

const OBJ = 'lb.bpf.o';

export const VIP_KEY = {
  name: 'emon_lb_vip_key', size: 20, object: OBJ,
  fields: { addr: f(0, 16), port: f(16, 2), proto: f(18, 1), family: f(19, 1) },
} as const satisfies StructSpec;

export const VIP = {
  name: 'emon_lb_vip', size: 12, object: OBJ,
  fields: { slot: f(0, 4), gen: f(4, 4), mode: f(8, 1), ring: f(9, 1), _pad: f(10, 2) },
} as const satisfies StructSpec;

export const BACKEND = {
  name: 'emon_lb_backend', size: 32, object: OBJ,
  fields: { addr: f(0, 16), port: f(16, 2), family: f(18, 1), flags: f(19, 1), vip: f(20, 2), weight: f(22, 2), egress: f(24, 4), _pad: f(28, 4) },
} as const satisfies StructSpec;

export const FLOW_KEY = {
  name: 'emon_lb_flow_key', size: 40, object: OBJ,
  fields: { saddr: f(0, 16), daddr: f(16, 16), sport: f(32, 2), dport: f(34, 2), proto: f(36, 1), family: f(37, 1), _pad: f(38, 2) },
} as const satisfies StructSpec;

export const CONN = {
  name: 'emon_lb_conn', size: 40, object: OBJ,
  fields: { backend: f(0, 4), gen: f(4, 4), created_ns: f(8, 8), last_ns: f(16, 8), touch: f(24, 8), nat_port: f(32, 2), how: f(34, 1), flags: f(35, 1), vip: f(36, 2), _pad: f(38, 2) },
} as const satisfies StructSpec;

export const NAT = {
  name: 'emon_lb_nat', size: 64, object: OBJ,
  fields: { caddr: f(0, 16), vaddr: f(16, 16), cport: f(32, 2), vport: f(34, 2), backend: f(36, 4), vip: f(40, 4), flags: f(44, 4), last_ns: f(48, 8), touch: f(56, 8) },
} as const satisfies StructSpec;

export const IF_KEY = {
  name: 'emon_lb_if_key', size: 8, object: OBJ,
  fields: { ifindex: f(0, 4), family: f(4, 1), _pad: f(5, 3) },
} as const satisfies StructSpec;

export const ADDR = {
  name: 'emon_lb_addr', size: 16, object: OBJ,
  fields: { addr: f(0, 16) },
} as const satisfies StructSpec;

export const CTR = {
  name: 'emon_lb_ctr', size: 40, object: OBJ,
  fields: { packets: f(0, 8), bytes: f(8, 8), rpackets: f(16, 8), rbytes: f(24, 8), flows: f(32, 8) },
} as const satisfies StructSpec;

export const LPM4 = {
  name: 'emon_lb_lpm4', size: 8, object: OBJ,
  fields: { prefixlen: f(0, 4), addr: f(4, 4) },
} as const satisfies StructSpec;

export const LPM6 = {
  name: 'emon_lb_lpm6', size: 20, object: OBJ,
  fields: { prefixlen: f(0, 4), addr: f(4, 16) },
} as const satisfies StructSpec;

export const PROTO_KEY = {
  name: 'emon_lb_proto_key', size: 8, object: OBJ,
  fields: { family: f(0, 1), proto: f(1, 1), kind: f(2, 1), _pad: f(3, 1), value: f(4, 2), _pad2: f(6, 2) },
} as const satisfies StructSpec;

export const RULE_CTR = {
  name: 'emon_lb_rule_ctr', size: 16, object: OBJ,
  fields: { packets: f(0, 8), bytes: f(8, 8) },
} as const satisfies StructSpec;

export const CONFIG = {
  name: 'emon_lb_config', size: 24, object: OBJ,
  fields: { promote_ns: f(0, 8), nat_port_min: f(8, 2), nat_port_max: f(10, 2), flags: f(12, 4), layout: f(16, 4), nh_gen: f(20, 4) },
} as const satisfies StructSpec;

export const NH = {
  name: 'emon_lb_nh', size: 48, object: OBJ,
  fields: { expires: f(0, 8), ifindex: f(8, 4), gen: f(12, 4), mtu: f(16, 2), dmac: f(18, 6), smac: f(24, 6), flags: f(30, 1), _pad: f(31, 1), laddr: f(32, 16) },
} as const satisfies StructSpec;

export const VIPCFG = {
  name: 'emon_lb_vipcfg', size: 136, object: OBJ,
  fields: {
    key: f(0, 20), ifindex: f(20, 4), ifname: f(24, 16), in_use: f(40, 1), mode: f(41, 1), hc_type: f(42, 1),
    hc_rise: f(43, 1), hc_fall: f(44, 1), _pad: f(45, 1), hc_port: f(46, 2), hc_interval_ms: f(48, 4),
    hc_timeout_ms: f(52, 4), hc_path: f(56, 64), decl_hash: f(120, 8), created_ns: f(128, 8),
  },
} as const satisfies StructSpec;

export const ALL_LB_STRUCTS: readonly StructSpec[] = [VIP_KEY, VIP, BACKEND, FLOW_KEY, CONN, NAT, IF_KEY, ADDR, CTR, LPM4, LPM6, PROTO_KEY, RULE_CTR, CONFIG, NH, VIPCFG];

// --- encoders / decoders -----------------------------------------------------------------

function addrOf(buf: Buffer, off: number, family: Family): IpAddr {
  const bytes = Buffer.alloc(16);
  buf.copy(bytes, 0, off, off + (family === 'ipv4' ? 4 : 16));
  return { family, bytes };
}

export interface VipKey {
  addr: IpAddr;
  port: number;
  proto: number;
}

export function encodeVipKey(k: VipKey, out = Buffer.alloc(VIP_KEY.size)): Buffer {
  out.fill(0);
  k.addr.bytes.copy(out, 0, 0, k.addr.family === 'ipv4' ? 4 : 16);
  out.writeUInt16BE(k.port, 16);
  out.writeUInt8(k.proto, 18);
  out.writeUInt8(k.addr.family === 'ipv4' ? AF_INET : AF_INET6, 19);
  return out;
}

export function decodeVipKey(b: Buffer, off = 0): VipKey | null {
  const family = familyOfAf(b.readUInt8(off + 19));
  if (!family) return null;
  return { addr: addrOf(b, off, family), port: b.readUInt16BE(off + 16), proto: b.readUInt8(off + 18) };
}

export interface VipValue {
  slot: number;
  gen: number;
  mode: number;
  ring: number;
}

export function encodeVip(v: VipValue): Buffer {
  const b = Buffer.alloc(VIP.size);
  b.writeUInt32LE(v.slot, 0);
  b.writeUInt32LE(v.gen >>> 0, 4);
  b.writeUInt8(v.mode, 8);
  b.writeUInt8(v.ring, 9);
  return b;
}

export function decodeVip(b: Buffer, off = 0): VipValue {
  return { slot: b.readUInt32LE(off), gen: b.readUInt32LE(off + 4), mode: b.readUInt8(off + 8), ring: b.readUInt8(off + 9) };
}

export interface BackendValue {
  addr: IpAddr;
  port: number;
  flags: number;
  vip: number;
  weight: number;
  egress: number;
}

export function encodeBackend(v: BackendValue | null): Buffer {
  const b = Buffer.alloc(BACKEND.size);
  if (!v) return b;
  v.addr.bytes.copy(b, 0, 0, v.addr.family === 'ipv4' ? 4 : 16);
  b.writeUInt16BE(v.port, 16);
  b.writeUInt8(v.addr.family === 'ipv4' ? AF_INET : AF_INET6, 18);
  b.writeUInt8(v.flags, 19);
  b.writeUInt16LE(v.vip, 20);
  b.writeUInt16LE(v.weight, 22);
  b.writeUInt32LE(v.egress, 24);
  return b;
}

export function decodeBackend(b: Buffer, off = 0): BackendValue | null {
  const flags = b.readUInt8(off + 19);
  const family = familyOfAf(b.readUInt8(off + 18));
  if (!(flags & BE.inUse) || !family) return null;
  return {
    addr: addrOf(b, off, family), port: b.readUInt16BE(off + 16), flags,
    vip: b.readUInt16LE(off + 20), weight: b.readUInt16LE(off + 22), egress: b.readUInt32LE(off + 24),
  };
}

export interface FlowKey {
  saddr: IpAddr;
  daddr: IpAddr;
  sport: number;
  dport: number;
  proto: number;
}

export function encodeFlowKey(k: FlowKey, out = Buffer.alloc(FLOW_KEY.size)): Buffer {
  out.fill(0);
  const n = k.saddr.family === 'ipv4' ? 4 : 16;
  k.saddr.bytes.copy(out, 0, 0, n);
  k.daddr.bytes.copy(out, 16, 0, n);
  out.writeUInt16BE(k.sport, 32);
  out.writeUInt16BE(k.dport, 34);
  out.writeUInt8(k.proto, 36);
  out.writeUInt8(k.saddr.family === 'ipv4' ? AF_INET : AF_INET6, 37);
  return out;
}

export function decodeFlowKey(b: Buffer, off = 0): FlowKey | null {
  const family = familyOfAf(b.readUInt8(off + 37));
  if (!family) return null;
  return {
    saddr: addrOf(b, off, family), daddr: addrOf(b, off + 16, family),
    sport: b.readUInt16BE(off + 32), dport: b.readUInt16BE(off + 34), proto: b.readUInt8(off + 36),
  };
}

export interface ConnValue {
  backend: number;
  gen: number;
  createdNs: bigint;
  lastNs: bigint;
  natPort: number;
  how: number;
  flags: number;
  /** VIP slot. */
  vip: number;
}

export function decodeConn(b: Buffer, off = 0): ConnValue {
  return {
    backend: b.readUInt32LE(off), gen: b.readUInt32LE(off + 4), createdNs: b.readBigUInt64LE(off + 8),
    lastNs: b.readBigUInt64LE(off + 16), natPort: b.readUInt16BE(off + 32), how: b.readUInt8(off + 34), flags: b.readUInt8(off + 35),
    vip: b.readUInt16LE(off + 36),
  };
}

export function encodeConn(v: ConnValue): Buffer {
  const b = Buffer.alloc(CONN.size);
  b.writeUInt32LE(v.backend, 0);
  b.writeUInt32LE(v.gen >>> 0, 4);
  b.writeBigUInt64LE(v.createdNs, 8);
  b.writeBigUInt64LE(v.lastNs, 16);
  b.writeUInt16BE(v.natPort, 32);
  b.writeUInt8(v.how, 34);
  b.writeUInt8(v.flags, 35);
  b.writeUInt16LE(v.vip, 36);
  return b;
}

export interface NatValue {
  caddr: IpAddr;
  vaddr: IpAddr;
  cport: number;
  vport: number;
  backend: number;
  vip: number;
  flags: number;
  lastNs: bigint;
}

/** The family comes from the key (a NAT value does not carry it). */
export function decodeNat(b: Buffer, off: number, family: Family): NatValue {
  return {
    caddr: addrOf(b, off, family), vaddr: addrOf(b, off + 16, family), cport: b.readUInt16BE(off + 32),
    vport: b.readUInt16BE(off + 34), backend: b.readUInt32LE(off + 36), vip: b.readUInt32LE(off + 40),
    flags: b.readUInt32LE(off + 44), lastNs: b.readBigUInt64LE(off + 48),
  };
}

export function encodeIfKey(ifindex: number, family: Family): Buffer {
  const b = Buffer.alloc(IF_KEY.size);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt8(family === 'ipv4' ? AF_INET : AF_INET6, 4);
  return b;
}

export function decodeIfKey(b: Buffer, off = 0): { ifindex: number; family: Family | null } {
  return { ifindex: b.readUInt32LE(off), family: familyOfAf(b.readUInt8(off + 4)) };
}

export interface Counters {
  packets: number;
  bytes: number;
  rpackets: number;
  rbytes: number;
  flows: number;
}

/** Sums one per-CPU emon_lb_ctr value (all CPUs' slots back to back, 8-byte aligned). */
export function sumCtr(b: Buffer, stride: number = CTR.size): Counters {
  const c = { packets: 0, bytes: 0, rpackets: 0, rbytes: 0, flows: 0 };
  for (let off = 0; off + CTR.size <= b.length; off += stride) {
    c.packets += Number(b.readBigUInt64LE(off));
    c.bytes += Number(b.readBigUInt64LE(off + 8));
    c.rpackets += Number(b.readBigUInt64LE(off + 16));
    c.rbytes += Number(b.readBigUInt64LE(off + 24));
    c.flows += Number(b.readBigUInt64LE(off + 32));
  }
  return c;
}

export function sumRuleCtr(b: Buffer, stride: number = RULE_CTR.size): { packets: number; bytes: number } {
  let packets = 0;
  let bytes = 0;
  for (let off = 0; off + RULE_CTR.size <= b.length; off += stride) {
    packets += Number(b.readBigUInt64LE(off));
    bytes += Number(b.readBigUInt64LE(off + 8));
  }
  return { packets, bytes };
}

export function sumU64(b: Buffer): number {
  let s = 0n;
  for (let off = 0; off + 8 <= b.length; off += 8) s += b.readBigUInt64LE(off);
  return Number(s);
}

export interface LbConfigValue {
  promoteNs: bigint;
  natPortMin: number;
  natPortMax: number;
  flags: number;
  layout: number;
  /** Next-hop cache generation: bumping it makes the data path look routes up again. */
  nhGen: number;
}

export function encodeConfig(c: LbConfigValue): Buffer {
  const b = Buffer.alloc(CONFIG.size);
  b.writeBigUInt64LE(c.promoteNs, 0);
  b.writeUInt16LE(c.natPortMin, 8);
  b.writeUInt16LE(c.natPortMax, 10);
  b.writeUInt32LE(c.flags, 12);
  b.writeUInt32LE(c.layout, 16);
  b.writeUInt32LE(c.nhGen >>> 0, 20);
  return b;
}

export function decodeConfig(b: Buffer): LbConfigValue {
  return {
    promoteNs: b.readBigUInt64LE(0), natPortMin: b.readUInt16LE(8), natPortMax: b.readUInt16LE(10),
    flags: b.readUInt32LE(12), layout: b.readUInt32LE(16), nhGen: b.readUInt32LE(20),
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

export function encodeVipCfg(v: VipCfgValue | null): Buffer {
  const b = Buffer.alloc(VIPCFG.size);
  if (!v) return b;
  encodeVipKey(v.key).copy(b, 0);
  b.writeUInt32LE(v.ifindex, 20);
  b.write(v.ifname.slice(0, 15), 24, 'latin1');
  b.writeUInt8(1, 40);
  b.writeUInt8(v.mode, 41);
  b.writeUInt8(v.hcType, 42);
  b.writeUInt8(v.hcRise, 43);
  b.writeUInt8(v.hcFall, 44);
  b.writeUInt16LE(v.hcPort, 46);
  b.writeUInt32LE(v.hcIntervalMs, 48);
  b.writeUInt32LE(v.hcTimeoutMs, 52);
  b.write(v.hcPath.slice(0, 63), 56, 'utf8');
  b.writeBigUInt64LE(v.declHash, 120);
  b.writeBigUInt64LE(v.createdNs, 128);
  return b;
}

function cstr(b: Buffer, off: number, len: number, enc: BufferEncoding): string {
  const end = b.indexOf(0, off);
  return b.toString(enc, off, end < 0 || end > off + len ? off + len : end);
}

export function decodeVipCfg(b: Buffer): VipCfgValue | null {
  if (b.readUInt8(40) !== 1) return null;
  const key = decodeVipKey(b, 0);
  if (!key) return null;
  return {
    key, ifindex: b.readUInt32LE(20), ifname: cstr(b, 24, 16, 'latin1'), mode: b.readUInt8(41),
    hcType: b.readUInt8(42), hcRise: b.readUInt8(43), hcFall: b.readUInt8(44), hcPort: b.readUInt16LE(46),
    hcIntervalMs: b.readUInt32LE(48), hcTimeoutMs: b.readUInt32LE(52), hcPath: cstr(b, 56, 64, 'utf8'),
    declHash: b.readBigUInt64LE(120), createdNs: b.readBigUInt64LE(128),
  };
}

export interface ProtoKey {
  family: Family;
  proto: number;
  kind: number;
  value: number;
}

export function encodeProtoKey(k: ProtoKey): Buffer {
  const b = Buffer.alloc(PROTO_KEY.size);
  b.writeUInt8(k.family === 'ipv4' ? AF_INET : AF_INET6, 0);
  b.writeUInt8(k.proto, 1);
  b.writeUInt8(k.kind, 2);
  b.writeUInt16LE(k.value, 4);
  return b;
}

export function decodeProtoKey(b: Buffer, off = 0): ProtoKey | null {
  const family = familyOfAf(b.readUInt8(off));
  if (!family) return null;
  return { family, proto: b.readUInt8(off + 1), kind: b.readUInt8(off + 2), value: b.readUInt16LE(off + 4) };
}

export function encodeLpm(addr: IpAddr, len: number): Buffer {
  const n = addr.family === 'ipv4' ? 4 : 16;
  const b = Buffer.alloc(4 + n);
  b.writeUInt32LE(len, 0);
  addr.bytes.copy(b, 4, 0, n);
  return b;
}

export function decodeLpm(b: Buffer, off: number, family: Family): { addr: IpAddr; len: number } {
  const n = family === 'ipv4' ? 4 : 16;
  const bytes = Buffer.alloc(16);
  b.copy(bytes, 0, off + 4, off + 4 + n);
  return { addr: { family, bytes }, len: b.readUInt32LE(off) };
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
