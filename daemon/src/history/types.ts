// SPDX-License-Identifier: Apache-2.0
// History's domain types: what it is fed (flow observations), what it writes (flow records
// and per-minute totals), what a query asks and returns, and its status. Plain data only:
// no engine, no adapter. api-types.ts proposes the JSON-RPC/D-Bus shapes built on these.

/** A flow as history sees it at one moment: from a close event (final counts) or from a
 * periodic listing of the flow table (counts so far). Counts only grow within one flow. */
export interface FlowObservation {
  proto: string;
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  interface: string | null;
  direction: string | null;
  attributedBy: string | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  exe: string | null;
  /** cgroup v2 id (decimal), as flows carry it. */
  cgroupId: string | null;
  /** When the flow was first seen (wall-clock ms). With the 5-tuple, a flow's identity. */
  firstMs: number;
  lastMs: number;
  /** When it closed (TCP close), else null. */
  closedMs: number | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  /** The remote's name once a names feature knows it (DNS answer, SNI, HTTP Host). */
  remoteName?: string | null;
  /** Protocol summaries later features add (DNS, HTTP), as a JSON object text. */
  attrs?: string | null;
}

/** What a record is. The numbers are stored: never renumber. */
export const RECORD_KIND = {
  /** Counts a still-open flow gained since its last record (a periodic snapshot). */
  open: 0,
  /** The last counts of a flow that closed. */
  closed: 1,
  /** The last record of a flow that left the flow table without a close (idle, evicted). */
  ended: 2,
  /** Counts that arrived after the flow's close record (a late FIN retransmit...). */
  late: 3,
  /** Several short flows of one process to one remote endpoint in one minute, merged when
   * more flows closed than the detail budget allows: totals exact, local ports dropped. */
  rollup: 4,
} as const;
export type RecordKind = (typeof RECORD_KIND)[keyof typeof RECORD_KIND];
export const RECORD_KIND_NAMES: Record<RecordKind, HistoryFlowState> = { 0: 'open', 1: 'closed', 2: 'ended', 3: 'closed', 4: 'rolled-up' };

export type HistoryFlowState = 'open' | 'closed' | 'ended' | 'rolled-up';

/** A process as history keys it. */
export interface Owner {
  pid: number | null;
  comm: string | null;
  uid: number | null;
  exe: string | null;
  cgroupId: string | null;
}

/**
 * One row of the flow log. `id` is the record's time in ms * 1024 plus a sequence number,
 * strictly increasing: the record's time is floor(id / 1024), and a time window is a range
 * of ids. A flow's records sum to the flow's own counts.
 */
export interface FlowRecord extends Owner {
  id: number;
  /** The id of the flow's first record (0 for a roll-up). */
  flow: number;
  kind: RecordKind;
  /** Connections this record starts: 1 on a flow's first record, N for a roll-up. */
  conns: number;
  proto: number;
  family: 4 | 6;
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  interface: string | null;
  direction: string | null;
  attributedBy: string | null;
  firstMs: number;
  /** Close time (closed), or when it was found gone (ended), else null. */
  endMs: number | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  remoteName: string | null;
  attrs: string | null;
}

/** 1024 records per ms before ids move ahead of the clock; times up to the year 2248 stay
 * exact in a double (ms * 1024 < 2^53). */
export const ID_SHIFT = 1024;
export const recordTime = (id: number): number => Math.floor(id / ID_SHIFT);

// --- queries --------------------------------------------------------------------------------

export const HISTORY_GROUP_BY = ['process', 'remote', 'name', 'hour', 'day'] as const;
export type HistoryGroupBy = (typeof HISTORY_GROUP_BY)[number];

export interface Cidr {
  family: 4 | 6;
  /** 4 or 16 bytes, host bits cleared. */
  bytes: Buffer;
  prefix: number;
}

