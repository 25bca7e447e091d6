// SPDX-License-Identifier: Apache-2.0
// lb.*: the XDP load balancer. Reads are open to every caller (VIPs and backends are not
// per-user data); changes need root or the ebpfmon-admin group. The manager validates
// each parameter (naming the field) and applies a change completely or not at all.
import type { JSONRPCServer } from 'json-rpc-2.0';
import type { LbManager } from '../../lb/manager.js';
import { AppError } from '../errors.js';
import { METHODS } from '../protocol.js';
import type { RpcContext } from '../server.js';
import { paramsObject } from '../validate.js';

/** What the RPC layer uses of the manager (a fake can stand in for tests). */
export type LbRpcApi = Pick<LbManager, 'addVip' | 'removeVip' | 'addBackend' | 'removeBackend' | 'drainBackend' | 'list' | 'stats' | 'flows' | 'dropAdd' | 'dropRemove' | 'dropList'>;

function requireAdmin(ctx: RpcContext): void {
  if (!ctx.caller.admin) {
    throw new AppError('PermissionDenied', `uid ${ctx.caller.uid} may not change the load balancer (root or the ebpfmon-admin group may)`);
  }
}

export function registerLbMethods(rpc: JSONRPCServer<RpcContext>, lb: LbRpcApi | null): void {
  const available = (): LbRpcApi => {
    if (!lb) throw new AppError('NotAvailable', 'the load balancer is not configured (set lb.interfaces in the configuration)');
    return lb;
  };
  const change = <P>(name: string, keys: readonly string[], fn: (m: LbRpcApi, p: P) => Promise<unknown>) =>
    rpc.addMethod(name, async (raw, ctx) => {
      requireAdmin(ctx);
      return fn(available(), paramsObject(raw, keys) as P);
    });
  const read = <P>(name: string, keys: readonly string[], fn: (m: LbRpcApi, p: P) => unknown) =>
    rpc.addMethod(name, (raw) => fn(available(), paramsObject(raw, keys) as P));

  change(METHODS.lbVipAdd, ['vip', 'mode', 'interface', 'health'], (m, p: Parameters<LbRpcApi['addVip']>[0]) => m.addVip(p));
  change(METHODS.lbVipRemove, ['vip'], (m, p: Parameters<LbRpcApi['removeVip']>[0]) => m.removeVip(p));
  change(METHODS.lbBackendAdd, ['vip', 'backend', 'weight'], (m, p: Parameters<LbRpcApi['addBackend']>[0]) => m.addBackend(p));
  change(METHODS.lbBackendRemove, ['vip', 'backend'], (m, p: Parameters<LbRpcApi['removeBackend']>[0]) => m.removeBackend(p));
  change(METHODS.lbBackendDrain, ['vip', 'backend'], (m, p: Parameters<LbRpcApi['drainBackend']>[0]) => m.drainBackend(p));
  change(METHODS.lbDropAdd, ['rule'], (m, p: Parameters<LbRpcApi['dropAdd']>[0]) => m.dropAdd(p));
  change(METHODS.lbDropRemove, ['rule'], (m, p: Parameters<LbRpcApi['dropRemove']>[0]) => m.dropRemove(p));
  read(METHODS.lbList, [], (m) => m.list());
  read(METHODS.lbStats, [], (m) => m.stats());
  read(METHODS.lbFlows, ['vip', 'limit'], (m, p: Parameters<LbRpcApi['flows']>[0]) => m.flows(p));
  read(METHODS.lbDropList, [], (m) => m.dropList());
}

/** The load balancer's line in `status`. */
export function lbStatus(lb: LbRpcApi) {
  const l = lb.list();
  const st = lb.stats();
  return {
    interfaces: l.interfaces,
    vips: l.vips.length,
    backends: l.vips.reduce((n, v) => n + v.backends.length, 0),
    connTable: st.tables.conns,
    dropped: Object.values(st.drops).reduce((a, b) => a + b, 0),
    /** What the host's settings break, per VIP (forwarding off, strict rp_filter). */
    warnings: l.vips.flatMap((v) => v.warnings.map((w) => `${v.vip}: ${w}`)),
  };
}
