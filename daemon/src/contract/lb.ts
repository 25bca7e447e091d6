// SPDX-License-Identifier: Apache-2.0
// The load balancer: `lb.*` JSON-RPC methods, the org.ebpfmon1.LoadBalancer D-Bus object,
// `ebpfmonctl lb ... --json`, and `lb.vips` in the configuration file.
//
//   lb vip add ADDR:PORT/PROTO [--mode nat|dsr] [--interface IF]   lb.vip.add      AddVip
//   lb vip remove ADDR:PORT/PROTO                                 lb.vip.remove   RemoveVip
//   lb backend add VIP ADDR[:PORT] [--weight N]                   lb.backend.add  AddBackend
//   lb backend remove|drain VIP ADDR[:PORT]                       lb.backend.*    RemoveBackend, DrainBackend
//   lb list | stats | flows [--vip VIP]                           lb.list|stats|flows
//   lb drop add|remove RULE, lb drop list                         lb.drop.*       AddDropRule, RemoveDropRule, ListDropRules
import type { Family } from './common.js';

export const LB_MODES = ['nat', 'dsr'] as const;
export type LbMode = (typeof LB_MODES)[number];

export interface HealthParams {
  type: 'tcp' | 'http';
  port?: number;
  path?: string;
  intervalMs?: number;
  timeoutMs?: number;
  rise?: number;
  fall?: number;
}

