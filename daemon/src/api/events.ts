// SPDX-License-Identifier: Apache-2.0
// Which events a subscriber receives: the types and pid it asked for, within what it may
// see (its own uid's unless it sees everything; the load balancer's changes are shared
// configuration, readable by all). Each transport keeps its own subscriptions.
import { EVENT_TYPES, type EventType, type MonitorEvent } from '../contract/events.js';
import type { Caller } from './caller.js';
import { optEnumList, optInt, paramsObject, reqString } from './validate.js';

export interface EventFilter {
  types: ReadonlySet<EventType>;
  accepts(e: MonitorEvent): boolean;
}

/** events.subscribe's params as a filter scoped to the caller. */
export function eventFilter(raw: unknown, caller: Caller): EventFilter {
  const p = paramsObject(raw, ['types', 'pid']);
  const types = new Set(optEnumList(p, 'types', EVENT_TYPES) ?? EVENT_TYPES);
  const pid = optInt(p, 'pid', 0, 0x7fffffff);
  const uid = caller.seesAll ? undefined : caller.uid;
  return {
    types,
    accepts: (e) => (pid === undefined || e.pid === pid) && (uid === undefined || e.type === 'lb' || e.uid === uid),
  };
}

/** events.unsubscribe's params. */
export function subscriptionId(raw: unknown): string {
  return reqString(paramsObject(raw, ['subscription']), 'subscription', 64);
}
