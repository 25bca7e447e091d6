// SPDX-License-Identifier: Apache-2.0
// History's domain types: what it is fed (flow observations), what it writes (flow records
// and per-minute totals), what a query asks and returns, and its status. Plain data only:
// no engine, no adapter. What clients see (results, status) is declared in contract/history.ts
// and re-exported here.
import type { HistoryGroupBy } from '../contract/history.js';

export {
  HISTORY_GROUP_BY, type HistoryErrorInfo as HistoryError, type HistoryFlow, type HistoryFlowState, type HistoryGroup, type HistoryGroupBy, type HistoryQueryResult as HistoryResult,
  type HistoryState, type HistoryStatus, type HistoryTotals,
} from '../contract/history.js';
import type { HistoryFlowState } from '../contract/history.js';

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
  /** The owner's systemd unit as the daemon's identity service names it (the unit inside a
   * user manager when there is one, else the system unit); flows carry it, close events do
   * not (the writer borrows it from a listing of the same process). */
  unit?: string | null;
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

/** A flow that left the flow table (collected or evicted), named by its 5-tuple as an
 * observation names it, from an incremental listing. */
export interface GoneObservation {
  proto: string;
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  /** When the daemon found it gone (wall ms): a flow first seen after that is another. */
  goneAtMs: number;
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


/** A process as history keys it. */
export interface Owner {
  pid: number | null;
  comm: string | null;
  uid: number | null;
  exe: string | null;
  cgroupId: string | null;
  /** From the identity service (FlowObservation.unit); not part of the key. */
  unit?: string | null;
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

// Status: contract/history.ts (HistoryStatus).
