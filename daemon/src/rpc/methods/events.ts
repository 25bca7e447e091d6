// SPDX-License-Identifier: Apache-2.0
// events.subscribe / events.unsubscribe: server-to-client notifications, filtered by
// type and pid, and scoped to the caller's uid unless it sees everything.
import crypto from 'node:crypto';
import type { JSONRPCServer } from 'json-rpc-2.0';
import type { MonitorApi } from '../../monitor/api.js';
import { EVENT_TYPES } from '../../monitor/events.js';
import { AppError } from '../errors.js';
import { METHODS, type EventsSubscribeResult } from '../protocol.js';
import type { RpcContext, RpcServer } from '../server.js';
import { optEnumList, optInt, paramsObject, reqString } from '../validate.js';

export function registerEventMethods(rpc: JSONRPCServer<RpcContext>, monitor: MonitorApi, server: RpcServer): void {
  rpc.addMethod(METHODS.eventsSubscribe, (raw, ctx): EventsSubscribeResult => {
    const p = paramsObject(raw, ['types', 'pid']);
    const types = new Set(optEnumList(p, 'types', EVENT_TYPES) ?? EVENT_TYPES);
    const pid = optInt(p, 'pid', 0, 0x7fffffff);
    if (ctx.conn.subscriptions.size >= server.limits.maxSubscriptionsPerClient) {
      throw new AppError('TooManySubscriptions', `at most ${server.limits.maxSubscriptionsPerClient} subscriptions per connection`, { limit: server.limits.maxSubscriptionsPerClient });
    }
    const id = crypto.randomUUID();
    const uid = ctx.caller.seesAll ? undefined : ctx.caller.uid;
    const unsubscribe = monitor.bus.subscribe((e) => {
      if (pid !== undefined && e.pid !== pid) return;
      // Load-balancer events describe shared configuration, readable by all (lb.list).
      if (uid !== undefined && e.type !== 'lb' && e.uid !== uid) return;
      ctx.conn.notify(id, e);
    }, types);
    ctx.conn.subscriptions.set(id, unsubscribe);
    return { subscription: id };
  });

  rpc.addMethod(METHODS.eventsUnsubscribe, (raw, ctx) => {
    const p = paramsObject(raw, ['subscription']);
    const id = reqString(p, 'subscription', 64);
    const unsub = ctx.conn.subscriptions.get(id);
    if (!unsub) throw new AppError('NotFound', `no subscription ${id} on this connection`, { field: 'params.subscription', value: id });
    unsub();
    ctx.conn.subscriptions.delete(id);
    return { unsubscribed: id };
  });
}
