// SPDX-License-Identifier: Apache-2.0
// `status` and `programs.list`: the daemon, its probes, interfaces, tables and losses.
import type { HistoryStatus } from './history.js';
import type { L7Status } from './l7.js';
import type { CaptureStatus } from './capture.js';
import type { HandoffStatus, IdentityStatus } from './identity.js';
import type { ExportStatus } from './export.js';
import type { GeoStatus } from './geo.js';

/**
 * The monitor's kernel counters (bpf/monitor/common.h enum emon_stat, in order: the index is
 * the key in emon_stats). Each name is the enumerator's in camelCase (EMON_STAT_FLOWS_CREATED
 * is `flowsCreated`): test/unit/layout.test.ts checks it against the objects' BTF.
 */
export const MONITOR_COUNTERS = [
  'ringbufFull', 'flowsCreated', 'flowCreateFailed', 'flowsUnattributed', 'packetsNonIp',
  'packetsTruncated', 'packetsIpOptions', 'packetsIpv6ExtHeaders', 'packetsFragments', 'fragmentsUnmatched',
  'packetsExtHeaderLimit', 'ownersSocket', 'ownersConnect', 'ownersAccept', 'ownersBind', 'ownersSend',
  'ownersProc', 'ownerUpdateFailed', 'flowsPatched', 'execEvents', 'exitEvents', 'closeEvents', 'flowsReopened',
  'packetsPulled', 'stateChangesRescued', 'scanOverflow', 'flowsKernel', 'dirtyRingFull', 'closesInferredAtReuse',
] as const;
/** Kept by the daemon in the same table, after the kernel's: flows it deleted
 * (EMON_STAT_FLOWS_DELETED), and TCP closes the kernel did not report that the collector
 * inferred from the flow's packets and the kernel's socket table (EMON_STAT_CLOSES_INFERRED;
 * docs/architecture.md, "Closes the kernel did not report"). */
export const DAEMON_COUNTERS = ['flowsDeleted', 'closesInferred'] as const;
export type CounterName = (typeof MONITOR_COUNTERS)[number] | (typeof DAEMON_COUNTERS)[number];

import type { ProbeStatus } from './common.js';
export type { ProbeStatus };

/** The start-up scan of sockets that predate the daemon. */
export interface SocketScanStatus {
  /** The alternative that ran (or runs), as `probes` labels it. */
  method: string | null;
  state: 'pending' | 'running' | 'done' | 'failed';
  /** Sockets whose owner it recorded. */
  sockets: number;
  durationMs: number | null;
  /** Network namespaces read (the /proc scan). */
  namespaces?: number;
  /** Longest time the /proc scan held the event loop. */
  maxSliceMs?: number;
  /** Alternatives that loaded but failed when run, and why. */
  fallbacks: Array<{ label: string; reason: string }>;
}

export interface InterfaceStatus {
  name: string;
  ifindex: number;
  attachedAt: string;
  /** Program on each hook (null when none). */
  ingress: string | null;
  egress: string | null;
}

export interface MapView {
  name: string;
  maxEntries: number;
  entries: number | null;
}

/** Events and flows lost anywhere on the way, never silently. */
export interface Loss {
  /** Events the kernel could not queue (counter `ringbufFull`). */
  ringbufFull: number;
  /** Runs of ebpfmon's programs the kernel skipped because another BPF program was running
   * on the CPU, less those a backup program made up for. */
  probeMisses: number;
  /** Flows the LRU table evicted before the daemon collected them. */
  flowsEvicted: number;
  /** Events dropped for slow subscribers since the daemon started. */
  subscriberDropped: number;
  /** Ring-buffer records the daemon could not decode. */
  undecodable: number;
}

/**
 * How `processes.list`, `top` and the owner index read the flow table (issue 17): from the
 * kernel's dirty-flow ring (only the flows that changed are read) or by walking every flow.
 */
export interface FlowIndexStatus {
  /** 'dirty-ring': per-owner totals kept from the flows the kernel reports changed;
   * 'full-walk': every read walks the table (the classifier without the ring runs, or the
   * ring could not be read). */
  mode: 'dirty-ring' | 'full-walk';
  /** Why the full walk runs (null in dirty-ring mode). */
  reason: string | null;
  /** The kept totals are the table now (false until the first walk, after a resync is due). */
  trusted: boolean;
  /** Records read from the dirty ring (pushes the ring could not take: counters.dirtyRingFull). */
  dirtyRecords: number;
  /** Walks that refilled the kept totals (the first read, then resyncs). */
  fullWalks: number;
  /** Reads that looked only at changed flows, and the flows they read. */
  refreshes: number;
  flowsRead: number;
  /** Why the totals had to be refilled: the ring overflowed (ringFull), or the table came
   * near the LRU's eviction point, where flows vanish without a record (nearFull). */
  resyncs: { ringFull: number; nearFull: number };
  /** Flows in the kept copy. */
  mirrored: number;
  /** Open TCP flows whose packets ended the connection with no close event, checked
   * against the kernel's socket table since the daemon started: `stillOpen` had their
   * socket (LAST_ACK or CLOSING retransmitting, or an ignored reset), `inferred` did not
   * and got the close the kernel missed (counters.closesInferred, which survives restarts). */
  closeChecks: { checked: number; stillOpen: number; inferred: number };
  /** How flows are read by key (refreshes, `flows --pid`, the collector, history's
   * listings): 'batch', 256 keys per run of bpf/flowread.bpf.c; 'lookup', one
   * bpf(BPF_MAP_LOOKUP_ELEM) per flow (`reason` says why: the kernel refused the program,
   * `probes.disable`, or a run failed). `batches` and `batchedFlows`: runs and flows read so. */
  reads: { mode: 'batch' | 'lookup'; reason: string | null; batches: number; batchedFlows: number };
}

