// SPDX-License-Identifier: Apache-2.0
// Events: what `events.subscribe` delivers (notification `events.event`), what
// `ebpfmonctl events --json` prints.
import type { AttributedBy, Family, ProtocolName } from './common.js';
import type { LbEventName } from './lb.js';

export const EVENT_TYPES = ['connect', 'accept', 'close', 'exec', 'exit', 'lb'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

interface EventBase {
  /** When it happened. */
  at: string;
  pid: number | null;
  uid: number | null;
  comm: string | null;
}

/** The connection's 4-tuple and how its owner was learned. */
interface ConnectionBase extends EventBase {
  protocol: ProtocolName | string;
  family: Family;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  attributedBy: AttributedBy;
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

export interface ExecEvent extends EventBase {
  type: 'exec';
  ppid: number;
  gid: number;
  cgroupId: string;
  filename: string;
  args: string[];
  argsTruncated: boolean;
}

export interface ExitEvent extends EventBase {
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

export type MonitorEvent = ConnectEvent | CloseEvent | ExecEvent | ExitEvent | LbEvent;

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

export interface EventsUnsubscribeResult {
  unsubscribed: string;
}

/** Notification `events.event`. */
export interface EventNotification {
  subscription: string;
  event: MonitorEvent;
}

/** Notification `events.lost`: events this subscriber missed because it read too slowly. */
export interface LostNotification {
  subscription: string;
  lost: number;
}
