// SPDX-License-Identifier: Apache-2.0
// Every event the load balancer emits (on LbManager.events, an EventEmitter the daemon
// forwards to subscribers), with its payload. Names are declared once, here.

export const LB_EVENTS = {
  vipAdded: 'lb.vip.added',
  vipRemoved: 'lb.vip.removed',
  backendAdded: 'lb.backend.added',
  backendRemoved: 'lb.backend.removed',
  backendDrained: 'lb.backend.drained',
  /** A health check failed `fall` times in a row: the backend gets no new flows. */
  backendDown: 'lb.backend.down',
  /** A failing backend passed `rise` checks in a row: it gets new flows again. */
  backendUp: 'lb.backend.up',
  dropAdded: 'lb.drop.added',
  dropRemoved: 'lb.drop.removed',
  configApplied: 'lb.config.applied',
} as const;

export type LbEventName = (typeof LB_EVENTS)[keyof typeof LB_EVENTS];

export interface LbVipEvent {
  vip: string;
}

export interface LbBackendEvent {
  vip: string;
  backend: string;
}

export interface LbHealthEvent extends LbBackendEvent {
  /** 'down' or 'up' */
  state: 'down' | 'up';
  /** The last check's outcome, e.g. `connect ECONNREFUSED`, `HTTP 503`, `timeout after 1000 ms`. */
  reason: string;
  /** Consecutive results that caused the transition. */
  consecutive: number;
  check: 'tcp' | 'http';
}

export interface LbDropEvent {
  rule: string;
}

export interface LbEventPayloads {
  'lb.vip.added': LbVipEvent;
  'lb.vip.removed': LbVipEvent;
  'lb.backend.added': LbBackendEvent;
  'lb.backend.removed': LbBackendEvent;
  'lb.backend.drained': LbBackendEvent;
  'lb.backend.down': LbHealthEvent;
  'lb.backend.up': LbHealthEvent;
  'lb.drop.added': LbDropEvent;
  'lb.drop.removed': LbDropEvent;
  'lb.config.applied': { vips: Array<{ vip: string; action: string }> };
}
