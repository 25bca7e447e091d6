// SPDX-License-Identifier: Apache-2.0
// Following events: subscribes in batches of rows (the cheapest form for the daemon and for
// this process: one message per batch, about a third of the bytes of objects) and hands
// each event on as the object `events --json` prints, in order, with losses where they
// happened.
import type { EventBatchNotification, EventRow, EventsSubscribeParams, EventType, MonitorEvent } from '../../daemon/src/contract/events.js';
import { METHODS, NOTIFICATIONS } from '../../daemon/src/contract/methods.js';
import type { DaemonClient } from './rpc.js';

/** An event from its row and its type's field names (the batch's `fields`). */
export function rowEvent(row: EventRow, fields: Partial<Record<EventType, readonly string[]>>): MonitorEvent {
  const names = fields[row[0] as EventType];
  if (!names) throw new Error(`the daemon sent a ${String(row[0])} row without its fields`);
  const e: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) e[names[i]!] = row[i];
  return e as unknown as MonitorEvent;
}

/** The events of one batch notification, as objects. */
export function batchEvents(b: EventBatchNotification): MonitorEvent[] {
  return b.encoding === 'object' ? b.events : b.events.map((r) => rowEvent(r, b.fields));
}

export interface EventHandlers {
  onEvent(e: MonitorEvent): void;
  /** `lost` events are missing here (the daemon dropped them: this client read too slowly). */
  onLost(lost: number): void;
}

/** Subscribes on `client` (types, pid, identity filters) in row batches; returns the subscription id. */
export async function subscribeEvents(client: DaemonClient, params: Pick<EventsSubscribeParams, 'types' | 'pid' | 'unit' | 'container' | 'app' | 'cgroup'>, h: EventHandlers): Promise<string> {
  let id: string | null = null;
  // Notifications can come before the reply names the subscription: hold them until then.
  const early: Array<() => void> = [];
  const mine = (sub: string, fn: () => void) => {
    if (id === null) early.push(() => sub === id && fn());
    else if (sub === id) fn();
  };
  client.onNotification(NOTIFICATIONS.batch, (b) => mine(b.subscription, () => {
    for (const e of batchEvents(b)) h.onEvent(e);
  }));
  client.onNotification(NOTIFICATIONS.lost, (l) => mine(l.subscription, () => h.onLost(l.lost)));
  const r = await client.call(METHODS.eventsSubscribe, { ...params, batch: true, encoding: 'row' });
  id = r.subscription;
  for (const fn of early.splice(0)) fn();
  return id;
}