/** A validated query (query.ts builds it from request params). Times are ms, [since, until). */
export interface HistoryQuery {
  since: number;
  until: number;
  pid?: number;
  comm?: string;
  uid?: number;
  /** A systemd unit name, or a glob (`*.service`). */
  unit?: string;
  remote?: Cidr;
  /** A glob over the remote name. */
  name?: string;
  by?: HistoryGroupBy;
  limit: number;
}

/** Whose flows a caller may see: one uid (an unprivileged user), or everything. */
export type HistoryScope = { uid: number } | 'all';

export interface HistoryTotals {
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  /** Connections started in the window (a flow counts once, in the minute history first
   * recorded it). */
  connections: number;
}

/** One flow (or one roll-up of short flows) with its counts inside the window. */
export interface HistoryFlow extends HistoryTotals {
  state: HistoryFlowState;
  proto: string;
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  remoteName: string | null;
  interface: string | null;
  direction: string | null;
  attributedBy: string | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  exe: string | null;
  cgroupId: string | null;
  unit: string | null;
  firstSeen: string;
  /** Time of the flow's last record in the window. */
  lastRecord: string;
  closedAt: string | null;
}

export interface HistoryGroup extends HistoryTotals {
  /** by process */
  pid?: number | null;
  comm?: string | null;
  uid?: number | null;
  exe?: string | null;
  unit?: string | null;
  /** by remote */
  remoteAddr?: string;
  remotePort?: number | null;
  proto?: string;
  /** by name (null: flows whose remote has no name) */
  name?: string | null;
  /** by hour/day: start of the bucket, local time of the daemon */
  start?: string;
  /** first and last record times in the group */
  firstRecord: string;
  lastRecord: string;
}

export interface HistoryResult {
  since: string;
  until: string;
  by: HistoryGroupBy | null;
  /** Without `by`: flows, most bytes first. */
  flows?: HistoryFlow[];
  /** With `by`: groups, most bytes first (hour/day: in time order). */
  groups?: HistoryGroup[];
  /** Everything that matched, before `limit`. */
  totals: HistoryTotals;
  matched: number;
  truncated: boolean;
  /** Where the answer came from: the per-minute totals (process filters only) or the flow
   * records. The two agree by construction. */
  source: 'minutes' | 'records';
  /** Flow records older than this were removed by the size limit (per-minute totals are
   * kept for the whole retention period): null when nothing was. */
  recordsSince: string | null;
}

// --- status ---------------------------------------------------------------------------------

export type HistoryState = 'disabled' | 'starting' | 'ok' | 'degraded' | 'failed';

export interface HistoryError {
  at: string;
  /** disk-full, corrupt, io, open, worker, internal */
  code: 'disk-full' | 'corrupt' | 'io' | 'open' | 'worker' | 'internal';
  message: string;
}

export interface HistoryStatus {
  /** ok: writing; degraded: not writing right now (disk full, I/O error), retrying every
   * few seconds while records wait in memory (up to records.maxPending); failed: the
   * database cannot be opened (retried every few seconds) or the writer thread died
   * (restarted with a growing delay); starting; disabled (history.enabled false, or stopped). */
  state: HistoryState;
  engine: string;
  file: string;
  sizeBytes: number;
  maxBytes: number;
  retentionDays: number;
  oldestRecord: string | null;
  newestRecord: string | null;
  records: {
    /** Written since the daemon started. */
    written: number;
    /** Short flows merged into roll-ups (the detail budget was spent). */
    rolledUp: number;
    /** Waiting to be written. */
    pending: number;
    maxPending: number;
    /** Lost: dropped when the pending queue was full, or observations that could not be read. */
    dropped: number;
  };
  openFlowsTracked: number;
  lastWriteAt: string | null;
  lastWriteMs: number | null;
  retention: { lastRunAt: string | null; deletedByAge: number; deletedBySize: number };
  lastError: HistoryError | null;
  /** Files moved aside (corrupt) since the daemon started. */
  movedAside: Array<{ path: string; at: string; reason: string }>;
}
