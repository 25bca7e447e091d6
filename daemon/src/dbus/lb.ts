// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.LoadBalancer at /org/ebpfmon1/lb: the D-Bus adapter over the API's lb.*
// methods (api/lb.ts). This side converts D-Bus arguments to the API's params (a{sv}
// dictionaries key by key, with their variant types) and results to a{sv}; the API checks
// the values. A change is checked in this order: availability, the arguments, then
// authorization (root, the admin group, or polkit's yes for org.ebpfmon1.manage-lb), so
// no one is asked for a password for a call that would fail anyway.
import type { ApiMethodName, MethodTable } from '../api/index.js';
import { AppError } from '../errors.js';
import { LB_PATH, LB_SPEC, POLKIT_ACTION_MANAGE_LB, type LbMethod, type LbProperty } from '../contract/dbus.js';
import { jsonDict, readDict, type Dict, type FieldKind } from './convert.js';
import { apiCaller, type CallContext, type ObjectImpl } from './object.js';

const HEALTH: Record<string, FieldKind> = { type: 'string', port: 'int', path: 'string', intervalMs: 'int', timeoutMs: 'int', rise: 'int', fall: 'int' };
const ADD_VIP: Record<string, FieldKind> = { vip: 'string', mode: 'string', interface: 'string', health: { dict: HEALTH } };
const ADD_BACKEND: Record<string, FieldKind> = { vip: 'string', backend: 'string', weight: 'int' };

function dictList(list: unknown, what: string): Dict[] {
  if (!Array.isArray(list)) throw new AppError('Internal', `the load balancer returned no ${what} list`);
  return list.map((o) => jsonDict(o as Record<string, unknown>));
}

export function lbObject(methods: MethodTable, available: boolean): ObjectImpl<LbMethod, LbProperty, never> {
  const call = apiCaller(methods, POLKIT_ACTION_MANAGE_LB, () => {
    if (!available) throw new AppError('NotAvailable', 'the load balancer is not configured in this daemon (lb.interfaces)');
  });
  const dictCall = async (ctx: CallContext, name: ApiMethodName, prefix: string, raw: () => unknown): Promise<Dict> =>
    jsonDict((await call(ctx, name, prefix, raw)) as Record<string, unknown>);
  return {
    path: LB_PATH,
    spec: LB_SPEC,
    methods: {
      ListVips: async (ctx) => dictList(((await call(ctx, 'lb.list', '', () => undefined)) as { vips: unknown }).vips, 'VIP'),
      GetStats: (ctx) => dictCall(ctx, 'lb.stats', '', () => undefined),
      ListDropRules: async (ctx) => dictList(((await call(ctx, 'lb.drop.list', '', () => undefined)) as { rules: unknown }).rules, 'rule'),
      AddVip: (ctx, [raw]) => dictCall(ctx, 'lb.vip.add', 'params', () => readDict(raw, 'params', ADD_VIP)),
      RemoveVip: (ctx, [vip]) => dictCall(ctx, 'lb.vip.remove', '', () => ({ vip })),
      AddBackend: (ctx, [raw]) => dictCall(ctx, 'lb.backend.add', 'params', () => readDict(raw, 'params', ADD_BACKEND)),
      RemoveBackend: (ctx, [vip, backend]) => dictCall(ctx, 'lb.backend.remove', '', () => ({ vip, backend })),
      DrainBackend: (ctx, [vip, backend]) => dictCall(ctx, 'lb.backend.drain', '', () => ({ vip, backend })),
      AddDropRule: (ctx, [rule]) => dictCall(ctx, 'lb.drop.add', '', () => ({ rule })),
      RemoveDropRule: (ctx, [rule]) => dictCall(ctx, 'lb.drop.remove', '', () => ({ rule })),
    },
    properties: {
      Available: () => available,
    },
  };
}