/** A health check as the balancer runs it (defaults filled in). */
export interface HealthSpec {
  type: 'tcp' | 'http';
  /** 0: the backend's own port. */
  port: number;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

export interface AddVipParams {
  /** "ADDR:PORT/PROTO": "198.19.10.10:80/tcp", "[fd00:198::ff:10]:443/tcp", ".../udp". */
  vip: string;
  mode?: LbMode;
  /** Interface receiving the VIP's traffic; default: the daemon's configured LB interfaces. */
  interface?: string;
  health?: HealthParams;
}

export interface VipParams {
  vip: string;
}

export interface AddBackendParams {
  vip: string;
  /** "ADDR" or "ADDR:PORT" ("[V6]:PORT"); the port defaults to the VIP's. */
  backend: string;
  /** 1..1000, default 1. */
  weight?: number;
}

export interface BackendParams {
  vip: string;
  backend: string;
}

export interface LbFlowsParams {
  vip?: string;
  /** At most this many flows (default 1000, max 100000). */
  limit?: number;
}

export interface DropRuleParams {
  /** "198.18.5.0/24", "fd00:198::5:9", "icmp:echo-request", "icmpv6:echo-request", "udp:53", "tcp", "proto:47". */
  rule: string;
}

export const BACKEND_STATES = ['active', 'draining', 'down'] as const;
export type BackendState = (typeof BACKEND_STATES)[number];

export interface BackendInfo {
  vip: string;
  backend: string;
  address: string;
  port: number;
  weight: number;
  state: BackendState;
  /** Backend id in the kernel's tables (shown in flows). */
  id: number;
  /** Share of the VIP's Maglev table it owns now (0 when draining or down). */
  tableShare: number;
  /** Interface toward the backend (nat replies arrive there), or null if unknown. */
  via: string | null;
  health: {
    state: 'up' | 'down';
    checks: number;
    lastResult: string | null;
    lastCheckAt: string | null;
  } | null;
}

export interface VipInfo {
  vip: string;
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  family: Family;
  mode: LbMode;
  /** Interfaces the VIP is served on (XDP attached). */
  interfaces: string[];
  health: HealthSpec | null;
  /** Increments with every Maglev table change; each flow records the one it was scheduled under. */
  tableGeneration: number;
  /** Added through the configuration file (and unchanged there since), or live. */
  source: 'config' | 'live';
  /** What the host's settings break for this VIP (forwarding off, strict rp_filter), checked at every answer. */
  warnings: string[];
  backends: BackendInfo[];
}

export interface LbList {
  vips: VipInfo[];
  interfaces: Array<{ name: string; ifindex: number; mode: 'native' | 'generic' }>;
  limits: { vips: number; backends: number; backendsPerVip: number; dropRules: number };
}

export interface RemoveVipResult {
  vip: string;
  removedBackends: number;
  /** Flow entries deleted from the connection tables. */
  flowsDeleted: number;
}

/**
 * The balancer's kernel counters (bpf/lb.h enum emon_lb_stat, in order: the index is the
 * key in emon_lb_stats; the name is the enumerator's in camelCase, checked against BTF).
 */
export const LB_COUNTERS = [
  'pass', 'connNew', 'connRescheduled', 'connMidflowMiss', 'connInsertFail', 'longHit', 'longPromote',
  'longFull', 'natNew', 'natReuse', 'natCollide', 'natReply', 'icmpForwarded', 'icmpReplied',
  'icmpTooBigSent', 'connDeleted', 'neighPass',
] as const;
export type LbCounterName = (typeof LB_COUNTERS)[number];

/** Why the balancer dropped a packet (bpf/lb.h enum emon_lb_drop, in order). */
export const LB_DROP_REASONS = [
  'droplist', 'noBackend', 'badBackend', 'fragment', 'ipOptions', 'malformed', 'ttl', 'noRoute',
  'noNeigh', 'fwdDisabled', 'tooBig', 'noSnatAddr', 'natPorts', 'natFull', 'dsrOffLink', 'icmpUnknown',
  'redirect',
] as const;
export type LbDropReason = (typeof LB_DROP_REASONS)[number];

/** Traffic through one VIP or backend. */
export interface LbTraffic {
  packets: number;
  bytes: number;
  /** nat mode: replies translated back to clients. */
  replyPackets: number;
  replyBytes: number;
  /** New flows the Maglev table scheduled. */
  flows: number;
}

export interface LbStats {
  counters: Record<LbCounterName, number>;
  drops: Record<LbDropReason, number>;
  tables: {
    conns: { entries: number; capacity: number; inserted: number; deleted: number; evicted: number };
    long: { entries: number; capacity: number };
    nat: { entries: number; capacity: number };
  };
  vips: Array<LbTraffic & { vip: string; backends: Array<LbTraffic & { backend: string }> }>;
}

export interface LbFlow {
  protocol: 'tcp' | 'udp';
  client: string;
  vip: string;
  backend: string;
  backendId: number;
  mode: LbMode;
  /** How the backend was chosen: Maglev (new flow), restored (LRU entry evicted, kept by the long-lived table), rescheduled. */
  how: 'maglev' | 'restored' | 'rescheduled';
  tableGeneration: number;
  ageMs: number;
  idleMs: number;
  /** In the long-lived table (safe from LRU eviction). */
  longLived: boolean;
  /** nat mode: the balancer's side of the translated flow. */
  nat: { balancer: string } | null;
  /**
   * The flow as the backend host sees it (its flow monitor keys flows by these), to join
   * with the backend's flow table: client -> VIP -> backend -> serving process.
   */
  onBackend: { local: string; remote: string };
}

export interface LbFlows {
  flows: LbFlow[];
  /** More flows matched than `limit`. */
  truncated: boolean;
}

export interface DropRuleInfo {
  rule: string;
  id: number;
  packets: number;
  bytes: number;
}

export interface DropRuleList {
  rules: DropRuleInfo[];
}

/** `lb.vips` in the configuration file. */
export interface DeclaredBackend {
  backend: string;
  weight?: number;
}

export interface DeclaredVip {
  vip: string;
  mode?: LbMode;
  interface?: string;
  health?: HealthParams;
  backends?: DeclaredBackend[];
}

/** Every event the load balancer emits (`events --type lb`: the event's `name`), with its payload. */
export const LB_EVENTS = {
  vipAdded: 'lb.vip.added',
  vipRemoved: 'lb.vip.removed',
  backendAdded: 'lb.backend.added',
  backendRemoved: 'lb.backend.removed',
  backendDrained: 'lb.backend.drained',
  /** A health check failed `fall` times in a row: the backend gets no new flows. */
  backendDown: 'lb.backend.down',
  /** A failing backend passed `rise` checks in a row: it gets new flows again. */
  backendUp: 'lb.backend.up',
  dropAdded: 'lb.drop.added',
  dropRemoved: 'lb.drop.removed',
  configApplied: 'lb.config.applied',
} as const;
export type LbEventName = (typeof LB_EVENTS)[keyof typeof LB_EVENTS];

export interface LbVipEvent {
  vip: string;
}

export interface LbBackendEvent {
  vip: string;
  backend: string;
}

export interface LbHealthEvent extends LbBackendEvent {
  state: 'down' | 'up';
  /** The last check's outcome, e.g. `connect ECONNREFUSED`, `HTTP 503`, `timeout after 1000 ms`. */
  reason: string;
  /** Consecutive results that caused the transition. */
  consecutive: number;
  check: 'tcp' | 'http';
}

export interface LbDropEvent {
  rule: string;
}

export interface LbEventPayloads {
  'lb.vip.added': LbVipEvent;
  'lb.vip.removed': LbVipEvent;
  'lb.backend.added': LbBackendEvent;
  'lb.backend.removed': LbBackendEvent;
  'lb.backend.drained': LbBackendEvent;
  'lb.backend.down': LbHealthEvent;
  'lb.backend.up': LbHealthEvent;
  'lb.drop.added': LbDropEvent;
  'lb.drop.removed': LbDropEvent;
  'lb.config.applied': { vips: Array<{ vip: string; action: string }> };
}
