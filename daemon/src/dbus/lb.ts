// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.LoadBalancer at /org/ebpfmon1/lb. LbApi is all this object needs from the
// load balancer (daemon/src/lb/manager.ts implements it): plain JSON-able params and
// results. The manager validates values (addresses, modes, weights) and throws AppErrors
// from the one table; this side checks the D-Bus shapes (keys, variant types, lengths)
// and authorization. Anyone may read; a change needs root, the admin group, or polkit's
// yes for org.ebpfmon1.manage-lb.
import { AppError, invalidParam } from '../rpc/errors.js';
import { jsonDict, readDict, type Dict, type FieldKind } from './convert.js';
import { LB_PATH, POLKIT_ACTION_MANAGE_LB, type LbMethod, type LbProperty } from './names.js';
import type { CallContext, ObjectImpl } from './object.js';
import { LB_SPEC } from './schema.js';

type MaybePromise<T> = T | Promise<T>;

export interface LbHealthParams {
  type: string;
  port?: number;
  path?: string;
  intervalMs?: number;
  timeoutMs?: number;
  rise?: number;
  fall?: number;
}

export interface LbAddVipParams {
  /** "ADDR:PORT/PROTO" */
  vip: string;
  mode?: string;
  interface?: string;
  health?: LbHealthParams;
}

export interface LbAddBackendParams {
  vip: string;
  /** "ADDR" or "ADDR:PORT" */
  backend: string;
  weight?: number;
}

export interface LbApi {
  /** Must carry `vips`: one object per VIP. */
  list(): MaybePromise<{ vips: readonly object[] }>;
  stats(): MaybePromise<object>;
  addVip(p: LbAddVipParams): MaybePromise<object>;
  removeVip(p: { vip: string }): MaybePromise<object>;
  addBackend(p: LbAddBackendParams): MaybePromise<object>;
  removeBackend(p: { vip: string; backend: string }): MaybePromise<object>;
  drainBackend(p: { vip: string; backend: string }): MaybePromise<object>;
  dropAdd(p: { rule: string }): MaybePromise<object>;
  dropRemove(p: { rule: string }): MaybePromise<object>;
  /** Must carry `rules`: one object per rule. */
  dropList(): MaybePromise<{ rules: readonly object[] }>;
}

const HEALTH: Record<string, FieldKind> = { type: 'string', port: 'int', path: 'string', intervalMs: 'int', timeoutMs: 'int', rise: 'int', fall: 'int' };
const ADD_VIP: Record<string, FieldKind> = { vip: 'string', mode: 'string', interface: 'string', health: { dict: HEALTH } };
const ADD_BACKEND: Record<string, FieldKind> = { vip: 'string', backend: 'string', weight: 'int' };
/** Longer than any address, rule or interface name; keeps hostile strings out of logs. */
const MAX_STRING = 256;

/** Shapes only; the load balancer judges the values. */
function checkShapes(p: Record<string, unknown>, field: string, required: string[]): void {
  for (const k of required) if (p[k] === undefined) throw invalidParam(`${field}.${k}`, undefined, 'a value (required)');
  for (const [k, v] of Object.entries(p)) {
    if (typeof v === 'string' && (v.length === 0 || v.length > MAX_STRING)) throw invalidParam(`${field}.${k}`, v, `a string of 1 to ${MAX_STRING} characters`);
    if (typeof v === 'number' && (v < 0 || v > 0xffffffff)) throw invalidParam(`${field}.${k}`, v, 'an integer from 0 to 4294967295');
    if (typeof v === 'object' && v !== null) checkShapes(v as Record<string, unknown>, `${field}.${k}`, []);
  }
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_STRING) throw invalidParam(field, v, `a string of 1 to ${MAX_STRING} characters`);
  return v;
}

function dictList(list: unknown, what: string): Dict[] {
  if (!Array.isArray(list)) throw new AppError('Internal', `the load balancer returned no ${what} list`);
  return list.map((o) => jsonDict(o as Record<string, unknown>));
}

export function lbObject(lb: LbApi | undefined): ObjectImpl<LbMethod, LbProperty, never> {
  const api = (): LbApi => {
    if (!lb) throw new AppError('NotAvailable', 'the load balancer is not configured in this daemon (lb.interfaces)');
    return lb;
  };
  /**
   * Availability, then the arguments, then authorization (no password prompt for a call
   * that would fail anyway), then the change.
   */
  const change = async <P>(ctx: CallContext, parse: () => P, fn: (l: LbApi, p: P) => MaybePromise<object>): Promise<Dict> => {
    const l = api();
    const p = parse();
    await ctx.requireAuthorization(POLKIT_ACTION_MANAGE_LB);
    return jsonDict((await fn(l, p)) as Record<string, unknown>);
  };
  /** An a{sv} of params; its keys and variant types are checked against `spec`, which mirrors P. */
  const dict = <P>(raw: unknown, spec: Record<string, FieldKind>, required: string[]) => (): P => {
    const p = readDict(raw, 'params', spec);
    checkShapes(p, 'params', required);
    return p as P;
  };
  return {
    path: LB_PATH,
    spec: LB_SPEC,
    methods: {
      ListVips: async () => dictList((await api().list()).vips, 'VIP'),
      GetStats: async () => jsonDict((await api().stats()) as Record<string, unknown>),
      ListDropRules: async () => dictList((await api().dropList()).rules, 'rule'),
      AddVip: (ctx, [raw]) => change(ctx, dict<LbAddVipParams>(raw, ADD_VIP, ['vip']), (l, p) => l.addVip(p)),
      RemoveVip: (ctx, [vip]) => change(ctx, () => ({ vip: str(vip, 'vip') }), (l, p) => l.removeVip(p)),
      AddBackend: (ctx, [raw]) => change(ctx, dict<LbAddBackendParams>(raw, ADD_BACKEND, ['vip', 'backend']), (l, p) => l.addBackend(p)),
      RemoveBackend: (ctx, [vip, backend]) =>
        change(ctx, () => ({ vip: str(vip, 'vip'), backend: str(backend, 'backend') }), (l, p) => l.removeBackend(p)),
      DrainBackend: (ctx, [vip, backend]) =>
        change(ctx, () => ({ vip: str(vip, 'vip'), backend: str(backend, 'backend') }), (l, p) => l.drainBackend(p)),
      AddDropRule: (ctx, [rule]) => change(ctx, () => ({ rule: str(rule, 'rule') }), (l, p) => l.dropAdd(p)),
      RemoveDropRule: (ctx, [rule]) => change(ctx, () => ({ rule: str(rule, 'rule') }), (l, p) => l.dropRemove(p)),
    },
    properties: {
      Available: () => lb !== undefined,
    },
  };
}
