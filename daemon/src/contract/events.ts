// SPDX-License-Identifier: Apache-2.0
// Events: what `events.subscribe` delivers (notification `events.event`), what
// `ebpfmonctl events --json` prints.
import type { AttributedBy, Family, ProtocolName } from './common.js';
import type { RemoteGeo } from './geo.js';
import { EVENT_OWNER_FIELDS, IDENTITY_FIELDS, type EventOwner, type IdentityFilter } from './identity.js';
import type { LbEventName } from './lb.js';
import type { DnsEvent, HttpEvent } from './l7.js';

export const EVENT_TYPES = ['connect', 'accept', 'close', 'exec', 'exit', 'lb', 'dns', 'http'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

interface EventBase {
  /** When it happened. */
  at: string;
  pid: number | null;
  uid: number | null;
  comm: string | null;
}

// Who an event's process is (EventOwner): declared with the identity shapes, which DNS and
// HTTP events (contract/l7.ts) share.
export { EVENT_OWNER_FIELDS, type EventOwner } from './identity.js';

/** The connection's 4-tuple and how its owner was learned. */
interface ConnectionBase extends EventBase, EventOwner {
  protocol: ProtocolName | string;
  family: Family;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  attributedBy: AttributedBy;
  /** Where the remote address is, as on flows; null when `geo.enabled` is false. */
  remoteGeo: RemoteGeo | null;
}

/** An outbound TCP connection reached ESTABLISHED (`connect`), or a process accepted one (`accept`). */
export interface ConnectEvent extends ConnectionBase {
  type: 'connect' | 'accept';
  tid: number | null;
}

/** A TCP socket reached CLOSE, with the flow's final counts. */
export interface CloseEvent extends ConnectionBase {
  type: 'close';
  /** A monitored interface carried the flow: the IP-layer counts below are its final counts. */
  flowSeen: boolean;
  interface: string | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  durationMs: number | null;
  /** TCP payload bytes, from the socket (any interface, loopback too). */
  payloadBytesSent: number;
  payloadBytesReceived: number;
  /** TCP state before close (`syn_sent` means the connection never succeeded). */
  previousState: string;
}

export interface ExecEvent extends EventBase, EventOwner {
  type: 'exec';
  ppid: number;
  gid: number;
  /** The kernel records it at every exec. */
  cgroupId: string;
  filename: string;
  args: string[];
  argsTruncated: boolean;
}

/** The owner's cgroup is the one its exec recorded (the exit record has none). */
export interface ExitEvent extends EventBase, EventOwner {
  type: 'exit';
  ppid: number;
  exitCode: number;
  signal: number;
  durationMs: number | null;
}

/** The load balancer changed: a VIP or backend added, removed or drained, a health check
 * took a backend down or up, a drop rule... (`name`: LB_EVENTS). */
export interface LbEvent extends EventBase {
  type: 'lb';
  pid: null;
  uid: null;
  comm: null;
  name: LbEventName;
  detail: Record<string, unknown>;
}

/** `dns`: a query a process made and its answer (l7.ts DnsQuery); `http`: an HTTP/1.x
 * request and its response (l7.ts HttpRequest). Only while L7 runs (`l7.dns`, `l7.http`). */
export type MonitorEvent = ConnectEvent | CloseEvent | ExecEvent | ExitEvent | LbEvent | DnsEvent | HttpEvent;

/**
 * How a subscription's events arrive: `batch: false` (the default), one `events.event`
 * notification per event; `batch: true`, one `events.batch` notification carrying every
 * event queued for the subscription since the last one (up to EVENT_BATCH_MAX), which
 * costs the daemon and the client one message per batch instead of one per event.
 */
export interface EventsSubscribeParams extends IdentityFilter {
  /** Default: every type. */
  types?: EventType[];
  pid?: number;
  // unit, container, app, cgroup (IdentityFilter): only events of owners that match, as
  // flows.list filters; events with no owner identity (lb, dns, http) are then left out.
  /** Many events per notification (`events.batch`). Default false. */
  batch?: boolean;
  /** How a batch carries each event (batch only). Default `object`. */
  encoding?: EventEncoding;
}

/**
 * `object`: each event as the object `events.event` carries. `row`: each event as a JSON
 * array of its values in EVENT_FIELDS order for its type (the type first), about a third
 * of the bytes: the batch lists the fields of every type it holds (`fields`), so a client
 * need not know them in advance.
 */
export const EVENT_ENCODINGS = ['object', 'row'] as const;
export type EventEncoding = (typeof EVENT_ENCODINGS)[number];

/** Most events in one `events.batch` notification. */
export const EVENT_BATCH_MAX = 1024;

/**
 * The fields of each event type in `row` order: every field of the type's interface
 * (checked at compile time below), `type` first.
 */
export const EVENT_FIELDS = {
  connect: ['type', 'at', 'pid', 'tid', 'uid', 'comm', 'protocol', 'family', 'localAddr', 'localPort', 'remoteAddr', 'remotePort', 'attributedBy', 'remoteGeo', ...EVENT_OWNER_FIELDS],
  accept: ['type', 'at', 'pid', 'tid', 'uid', 'comm', 'protocol', 'family', 'localAddr', 'localPort', 'remoteAddr', 'remotePort', 'attributedBy', 'remoteGeo', ...EVENT_OWNER_FIELDS],
  close: [
    'type', 'at', 'pid', 'uid', 'comm', 'protocol', 'family', 'localAddr', 'localPort', 'remoteAddr', 'remotePort', 'attributedBy',
    'flowSeen', 'interface', 'txBytes', 'rxBytes', 'txPackets', 'rxPackets', 'durationMs', 'payloadBytesSent', 'payloadBytesReceived', 'previousState', 'remoteGeo',
    ...EVENT_OWNER_FIELDS,
  ],
  exec: ['type', 'at', 'pid', 'ppid', 'uid', 'gid', 'cgroupId', 'comm', 'filename', 'args', 'argsTruncated', ...IDENTITY_FIELDS],
  exit: ['type', 'at', 'pid', 'ppid', 'uid', 'comm', 'exitCode', 'signal', 'durationMs', ...EVENT_OWNER_FIELDS],
  lb: ['type', 'at', 'pid', 'uid', 'comm', 'name', 'detail'],
  dns: ['type', 'at', 'pid', 'uid', 'comm', 'name', 'recordType', 'rcode', 'answers', 'latencyMs', 'server', 'transport', 'via', 'truncated', 'error', ...EVENT_OWNER_FIELDS],
  http: [
    'type', 'at', 'pid', 'uid', 'comm', 'family', 'localAddr', 'localPort', 'remoteAddr', 'remotePort', 'method', 'host', 'path', 'version',
    'status', 'requestBytes', 'responseBytes', 'timeToFirstByteMs', 'durationMs', 'tls', 'flags', ...EVENT_OWNER_FIELDS,
  ],
} as const satisfies Record<EventType, readonly string[]>;

/** Compile-time check: each list names exactly the fields of its event type. */
type EventOf<T extends EventType> = MonitorEvent extends infer E ? (E extends { type: infer U } ? (T extends U ? E : never) : never) : never;
type FieldsMismatch = {
  [T in EventType]: [Exclude<keyof EventOf<T>, (typeof EVENT_FIELDS)[T][number]>, Exclude<(typeof EVENT_FIELDS)[T][number], keyof EventOf<T>>] extends [never, never] ? never : T;
}[EventType];
export const EVENT_FIELDS_COMPLETE: [FieldsMismatch] extends [never] ? true : FieldsMismatch = true;

/** An event in the `row` encoding: its values in EVENT_FIELDS order. */
export type EventRow = readonly unknown[];

export interface EventsSubscribeResult {
  subscription: string;
}

export interface EventsUnsubscribeParams {
  subscription: string;
}

export interface EventsUnsubscribeResult {
  unsubscribed: string;
}

/** Notification `events.event`. */
export interface EventNotification {
  subscription: string;
  event: MonitorEvent;
}

/**
 * Notification `events.batch` (subscriptions with `batch: true`): events in the order they
 * happened. Events dropped for a slow reader are reported by an `events.lost`
 * notification at the place in the stream where they are missing.
 */
export type EventBatchNotification =
  | { subscription: string; encoding: 'object'; events: MonitorEvent[] }
  | { subscription: string; encoding: 'row'; fields: Partial<Record<EventType, readonly string[]>>; events: EventRow[] };

/**
 * Notification `events.lost`: events this subscriber missed because it read too slowly.
 * It comes where the events are missing: after the events delivered before them and
 * before those delivered after them.
 */
export interface LostNotification {
  subscription: string;
  lost: number;
}
