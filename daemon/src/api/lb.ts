// SPDX-License-Identifier: Apache-2.0
// lb.*: the XDP load balancer, one declaration for JSON-RPC and D-Bus. Reads are open to
// every caller (VIPs and backends are not per-user data); changes need root, the admin
// group or (D-Bus) polkit. Every argument is checked here first, before anyone is asked
// for authorization; the manager checks again against its state and applies a change
// completely or not at all.
import type { AddBackendParams, AddVipParams, BackendParams, DropRuleParams, LbFlowsParams, VipParams } from '../contract/lb.js';
import type { LbStatusSummary } from '../contract/status.js';
import { AppError } from '../errors.js';
import type { LbManager } from '../lb/manager.js';
import { parseBackend, parseDropRule, parseHealth, parseIfname, parseMode, parseVip, parseWeight } from '../lb/validate.js';
import { method } from './method.js';
import { optInt, optString, paramsObject } from './validate.js';

/** What the API uses of the manager (a fake can stand in for tests). */
export type LbApi = Pick<LbManager, 'addVip' | 'removeVip' | 'addBackend' | 'removeBackend' | 'drainBackend' | 'list' | 'stats' | 'flows' | 'addDropRule' | 'removeDropRule' | 'listDropRules'>;

export function lbMethods(lb: LbApi | null) {
  const available = (): LbApi => {
    if (!lb) throw new AppError('NotAvailable', 'the load balancer is not configured (set lb.interfaces in the configuration)');
    return lb;
  };
  const noParams = (raw: unknown) => {
    available();
    paramsObject(raw, []);
  };
  // Validators check and pass the params on as given (the manager keys by canonical text itself).
  const vipParam = (raw: unknown): VipParams => {
    available();
    const p = paramsObject(raw, ['vip']);
    parseVip('params.vip', p.vip);
    return { vip: p.vip as string };
  };
  const backendParam = (raw: unknown): BackendParams => {
    available();
    const p = paramsObject(raw, ['vip', 'backend']);
    parseBackend('params.backend', p.backend, parseVip('params.vip', p.vip));
    return { vip: p.vip as string, backend: p.backend as string };
  };
  const ruleParam = (raw: unknown): DropRuleParams => {
    available();
    const p = paramsObject(raw, ['rule']);
    parseDropRule('params.rule', p.rule);
    return { rule: p.rule as string };
  };
  return {
    'lb.vip.add': method<'lb.vip.add', AddVipParams>({
      access: 'admin',
      validate: (raw) => {
        available();
        const p = paramsObject(raw, ['vip', 'mode', 'interface', 'health']);
        parseVip('params.vip', p.vip);
        parseMode('params.mode', p.mode);
        parseIfname('params.interface', p.interface);
        parseHealth('params.health', p.health);
        return p as unknown as AddVipParams;
      },
      run: (p) => available().addVip(p),
    }),
    'lb.vip.remove': method<'lb.vip.remove', VipParams>({ access: 'admin', validate: vipParam, run: (p) => available().removeVip(p) }),
    'lb.backend.add': method<'lb.backend.add', AddBackendParams>({
      access: 'admin',
      validate: (raw) => {
        available();
        const p = paramsObject(raw, ['vip', 'backend', 'weight']);
        const vip = parseVip('params.vip', p.vip);
        parseBackend('params.backend', p.backend, vip);
        parseWeight('params.weight', p.weight);
        return p as unknown as AddBackendParams;
      },
      run: (p) => available().addBackend(p),
    }),
    'lb.backend.remove': method<'lb.backend.remove', BackendParams>({ access: 'admin', validate: backendParam, run: (p) => available().removeBackend(p) }),
    'lb.backend.drain': method<'lb.backend.drain', BackendParams>({ access: 'admin', validate: backendParam, run: (p) => available().drainBackend(p) }),
    'lb.drop.add': method<'lb.drop.add', DropRuleParams>({ access: 'admin', validate: ruleParam, run: (p) => available().addDropRule(p) }),
    'lb.drop.remove': method<'lb.drop.remove', DropRuleParams>({ access: 'admin', validate: ruleParam, run: (p) => available().removeDropRule(p) }),
    'lb.list': method<'lb.list', void>({ access: 'read', validate: noParams, run: () => available().list() }),
    'lb.stats': method<'lb.stats', void>({ access: 'read', validate: noParams, run: () => available().stats() }),
    'lb.drop.list': method<'lb.drop.list', void>({ access: 'read', validate: noParams, run: () => available().listDropRules() }),
    'lb.flows': method<'lb.flows', LbFlowsParams>({
      access: 'read',
      validate: (raw) => {
        available();
        const p = paramsObject(raw, ['vip', 'limit']);
        const vip = optString(p, 'vip', 64);
        if (vip !== undefined) parseVip('params.vip', vip);
        return { vip, limit: optInt(p, 'limit', 1, 100_000) };
      },
      run: (p) => available().flows(p),
    }),
  };
}

/** The load balancer's summary in `status`. */
export function lbStatus(lb: Pick<LbApi, 'list' | 'stats'>): LbStatusSummary {
  const l = lb.list();
  const st = lb.stats();
  return {
    interfaces: l.interfaces,
    vips: l.vips.length,
    backends: l.vips.reduce((n, v) => n + v.backends.length, 0),
    connTable: st.tables.conns,
    dropped: Object.values(st.drops).reduce((a, b) => a + b, 0),
    warnings: l.vips.flatMap((v) => v.warnings.map((w) => `${v.vip}: ${w}`)),
  };
}
