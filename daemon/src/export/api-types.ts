// SPDX-License-Identifier: Apache-2.0
// Types of the exports' inputs and outputs (types and constants only). The inputs are the
// parts of the contract's shapes the exports read (status, processes.list rows, lb.stats,
// flows.list rows, close events), with the contract's names: the checks at the end make
// the compiler say so. Their status is the contract's (contract/export.ts). The exports
// import nothing of the monitor, the load balancer, the API layer or the adapters: app.ts
// hands them functions over the API and the event bus.
import type { CloseEvent, ContainerIdentity, Flow, LbStats, ProcessTotals, StatusResult } from '../contract/index.js';
import type { ClickHouseExportStatus } from '../contract/export.js';

/** A container as the contract gives it (identity: runtime, id, name) or as a label. */
export type ContainerLabel = ContainerIdentity | string | null;

/** The label exported for a container: its runtime's name, else the id as `docker ps` shows it, or "". */
export function containerLabel(c: ContainerLabel | undefined): string {
  if (!c) return '';
  if (typeof c === 'string') return c;
  return c.name ?? (/^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id);
}

// --- inputs of the Prometheus endpoint -----------------------------------------------------

/** What the endpoint reads from the daemon's `status`. */
export interface DaemonStatusInput {
  version: string;
  startedAt: string;
  uptimeMs: number;
  maps: Array<{ name: string; maxEntries: number; entries: number | null }>;
  counters: Partial<Record<string, number>>;
  loss: {
    ringbufFull: number;
    probeMisses: number;
    flowsEvicted: number;
    subscriberDropped: number;
    undecodable: number;
  };
  events: { received: Record<string, number> };
}

/**
 * One process's cumulative traffic (processes.list): counts only grow while the pid is
 * listed. `unit` and `container` are the process's systemd unit and container, as the
 * identity service (daemon/src/identity/) resolved them; absent or null when not known.
 */
export interface ProcessTrafficInput {
  pid: number | null;
  comm: string | null;
  unit?: string | null;
  container?: ContainerLabel;
  /** The process's start time, when known: tells a reused pid from the process before. */
  startedAt?: string | null;
  flows: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
}

export interface LbCountersInput {
  packets: number;
  bytes: number;
  replyPackets: number;
  replyBytes: number;
  flows: number;
}

/** lb.stats */
export interface LbStatsInput {
  counters: Record<string, number>;
  drops: Record<string, number>;
  tables: Record<string, { entries: number; capacity: number; evicted?: number }>;
  vips: Array<LbCountersInput & { vip: string; backends: Array<LbCountersInput & { backend: string }> }>;
}

export interface MetricsSources {
  status(): Promise<DaemonStatusInput> | DaemonStatusInput;
  processes(): Promise<ProcessTrafficInput[]> | ProcessTrafficInput[];
  /** Absent or null when the load balancer is not configured. */
  lbStats?: () => Promise<LbStatsInput | null> | LbStatsInput | null;
  /** The ClickHouse export's status, when it runs. */
  clickhouse?: () => ClickHouseExportStatus | null;
}

// --- inputs of the ClickHouse export ---------------------------------------------------------

/** A flow as flows.list returns it (includeClosed: true). */
export interface FlowInput {
  protocol: string;
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  direction: string;
  interface: string | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  attributedBy: string;
  unit?: string | null;
  container?: ContainerLabel;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  firstSeenAt: string;
  lastSeenAt: string;
  closedAt: string | null;
}

/** A `close` event (events.subscribe). */
export interface CloseEventInput {
  at: string;
  protocol: string;
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  pid: number | null;
  uid: number | null;
  comm: string | null;
  attributedBy: string;
  unit?: string | null;
  container?: ContainerLabel;
  /** A monitored interface carried the flow: the IP-layer counts are its final counts. */
  flowSeen: boolean;
  interface: string | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  durationMs: number | null;
  payloadBytesSent: number;
  payloadBytesReceived: number;
}

// --- the record written to ClickHouse ---------------------------------------------------------

export const RECORD_KINDS = ['close', 'update'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/**
 * One row of the flows table (docs/export.md, "Schema"): the contract's names in
 * snake_case. Counts are what the flow did since its previous record, so sum() over a
 * flow's rows is its total. Times are Unix seconds (DateTime; servers before 20.1 have no
 * DateTime64).
 */
export interface FlowRecord {
  at: number;
  host: string;
  machine_id: string;
  kind: RecordKind;
  first_seen_at: number;
  duration_ms: number;
  protocol: string;
  family: 'ipv4' | 'ipv6';
  local_addr: string;
  local_port: number;
  remote_addr: string;
  remote_port: number;
  direction: string;
  interface: string;
  /** 0: unknown owner. */
  pid: number;
  comm: string;
  /** 4294967295 ((uid_t)-1): unknown. */
  uid: number;
  unit: string;
  container: string;
  attributed_by: string;
  tx_bytes: number;
  rx_bytes: number;
  tx_packets: number;
  rx_packets: number;
  /** TCP payload bytes from the socket (close records only). */
  payload_sent: number;
  payload_received: number;
}

// --- status (contract/export.ts) -------------------------------------------------------------

export type { ClickHouseExportStatus, ExportStatus, MetricsStatus } from '../contract/export.js';

// --- the contract's shapes are valid inputs (a rename there fails the build here) ---------

type Fits<T, U> = T extends U ? true : false;
const _status: Fits<StatusResult, DaemonStatusInput> = true;
const _process: Fits<ProcessTotals, ProcessTrafficInput> = true;
const _lb: Fits<LbStats, LbStatsInput> = true;
const _flow: Fits<Flow, FlowInput> = true;
const _close: Fits<CloseEvent, CloseEventInput> = true;
export const CONTRACT_FITS = [_status, _process, _lb, _flow, _close];
