// SPDX-License-Identifier: Apache-2.0
// The load balancer's wire format: TypeScript mirror of bpf/lb.h. One StructSpec per C
// struct (checked against the BTF of build/bpf/lb.bpf.o by test/unit/layout.test.ts), what
// each map's key and value are (checked against the maps' BTF definitions there too), and
// the #defines and enums (checked against lb.h's text by test/unit/daemon/lb/wire.test.ts).
// Encoders and decoders (codec/*.ts) reach the bytes only through these specs.
import { field as f, type StructSpec } from '../bpf/layout.js';
import { LB_COUNTERS, type LbCounterName, type LbMode } from '../contract/lb.js';
import type { LB_MAP } from './components.js';

export const LB_LAYOUT_VERSION = 1;
export const RING_SIZE = 65537;

/** The maps' sizes in bpf/lb.h (EMON_LB_MAX_*). The connection tables' sizes are
 * configurable (lb.maps.*: these are the defaults). */
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

// --- structs ------------------------------------------------------------------------------

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

/** struct xdp_md (the kernel's UAPI): the context BPF_PROG_TEST_RUN takes (testrun.ts). It is
 * in lb.bpf.o's BTF as xdp_lb's argument type. */
export const XDP_MD = {
  name: 'xdp_md', size: 24, object: OBJ,
  fields: { data: f(0, 4), data_end: f(4, 4), data_meta: f(8, 4), ingress_ifindex: f(12, 4), rx_queue_index: f(16, 4), egress_ifindex: f(20, 4) },
} as const satisfies StructSpec;

export const ALL_LB_STRUCTS: readonly StructSpec[] = [
  VIP_KEY, VIP, BACKEND, FLOW_KEY, CONN, NAT, IF_KEY, ADDR, CTR, LPM4, LPM6, PROTO_KEY, RULE_CTR, CONFIG, NH, VIPCFG, XDP_MD,
];

// --- maps ---------------------------------------------------------------------------------

/** A scalar key or value: its C type name as the map declares it, and its size. */
export interface ScalarSpec {
  name: '__u8' | '__u32' | '__u64';
  size: number;
}

export const U8 = { name: '__u8', size: 1 } as const satisfies ScalarSpec;
export const U32 = { name: '__u32', size: 4 } as const satisfies ScalarSpec;
export const U64 = { name: '__u64', size: 8 } as const satisfies ScalarSpec;

export interface MapTypes {
  key: StructSpec | ScalarSpec;
  /** Per-CPU maps: one CPU's value. */
  value: StructSpec | ScalarSpec;
}

/** Each map's key and value as lb.bpf.c declares them (`__type(key, ...)`); the layout test
 * compares every row with the map definitions in lb.bpf.o's BTF. */
export const LB_MAP_TYPES = {
  vips: { key: VIP_KEY, value: VIP },
  ring: { key: U32, value: U32 },
  backends: { key: U32, value: BACKEND },
  conns: { key: FLOW_KEY, value: CONN },
  long: { key: FLOW_KEY, value: CONN },
  nat: { key: FLOW_KEY, value: NAT },
  ifaddr: { key: IF_KEY, value: ADDR },
  nhc: { key: U32, value: NH },
  vports: { key: U32, value: U8 },
  vstats: { key: U32, value: CTR },
  bstats: { key: U32, value: CTR },
  stats: { key: U32, value: U64 },
  drops: { key: U32, value: U64 },
  drop4: { key: LPM4, value: U32 },
  drop6: { key: LPM6, value: U32 },
  dproto: { key: PROTO_KEY, value: U32 },
  dcnt: { key: U32, value: RULE_CTR },
  cfg: { key: U32, value: CONFIG },
  vipcfg: { key: U32, value: VIPCFG },
} as const satisfies Record<keyof typeof LB_MAP, MapTypes>;
