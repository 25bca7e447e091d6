// SPDX-License-Identifier: Apache-2.0
// Which events a subscriber receives: the types and pid it asked for, within what it may
// see (its own uid's unless it sees everything; the load balancer's changes are shared
// configuration, readable by all). Each transport keeps its own subscriptions.
import { EVENT_ENCODINGS, EVENT_TYPES, type EventEncoding, type EventType, type MonitorEvent } from '../contract/events.js';
import { invalidParam } from '../errors.js';
import type { Caller } from './caller.js';
import { optBool, optEnum, optEnumList, optInt, paramsObject, reqString } from './validate.js';

const SUBSCRIBE_PARAMS = ['types', 'pid', 'batch', 'encoding'];

export interface EventFilter {
  types: ReadonlySet<EventType>;
  /** Filters on what every form of an event has (the bus's events, event objects). */
  accepts(e: Pick<MonitorEvent, 'type' | 'pid' | 'uid'>): boolean;
}

/** How events.subscribe's notifications carry events (its `batch` and `encoding` params). */
export interface EventDelivery {
  batch: boolean;
  encoding: EventEncoding;
}

/** events.subscribe's delivery params. */
export function eventDelivery(raw: unknown): EventDelivery {
  const p = paramsObject(raw, SUBSCRIBE_PARAMS);
  const batch = optBool(p, 'batch') ?? false;
  const encoding = optEnum(p, 'encoding', EVENT_ENCODINGS) ?? 'object';
  if (encoding !== 'object' && !batch) throw invalidParam('params.encoding', encoding, '"object" unless batch is true (rows come only in batches)');
  return { batch, encoding };
}

/** events.subscribe's params as a filter scoped to the caller. */
export function eventFilter(raw: unknown, caller: Caller): EventFilter {
  const p = paramsObject(raw, SUBSCRIBE_PARAMS);
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
