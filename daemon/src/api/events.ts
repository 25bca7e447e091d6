// SPDX-License-Identifier: Apache-2.0
// Which events a subscriber receives: the types, pid and owner identity (unit, container,
// app, cgroup: validated as flows.list's, api/identity.ts) it asked for, within what it may
// see (its own uid's unless it sees everything; the load balancer's changes are shared
// configuration, readable by all). Each transport keeps its own subscriptions.
import { EVENT_ENCODINGS, EVENT_TYPES, type EventEncoding, type EventType, type EventsSubscribeParams } from '../contract/events.js';
import type { OwnerIdentity } from '../contract/identity.js';
import { invalidParam } from '../errors.js';
import type { Caller } from './caller.js';
import { IDENTITY_FILTER_PARAMS, identityPredicate } from './identity.js';
import { optBool, optEnum, optEnumList, optInt, paramsObject, reqString } from './validate.js';

const SUBSCRIBE_PARAMS = ['types', 'pid', 'batch', 'encoding', ...IDENTITY_FILTER_PARAMS] as const satisfies ReadonlyArray<keyof EventsSubscribeParams>;

/** What the filter reads of an event (the bus's events have it without being decoded). */
export interface FilterableEvent {
  readonly type: EventType;
  readonly pid: number | null;
  readonly uid: number | null;
  /** The owner's identity; null for events without one (lb, dns, http). */
  owner(): OwnerIdentity | null;
}

export interface EventFilter {
  types: ReadonlySet<EventType>;
  /** Filters on what every form of an event has (the bus's events, event objects). */
  accepts(e: FilterableEvent): boolean;
}

/**
 * An identity predicate memoised per owner: owners' identities are shared objects, one per
 * cgroup (the identity service's cache), so a subscriber's filter runs once per cgroup, not
 * per event.
 */
function memoised(pred: (id: OwnerIdentity) => boolean): (id: OwnerIdentity) => boolean {
  const seen = new WeakMap<OwnerIdentity, boolean>();
  let last: OwnerIdentity | null = null;
  let lastOk = false;
  return (id) => {
    if (id === last) return lastOk;
    let ok = seen.get(id);
    if (ok === undefined) {
      ok = pred(id);
      seen.set(id, ok);
    }
    last = id;
    lastOk = ok;
    return ok;
  };
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
  const pred = identityPredicate(p);
  const identity = pred && memoised(pred);
  const uid = caller.seesAll ? undefined : caller.uid;
  return {
    types,
    accepts: (e) => {
      if ((pid !== undefined && e.pid !== pid) || (uid !== undefined && e.type !== 'lb' && e.uid !== uid)) return false;
      if (identity === undefined) return true;
      // Events no process owns in that sense (lb, dns, http) are left out by an identity filter.
      const id = e.owner();
      return id !== null && identity(id);
    },
  };
}

/** events.unsubscribe's params. */
export function subscriptionId(raw: unknown): string {
  return reqString(paramsObject(raw, ['subscription']), 'subscription', 64);
}
