// SPDX-License-Identifier: Apache-2.0
// The API's methods on the socket: each is validated, authorized (`admin` methods need
// root or the admin group) and run as the API declares it (api/); events.subscribe and
// events.unsubscribe manage this connection's subscriptions to the daemon's event bus.
import crypto from 'node:crypto';
import { METHODS } from '../contract/methods.js';
import type { EventsSubscribeResult, EventsUnsubscribeResult } from '../contract/events.js';
import { AppError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import { eventDelivery, eventFilter, subscriptionId, type Api, type Caller, type MethodsByName } from '../api/index.js';
import type { RpcServer } from './server.js';

export function denied(caller: Caller, method: string, adminGroup: string): AppError {
  const what = method.startsWith('lb.') ? 'change the load balancer' : `call ${method}`;
  return new AppError('PermissionDenied', `uid ${caller.uid} may not ${what} (root or the ${adminGroup} group may)`);
}

export function registerApi(server: RpcServer, api: Api, bus: EventBus, adminGroup: string): void {
  const methods: MethodsByName = api.methods;
  for (const [name, def] of Object.entries(methods)) {
    server.rpc.addMethod(name, async (raw, ctx) => {
      // Refusing a non-admin costs nothing here (no password prompt, unlike polkit on
      // D-Bus), so it comes first: such a caller learns nothing about the configuration.
      if (def.access === 'admin' && !ctx.caller.admin) throw denied(ctx.caller, name, adminGroup);
      return def.run(def.validate(raw, ctx.caller), ctx.caller);
    });
  }

  server.rpc.addMethod(METHODS.eventsSubscribe, (raw, ctx): EventsSubscribeResult => {
    const filter = eventFilter(raw, ctx.caller);
    const delivery = eventDelivery(raw);
    if (ctx.conn.subscriptions.size >= server.limits.maxSubscriptionsPerClient) {
      throw new AppError('TooManySubscriptions', `at most ${server.limits.maxSubscriptionsPerClient} subscriptions per connection`, { limit: server.limits.maxSubscriptionsPerClient });
    }
    const sub = { id: crypto.randomUUID(), ...delivery, lost: 0 };
    const conn = ctx.conn;
    const unsubscribe = bus.subscribeEvents((e) => {
      if (filter.accepts(e)) conn.notify(sub, e);
    }, filter.types);
    conn.subscriptions.set(sub.id, unsubscribe);
    conn.subs.set(sub.id, sub);
    return { subscription: sub.id };
  });

  server.rpc.addMethod(METHODS.eventsUnsubscribe, (raw, ctx): EventsUnsubscribeResult => {
    const id = subscriptionId(raw);
    const unsub = ctx.conn.subscriptions.get(id);
    if (!unsub) throw new AppError('NotFound', `no subscription ${id} on this connection`, { field: 'params.subscription', value: id });
    unsub();
    ctx.conn.subscriptions.delete(id);
    ctx.conn.subs.delete(id);
    return { unsubscribed: id };
  });
}
