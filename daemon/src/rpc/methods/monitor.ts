// SPDX-License-Identifier: Apache-2.0
// status, flows.list, processes.list, programs.list: read-only views of the monitor.
// Callers outside the `ebpfmon` group see only their own uid's flows.
import type { JSONRPCServer } from 'json-rpc-2.0';
import type { MonitorApi } from '../../monitor/api.js';
import { PROTO_NUMBERS } from '../../monitor/flows.js';
import { AppError } from '../errors.js';
import { FLOW_SORT_KEYS, METHODS, PROTOCOLS, type FlowsListParams, type FlowsListResult, type ProcessesListResult, type ProgramsListResult, type StatusResult } from '../protocol.js';
import type { RpcContext, RpcServer } from '../server.js';
import { optBool, optCidr, optEnum, optInt, optString, paramsObject, type Params } from '../validate.js';
import type { FlowQuery } from '../../monitor/flows.js';

export const FLOW_PARAMS: Array<keyof FlowsListParams> = ['pid', 'comm', 'uid', 'remoteAddr', 'localAddr', 'port', 'proto', 'interface', 'includeClosed', 'sort', 'limit'];
const MAX_UID = 0xffffffff - 1;

/** Who is looking, for scoping (a JSON-RPC peer or a D-Bus caller). */
export interface Viewer {
  uid: number;
  seesAll: boolean;
}

/** The uid a caller may see: its own, unless it sees everything. */
export function scopeUid(viewer: Viewer, requested: number | undefined, field = 'params.uid'): number | undefined {
  if (viewer.seesAll) return requested;
  if (requested !== undefined && requested !== viewer.uid) {
    throw new AppError('PermissionDenied', `uid ${viewer.uid} may only see its own flows (join the ebpfmon group to see all)`, { field, value: requested });
  }
  return viewer.uid;
}

/** flows.list parameters (already an object) as a validated, scoped query. D-Bus GetFlows uses it too. */
export function flowsListQuery(p: Params, viewer: Viewer, maxLimit = 100_000): FlowQuery {
  const proto = optEnum(p, 'proto', PROTOCOLS);
  return {
    pid: optInt(p, 'pid', 0, 0x7fffffff),
    comm: optString(p, 'comm', 15),
    uid: scopeUid(viewer, optInt(p, 'uid', 0, MAX_UID)),
    remoteAddr: optCidr(p, 'remoteAddr'),
    localAddr: optCidr(p, 'localAddr'),
    port: optInt(p, 'port', 0, 65535),
    proto: proto !== undefined ? PROTO_NUMBERS[proto] : undefined,
    interface: optString(p, 'interface', 15),
    includeClosed: optBool(p, 'includeClosed'),
    sort: optEnum(p, 'sort', FLOW_SORT_KEYS),
    limit: optInt(p, 'limit', 1, maxLimit) ?? 1000,
  };
}

export function registerMonitorMethods(rpc: JSONRPCServer<RpcContext>, monitor: MonitorApi, server: RpcServer, meta: { version: string; startedAt: Date; lbStatus?: () => unknown }): void {
  rpc.addMethod(METHODS.status, async (raw): Promise<StatusResult> => {
    paramsObject(raw, []);
    const s = await monitor.status();
    return {
      version: meta.version,
      pid: process.pid,
      startedAt: meta.startedAt.toISOString(),
      uptimeSec: Math.round((Date.now() - meta.startedAt.getTime()) / 1000),
      ...s,
      loss: { ...s.loss, subscriberDropped: server.droppedTotal },
      clients: server.connections.size,
      subscriptions: server.subscriptionCount,
      ...(meta.lbStatus ? { lb: meta.lbStatus() } : {}),
    };
  });

  rpc.addMethod(METHODS.flowsList, (raw, ctx): Promise<FlowsListResult> => monitor.queryFlows(flowsListQuery(paramsObject(raw, FLOW_PARAMS), ctx.caller)));

  rpc.addMethod(METHODS.processesList, async (raw, ctx): Promise<ProcessesListResult> => {
    const p = paramsObject(raw, ['uid', 'limit']);
    const uid = scopeUid(ctx.caller, optInt(p, 'uid', 0, MAX_UID));
    const limit = optInt(p, 'limit', 1, 100_000) ?? 1000;
    return { processes: (await monitor.processTotals({ uid })).slice(0, limit) };
  });

  rpc.addMethod(METHODS.programsList, (raw): ProgramsListResult => {
    paramsObject(raw, []);
    return monitor.programsList();
  });
}
