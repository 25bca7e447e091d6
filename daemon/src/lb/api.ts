// SPDX-License-Identifier: Apache-2.0
// The load balancer's API: params and results of every LbManager method, one method per
// `ebpfmonctl lb ...` command (and JSON-RPC method). Plain JSON shapes: the RPC layer and
// the client import these with `import type`.
//
//   lb vip add ADDR:PORT/PROTO [--mode nat|dsr] [--interface IF]  addVip({ vip, mode?, interface?, health? })
//   lb vip remove ADDR:PORT/PROTO                                removeVip({ vip })
//   lb backend add VIP ADDR[:PORT] [--weight N]                  addBackend({ vip, backend, weight? })
//   lb backend remove VIP ADDR[:PORT]                            removeBackend({ vip, backend })
//   lb backend drain VIP ADDR[:PORT]                             drainBackend({ vip, backend })
//   lb list                                                      list()
//   lb stats                                                     stats()
//   lb flows [--vip VIP]                                         flows({ vip?, limit? })
//   lb drop add|remove RULE, lb drop list                        dropAdd({ rule }), dropRemove({ rule }), dropList()
import type { LbMode, StatName, DropName } from './decoder.js';
import type { HealthSpec } from './validate.js';

export interface HealthParams {
  type: 'tcp' | 'http';
  port?: number;
  path?: string;
  intervalMs?: number;
  timeoutMs?: number;
  rise?: number;
  fall?: number;
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

export interface SetWeightParams extends BackendParams {
  weight: number;
}

export interface FlowsParams {
  vip?: string;
  /** At most this many flows (default 1000, max 100000). */
  limit?: number;
}

export interface DropParams {
  /** "198.18.5.0/24", "fd00:198::5:9", "icmp:echo-request", "icmpv6:echo-request", "udp:53", "tcp", "proto:47". */
  rule: string;
}

export type BackendState = 'active' | 'draining' | 'down';

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
  egress: string | null;
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
  family: 4 | 6;
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

export interface Counters {
  packets: number;
  bytes: number;
  /** nat mode: replies translated back to clients. */
  replyPackets: number;
  replyBytes: number;
  /** New flows the Maglev table scheduled. */
  flows: number;
}

export interface LbStats {
  counters: Record<StatName, number>;
  drops: Record<DropName, number>;
  tables: {
    conns: { entries: number; capacity: number; inserted: number; deleted: number; evicted: number };
    long: { entries: number; capacity: number };
    nat: { entries: number; capacity: number };
  };
  vips: Array<Counters & { vip: string; backends: Array<Counters & { backend: string }> }>;
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

export interface ApplyReport {
  vips: Array<{
    vip: string;
    /**
     * added: created from the declaration; unchanged: the same declaration was applied
     * before (live changes since then are kept); updated: the declaration changed, its
     * new backends and weights were applied; conflict: the declaration asks for a change
     * that needs `lb vip remove` first (mode, interface).
     */
    action: 'added' | 'unchanged' | 'updated' | 'conflict';
    detail?: string;
  }>;
}

export interface GcResult {
  longDeleted: number;
  natDeleted: number;
}
