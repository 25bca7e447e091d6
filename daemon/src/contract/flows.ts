// SPDX-License-Identifier: Apache-2.0
// Flows and per-process totals: `flows.list`, `processes.list`, D-Bus GetFlows,
// GetProcesses and GetProcessTotals.
import { KERNEL_COMM, type AttributedBy, type Direction, type Family, type ProtocolName, type TcpFlag } from './common.js';
import type { L7FlowFields, ProcessHttpSummary } from './l7.js';
import type { GroupTotals, IdentityFilter, OwnerIdentity, ProcessGrouping } from './identity.js';
import type { GeoLabel, ProcessPlace, RemoteGeo } from './geo.js';

/** A flow, with its owner's identity (unit, container, app...: contract/identity.ts); remoteName,
 * serverName, tlsVersion (L7FlowFields) come from the application layer. */
export interface Flow extends L7FlowFields, OwnerIdentity {
  /** A protocol name, or the IP protocol number as a string. */
  protocol: ProtocolName | string;
  family: Family;
  localAddr: string;
  /** null for ICMP (see icmpType, icmpId). */
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  /** ICMP/ICMPv6 only: the message type (a reply counts under its request's type) and the echo id or code. */
  icmpType?: number;
  icmpId?: number;
  direction: Direction;
  /** Interface that carried the first packet. */
  interface: string | null;
  pid: number | null;
  tid: number | null;
  comm: string | null;
  uid: number | null;
  gid: number | null;
  /** cgroup v2 id, as a decimal string (it exceeds 2^53). */
  cgroupId: string | null;
  attributedBy: AttributedBy;
  ppid: number | null;
  exe: string | null;
  /** TCP: the socket's state (`established`, `closed`...); others: `active` or `closed`. */
  state: string;
  tcpFlags: { tx: TcpFlag[]; rx: TcpFlag[] };
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  fragments: number;
  ipOptions: boolean;
  ipv6ExtHeaders: boolean;
  firstSeenAt: string;
  lastSeenAt: string;
  closedAt: string | null;
  /** Where the remote address is (docs/geo.md); null when `geo.enabled` is false. */
  remoteGeo: RemoteGeo | null;
}

export const FLOW_SORTS = ['bytes', 'packets', 'age', 'recent'] as const;
export type FlowSort = (typeof FLOW_SORTS)[number];

export interface FlowsListParams extends IdentityFilter {
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
  protocol?: ProtocolName;
  interface?: string;
  /** Include flows closed within the retention time (default true). */
  includeClosed?: boolean;
  sort?: FlowSort;
  /** At most this many flows (default 1000, at most 100000). */
  limit?: number;
  /** Remote address in this country (ISO 3166-1 alpha-2), ... */
  country?: string;
  /** ... announced by this autonomous system, ... */
  asn?: number;
  /** ... or in this special range (`private`, `loopback`...). */
  label?: GeoLabel;
}

export interface FlowsListResult {
  flows: Flow[];
  /** Flows in the table (all owners). */
  total: number;
  /** Flows that matched the filters before `limit`. */
  matched: number;
}

/** Cumulative traffic of one process (live flows plus flows already collected), with its identity. */
export interface ProcessTotals extends OwnerIdentity {
  /** null for flows nobody could attribute, and for the kernel's own traffic (comm `[kernel]`). */
  pid: number | null;
  comm: string | null;
  uid: number | null;
  exe: string | null;
  /** The cgroup v2 id of its most recent flow (decimal string). */
  cgroupId: string | null;
  flows: number;
  openFlows: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  lastSeenAt: string | null;
  /** Where its current flows go, busiest place first (at most `places`; [] when geo is off). */
  places: ProcessPlace[];
  /** Its HTTP/1.x requests (l7.http / l7.tls); null when none was seen on its flows. */
  http: ProcessHttpSummary | null;
}

export interface ProcessesListParams extends IdentityFilter {
  uid?: number;
  limit?: number;
  /** Also total the processes per unit, container or app (`groups`); default `process` (none). */
  by?: ProcessGrouping;
  /** Places per process (0 to 100, default 5). */
  places?: number;
  /**
   * JSON-RPC only: an incremental reply (`ebpfmonctl top`). `null` starts a stream (a full
   * reply with a `cursor`); the `cursor` of the previous reply then asks for only the rows that
   * changed since it (see ProcessesListResult). Rows are keyed as processKey() says.
   */
  since?: string | null;
}

export interface ProcessesListResult {
  /** Every row; with `since` and `full: false`, only the rows that changed or came into the list since that cursor. */
  processes: ProcessTotals[];
  /** With `by` unit, container or app: every matching process's totals, per group, busiest first. */
  groups?: GroupTotals[];
  /** With `since`: the cursor to pass as `since` next time (opaque, single use). */
  cursor?: string;
  /**
   * With `since`: true when `processes` is the whole list (replace what you kept): a `since`
   * of null, or a cursor this daemon no longer knows (expired, used already, another caller's
   * or another daemon run's, other params), or `by` other than `process`.
   */
  full?: boolean;
  /** With `since` and `full: false`: keys (processKey()) of rows that left the list. */
  gone?: ProcessKey[];
}

/** Key of the processes.list row of the kernel's own traffic (pid null, comm `[kernel]`). */
export const PROCESS_KEY_KERNEL = 'kernel';
/** Key of the row of traffic no process could be found for (pid null, any other comm). */
export const PROCESS_KEY_UNKNOWN = 'unknown';
/**
 * The key of a processes.list row: the pid as a decimal string, else PROCESS_KEY_KERNEL when
 * `comm` is `[kernel]` (KERNEL_COMM), else PROCESS_KEY_UNKNOWN. Incremental replies list in
 * `gone` keys made this way.
 */
export type ProcessKey = string;

/** processes.list's row key (ProcessKey): one definition for the daemon and every client
 * that keeps rows between incremental replies (pure, like contract/dbus.ts's signatures). */
export function processKey(p: Pick<ProcessTotals, 'pid' | 'comm'>): ProcessKey {
  return p.pid !== null ? String(p.pid) : p.comm === KERNEL_COMM ? PROCESS_KEY_KERNEL : PROCESS_KEY_UNKNOWN;
}

/**
 * processes.list's order: txBytes + rxBytes, largest first; ties by key (pids ascending,
 * then the kernel's row, then unknown owners), so that a client keeping rows between
 * incremental replies sorts them as a full reply has them.
 */
export function compareProcessRows(a: Pick<ProcessTotals, 'pid' | 'comm' | 'txBytes' | 'rxBytes'>, b: Pick<ProcessTotals, 'pid' | 'comm' | 'txBytes' | 'rxBytes'>): number {
  const d = b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes);
  if (d !== 0) return d;
  if (a.pid !== null && b.pid !== null) return a.pid - b.pid;
  if (a.pid !== null) return -1;
  if (b.pid !== null) return 1;
  return nullRank(a.comm) - nullRank(b.comm);
}

/** Sort rank of a row without a pid: the kernel's after every pid, unknown owners last. */
function nullRank(comm: string | null): number {
  return comm === KERNEL_COMM ? 1 : 2;
}
