// SPDX-License-Identifier: Apache-2.0
// PROPOSED (not wired): how history appears on ebpfmon's APIs, for the contract module the
// lead is building. JSON-RPC `history.query` and D-Bus `GetHistory` take the same
// parameters and return the same result; `status` gains a `history` member. Types only.
import type { HistoryFlow, HistoryGroup, HistoryGroupBy, HistoryStatus, HistoryTotals } from './types.js';

export const HISTORY_METHOD = { query: 'history.query' } as const;
export const HISTORY_DBUS_METHOD = { GetHistory: 'GetHistory' } as const;

/**
 * JSON-RPC `history.query` params (and D-Bus GetHistory's `a{sv}` filter with the same keys).
 * Filters combine (AND). Scoped by caller like flows.list: a caller outside the ebpfmon group
 * sees its own uid only, and naming another `user` is PermissionDenied (rpc scopeUid).
 * Bad values are InvalidParams naming the field (query.ts HistoryParamError.field).
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

/** JSON-RPC `history.query` result. Exactly one of `flows` (no `by`) and `groups` is set. */
export interface HistoryQueryResult {
  since: string;
  until: string;
  by: HistoryGroupBy | null;
  flows?: HistoryFlow[];
  groups?: HistoryGroup[];
  totals: HistoryTotals;
  matched: number;
  truncated: boolean;
  source: 'minutes' | 'records';
  recordsSince: string | null;
}

/**
 * D-Bus `org.ebpfmon1.Manager.GetHistory(a{sv} filter) -> (a{sv} summary, aa{sv} rows)`:
 * filter keys and variant types as HistoryQueryParams (since/until/comm/unit/remote/name/by: s,
 * pid/user/limit: u; user as a name: s); summary holds since, until, by (s, "" for none),
 * source (s), recordsSince (s, "" for none), matched (u), truncated (b), txBytes, rxBytes,
 * txPackets, rxPackets, connections (t); rows are HistoryFlow or HistoryGroup dicts with
 * the same field names (null fields omitted, counts as t, pid/uid/ports as u).
 */
export type GetHistorySignature = { in: ['a{sv}']; out: ['a{sv}', 'aa{sv}'] };

/** `status` result gains this member (absent when history.enabled is false). */
export type StatusHistory = HistoryStatus;
