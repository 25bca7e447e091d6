// SPDX-License-Identifier: Apache-2.0
// The JSON-RPC 2.0 protocol on ebpfmon's Unix socket: every method, its params and its
// result. The client imports these types (`import type`), so both ends agree by
// construction. Framing: one JSON message per line ("\n"-delimited), UTF-8.
// docs/api.md documents each method with examples.
import type { Flow, ProcessTotals } from '../monitor/flows.js';
import type { MonitorEvent, EventType } from '../monitor/events.js';
import type { ProbeStatus } from '../bpf/manifest.js';
import type { ProgramView, MapView, SocketScanStatus } from '../monitor/monitor.js';

export const METHODS = {
  status: 'status',
  flowsList: 'flows.list',
  processesList: 'processes.list',
  eventsSubscribe: 'events.subscribe',
  eventsUnsubscribe: 'events.unsubscribe',
  programsList: 'programs.list',
  lbVipAdd: 'lb.vip.add',
  lbVipRemove: 'lb.vip.remove',
  lbBackendAdd: 'lb.backend.add',
  lbBackendRemove: 'lb.backend.remove',
  lbBackendDrain: 'lb.backend.drain',
  lbList: 'lb.list',
  lbStats: 'lb.stats',
  lbFlows: 'lb.flows',
  lbDropAdd: 'lb.drop.add',
  lbDropRemove: 'lb.drop.remove',
  lbDropList: 'lb.drop.list',
} as const;

/** Server -> client notifications. */
export const NOTIFICATIONS = {
  event: 'events.event',
  lost: 'events.lost',
} as const;

export type FlowSortKey = 'bytes' | 'packets' | 'age' | 'recent';
export const FLOW_SORT_KEYS: readonly FlowSortKey[] = ['bytes', 'packets', 'age', 'recent'];
export const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmp6', 'sctp', 'udplite'] as const;

export interface FlowsListParams {
  /** Process id (tgid) owning the flow's local socket. */
  pid?: number;
  /** Command name (exact, as the kernel's 15-character comm). */
  comm?: string;
  uid?: number;
  /** Remote address, or a CIDR prefix. */
  remoteAddr?: string;
  localAddr?: string;
  /** Local or remote port. */
  port?: number;
  proto?: (typeof PROTOCOLS)[number];
  interface?: string;
  /** Include flows closed within the retention time (default true). */
  includeClosed?: boolean;
  sort?: FlowSortKey;
  /** At most this many flows (default 1000, at most 100000). */
  limit?: number;
}

export interface FlowsListResult {
  flows: Flow[];
  /** Flows in the table (all owners). */
  total: number;
  /** Flows that matched the filters before `limit`. */
  matched: number;
}

export interface ProcessesListParams {
  uid?: number;
  limit?: number;
}

export interface ProcessesListResult {
  processes: ProcessTotals[];
}

export interface EventsSubscribeParams {
  /** Default: every type. */
  types?: EventType[];
  pid?: number;
}

export interface EventsSubscribeResult {
  subscription: string;
}

export interface EventsUnsubscribeParams {
  subscription: string;
}

/** Notification `events.event` */
export interface EventNotification {
  subscription: string;
  event: MonitorEvent;
}

/** Notification `events.lost`: events this subscriber missed because it read too slowly. */
export interface LostNotification {
  subscription: string;
  lost: number;
}

export interface InterfaceStatus {
  name: string;
  ifindex: number;
  since: string;
  ingress: string | undefined;
  egress: string | undefined;
}

export interface StatusResult {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSec: number;
  pinPath: string;
  /** When the pinned programs were first loaded (survives daemon restarts). */
  deployedAt: string;
  /** Components adopted from pins at this start (true) or loaded (false). */
  adopted: Record<string, boolean>;
  probes: ProbeStatus[];
  /** The start-up scan of sockets that predate the daemon: which alternative ran, and what it found. */
  socketScan: SocketScanStatus;
  interfaces: InterfaceStatus[];
  interfaceErrors: Record<string, string>;
  maps: MapView[];
  counters: Record<string, number>;
  loss: {
    /** Events the kernel could not queue (ring buffer full). */
    kernelRingbufFull: number;
    /** Runs of ebpfmon's programs the kernel skipped because another BPF program was
     * running on the CPU (bpf_prog_info.recursion_misses, summed): events never produced. */
    kernelProbeMisses: number;
    /** Flows the LRU table evicted before ebpfmon collected them. */
    flowsEvicted: number;
    /** Events dropped for slow subscribers since the daemon started. */
    subscriberDropped: number;
    undecodable: number;
  };
  events: { received: Record<string, number>; pendingBytes: number; maxDrainMs: number };
  clients: number;
  subscriptions: number;
  /** Present when the load balancer is configured. */
  lb?: unknown;
}

export interface ProgramsListResult {
  programs: ProgramView[];
  links: Array<{ name: string; id: number; progId: number; type: string }>;
}

export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  /** root or a member of the `ebpfmon` group: sees every uid. */
  seesAll: boolean;
  /** root or a member of the `ebpfmon-admin` group: may change the load balancer. */
  admin: boolean;
}
