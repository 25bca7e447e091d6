// SPDX-License-Identifier: Apache-2.0
// Flow history: JSON-RPC `history.query`, D-Bus GetHistory, `ebpfmonctl history`, and the
// `history` member of `status`. docs/history.md describes the store behind it.
import type { Family, ProtocolName } from './common.js';

export const HISTORY_GROUP_BY = ['process', 'remote', 'name', 'hour', 'day'] as const;
export type HistoryGroupBy = (typeof HISTORY_GROUP_BY)[number];

/** open: still open at its last record; ended: left the flow table without a close (idle
 * UDP, eviction); rolled-up: several short flows merged beyond the detail budget. */
export type HistoryFlowState = 'open' | 'closed' | 'ended' | 'rolled-up';

/**
 * `history.query` params (D-Bus GetHistory's `a{sv}` filter has the same keys). Filters
 * combine (AND). Scoped by caller like flows.list: a caller outside the ebpfmon group sees
 * its own uid only, and naming another `user` is PermissionDenied.
 */
export interface HistoryQueryParams {
  /** ISO 8601 date-time, epoch ms, or a duration back from now ("90m", "24h", "7d"). Default "24h". */
  since?: string | number;
  /** Same forms; default now. History has minute resolution: the window is widened to whole minutes. */
  until?: string | number;
  pid?: number;
  /** Command name, exact. */
  comm?: string;
  /** A uid, or a user name. */
  user?: number | string;
  /** systemd unit (service or scope) of the process's cgroup, exact or a glob ("*.service"). */
  unit?: string;
  /** Remote address or CIDR prefix (IPv4 or IPv6). */
  remote?: string;
  /** Remote name glob (names come with the DNS/SNI features; flows without one never match). */
  name?: string;
  /** Group instead of listing flows. */
  by?: HistoryGroupBy;
  /** Rows returned, 1..10000, default 100 (largest first; hour/day: all buckets, in order). */
  limit?: number;
}

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
  protocol: ProtocolName | string;
  family: Family;
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
  firstSeenAt: string;
  /** Time of the flow's last record in the window. */
  lastRecordAt: string;
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
  protocol?: ProtocolName | string;
  /** by name (null: flows whose remote has no name) */
  name?: string | null;
  /** by hour/day: start of the bucket, local time of the daemon */
  startsAt?: string;
  /** first and last record times in the group */
  firstRecordAt: string;
  lastRecordAt: string;
}

export interface HistoryQueryResult {
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

export type HistoryState = 'disabled' | 'starting' | 'ok' | 'degraded' | 'failed';

export interface HistoryErrorInfo {
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
  oldestRecordAt: string | null;
  newestRecordAt: string | null;
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
    /** How long the oldest observation a kill -9 would lose has waited since the event
     * loop handed it to the writer thread (ms): one neither journaled nor committed (the
     * journal failed), else how long the last batch waited for its journal append (the
     * thread behind). A kill -9 loses that much traffic plus what was packed since the last
     * hand-over (500 ms at most). Waiting records are committed in one transaction, so a
     * writer that fell behind catches up; what waits is bounded by maxPending (beyond:
     * dropped, counted in dropped). */
    lagMs: number;
  };
  /** The writer's journal (docs/history.md "Journal"): every batch handed over is appended
   * to it before it is accounted; DuckDB commits every `commitIntervalMs` (or sooner) and
   * the files it covers are deleted. Absent when the writer runs without one. */
  journal?: {
    /** Bytes and files on disk (not committed yet, or not yet deleted). */
    bytes: number;
    files: number;
    /** Batches appended since the writer started; not committed yet. */
    batches: number;
    uncommittedBatches: number;
    /** Appends that failed (disk full, I/O error: lastError says), and batches not
     * journaled because the journal was full while commits failed: those wait in memory
     * only (lagMs counts from them). */
    failed: number;
    unjournaled: number;
    /** history.journalSync: every append is flushed to the disk (fdatasync) before it is
     * accounted, so a power loss loses what a kill -9 does; `syncs` flushes made (appends,
     * and new files' directory entries) and the milliseconds the writer thread spent in them. */
    sync: boolean;
    syncs: number;
    syncMs: number;
    /** At open: what a previous writer (killed) left and this one replayed; damaged or torn
     * records are dropped and counted (their bytes), the rest replayed. */
    replayed: { batches: number; observations: number; droppedBytes: number; damaged: number };
    lastCommitAt: string | null;
    commitIntervalMs: number;
  };
  openFlowsTracked: number;
  /** The writer thread's V8 heap in use, bytes (its accountant's state per tracked flow,
   * records waiting for a commit); the event loop's heap is status.resources'. Absent
   * before the writer's first status. */
  writerHeapBytes?: number;
  /** Memory outside that heap held by the writer thread's objects (the batches it
   * received, buffers), bytes. */
  writerExternalBytes?: number;
  /** Full collections of the writer thread's heap it asked for itself, after write sets of
   * 50,000 rows or more (a first listing of a big flow table), two at a time. */
  writerCollections?: number;
  /** DuckDB's own account of its memory (`duckdb_memory()`), and its limit as it prints it
   * (`history.memoryLimitMB`: 256 MB is "244.1 MiB"); refreshed every few seconds. */
  engineMemory?: { usedBytes: number; limit: string };
  /** Listings of the flow table handed to history since the daemon started (docs/history.md
   * "Listings"): `full` ones list every flow, `changesOnly` ones the flows that changed
   * since the previous listing; `last` is the latest one. Absent from the writer's
   * own status (filled in by the daemon's side). */
  listings?: {
    full: number;
    changesOnly: number;
    /** Flows listed, and flows named gone, over all listings. */
    flows: number;
    gone: number;
    last: { full: boolean; flows: number; gone: number; at: string; ms: number } | null;
  };
  lastWriteAt: string | null;
  lastWriteMs: number | null;
  retention: { lastRunAt: string | null; deletedByAge: number; deletedBySize: number };
  lastError: HistoryErrorInfo | null;
  /** Files moved aside (corrupt) since the daemon started. */
  movedAside: Array<{ path: string; at: string; reason: string }>;
}