/** The load balancer's summary in `status`. */
export interface LbStatusSummary {
  interfaces: Array<{ name: string; ifindex: number; mode: 'native' | 'generic' }>;
  vips: number;
  backends: number;
  connTable: { entries: number; capacity: number; inserted: number; deleted: number; evicted: number };
  /** Packets dropped, all reasons. */
  dropped: number;
  /** What the host's settings break, per VIP (`<vip>: <warning>`). */
  warnings: string[];
}

/** The JSON-RPC socket: its clients, and everything it refused (never silently). */
export interface RpcStatus {
  clients: number;
  subscriptions: number;
  /** Events dropped for subscribers that read too slowly (also `loss.subscriberDropped`). */
  subscriberDropped: number;
  /** Connections and requests refused, by reason: tooManyClients, uidLimit (connections
   * per user), idle (closed after `rpc.idleTimeoutSec`), messageTooLarge, invalidRequest,
   * batchTooLarge, replyTooLarge. */
  refused: Record<string, number>;
  limits: { maxClients: number; maxClientsPerUid: number; reservedClients: number };
}

/** The D-Bus service, when it runs. */
export interface DbusStatus {
  callers: number;
  subscribers: number;
  /** Calls waiting or in progress. */
  inFlight: number;
  calls: number;
  errors: number;
  signalsSent: number;
  signalsDropped: number;
  /** The per-process traffic sampler runs (while someone is subscribed or asked lately). */
  sampling: boolean;
  /** Processes the sampler tracks as talking. */
  talking: number;
  /** Subscriptions and calls refused, by reason: tooManySubscribers, uidLimit, busy. */
  refused: Record<string, number>;
}

/** The daemon process's own footprint (util/resources.ts). */
export interface ResourceStatus {
  /** Resident memory of the process (every thread). */
  rssBytes: number;
  /** V8's heap of the main thread: used and reserved. */
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** Memory of Buffers and other objects outside V8's heap (main thread). */
  externalBytes: number;
  /** CPU time since the start, every thread, user and system. */
  cpuMs: number;
  /** Percent of one core over the last `cpuWindowMs` (up to a minute); null right at start. */
  cpuPercent: number | null;
  cpuWindowMs: number;
}

export interface StatusResult {
  version: string;
  pid: number;
  startedAt: string;
  uptimeMs: number;
  /** The daemon's own memory and CPU. */
  resources: ResourceStatus;
  pinPath: string;
  /** When the pinned programs were first loaded (survives daemon restarts). */
  deployedAt: string;
  /** Components adopted from pins at this start (true) or loaded (false). */
  adopted: Record<string, boolean>;
  probes: ProbeStatus[];
  socketScan: SocketScanStatus;
  interfaces: InterfaceStatus[];
  /** Interfaces that matched but could not be attached, with the error. */
  interfaceErrors: Record<string, string>;
  maps: MapView[];
  /** How processes.list, top and the owner index read the flow table. */
  flowIndex: FlowIndexStatus;
  counters: Record<CounterName, number>;
  loss: Loss;
  events: { received: Record<string, number>; pendingBytes: number; maxDrainMs: number };
  transports: { rpc: RpcStatus; dbus: DbusStatus | null };
  /** Sockets that change hands (the `socket-user` probe). */
  handoff: HandoffStatus;
  /** The identity resolver (unit, container, app of each cgroup). */
  identity: IdentityStatus;
  /** Present when the load balancer is configured. */
  lb?: LbStatusSummary;
  /** Present when history is enabled (history.enabled): its store, what it wrote and lost. */
  history?: HistoryStatus;
  /** The application layer (DNS, HTTP, TLS); present in every running daemon (state off when switched off). */
  l7?: L7Status;
  /** Capture and mirror sessions (present unless capture.enabled is false). */
  capture?: CaptureStatus;
  /** Present when an export is configured (`metrics.listen`, `export.clickhouse.url`). */
  export?: ExportStatus;
  /** The geo databases, their cache and `ui.home`. */
  geo: GeoStatus;
}

export interface ProgramView {
  name: string;
  id: number;
  type: string;
  tag: string;
  component: string;
  hooks: string[];
  pinned: string;
  runCount: number;
  runTimeNs: number;
  /** Runs the kernel skipped because another BPF program was running on the CPU. */
  recursionMisses: number;
  /** Instructions the kernel's verifier walked to accept the program (it refuses a program
   * past 1M): how close this kernel came to refusing it (docs/architecture.md, "Verifier
   * cost"). 0 on kernels before 5.16. */
  verifiedInsns: number;
}

export interface ProgramsListResult {
  programs: ProgramView[];
  links: Array<{ name: string; id: number; progId: number; type: string }>;
}
