// SPDX-License-Identifier: Apache-2.0
// status, flows.list, processes.list, programs.list: read-only views of the monitor, one
// declaration for JSON-RPC and D-Bus. Callers outside the `ebpfmon` group see only their
// own uid's flows. Flows and processes are filtered by owner identity (api/identity.ts)
// and processes grouped per unit, container or app (`by`).
import { PROTOCOLS } from '../contract/common.js';
import type { HistoryStatus } from '../contract/history.js';
import { FLOW_SORTS, type FlowsListParams, type FlowsListResult, type ProcessesListParams, type ProcessesListResult } from '../contract/flows.js';
import { PROCESS_GROUPINGS, type OwnerIdentity, type ProcessGrouping } from '../contract/identity.js';
import { groupProcesses } from '../identity/index.js';
import { IDENTITY_FILTER_PARAMS, identityPredicate, identityStatus, type IdentityApi } from './identity.js';
import type { ExportStatus } from '../contract/export.js';
import { DEFAULT_PLACES, MAX_PLACES } from '../contract/geo.js';
import { ResourceMeter } from '../util/resources.js';
import type { DbusStatus, LbStatusSummary, ResourceStatus, RpcStatus, StatusResult } from '../contract/status.js';
import type { L7Status } from '../contract/l7.js';
import type { CaptureStatus } from '../contract/capture.js';
import type { MonitorApi } from '../monitor/api.js';
import type { FlowQuery } from '../monitor/flows.js';
import { protocolNumber } from '../net/protocols.js';
import { scopeUid, type Caller } from './caller.js';
import { GEO_FLOW_PARAMS, geoFilter, geoStatus, matchesGeo, NO_GEO, withPlaces, withRemoteGeo, type GeoDeps, type GeoFilter, type PlacedRows } from './geo.js';
import { method } from './method.js';
import { optSince, ProcessCursors } from './processdelta.js';
import { optBool, optCidr, optEnum, optInt, optString, paramsObject, type Params } from './validate.js';

export const FLOW_PARAMS = ['pid', 'comm', 'uid', 'remoteAddr', 'localAddr', 'port', 'protocol', 'interface', 'includeClosed', 'sort', 'limit', ...IDENTITY_FILTER_PARAMS, ...GEO_FLOW_PARAMS] as const satisfies ReadonlyArray<keyof FlowsListParams>;
export const PROCESS_PARAMS = ['uid', 'limit', 'by', 'places', ...IDENTITY_FILTER_PARAMS] as const satisfies ReadonlyArray<keyof ProcessesListParams>;
/** processes.list on the socket: also `since` (incremental replies; D-Bus GetProcessTotals has no cursor). */
export const PROCESS_RPC_PARAMS = [...PROCESS_PARAMS, 'since'] as const satisfies ReadonlyArray<keyof ProcessesListParams>;
const MAX_UID = 0xffffffff - 1;
const MAX_PID = 0x7fffffff;
/** Largest `limit` on the socket; D-Bus replies are smaller (a bus message is bounded). */
export const MAX_FLOWS = 100_000;

/** flows.list parameters, validated and scoped: the monitor's query, and the filters on
 * where the remote address is (applied by the API after the lookups). */
export interface FlowsRequest {
  query: FlowQuery;
  geo?: GeoFilter;
}

/** flows.list parameters as a validated, scoped request. */
export function flowsQuery(raw: unknown, caller: Caller, maxLimit = MAX_FLOWS): FlowsRequest {
  const p: Params = paramsObject(raw, FLOW_PARAMS);
  const geo = geoFilter(p);
  return geo ? { query: monitorQuery(p, caller, maxLimit), geo } : { query: monitorQuery(p, caller, maxLimit) };
}

function monitorQuery(p: Params, caller: Caller, maxLimit: number): FlowQuery {
  const protocol = optEnum(p, 'protocol', PROTOCOLS);
  return {
    pid: optInt(p, 'pid', 0, MAX_PID),
    comm: optString(p, 'comm', 15),
    uid: scopeUid(caller, optInt(p, 'uid', 0, MAX_UID)),
    remoteAddr: optCidr(p, 'remoteAddr'),
    localAddr: optCidr(p, 'localAddr'),
    port: optInt(p, 'port', 0, 65535),
    protocol: protocol !== undefined ? protocolNumber(protocol) : undefined,
    interface: optString(p, 'interface', 15),
    identity: identityPredicate(p),
    includeClosed: optBool(p, 'includeClosed'),
    sort: optEnum(p, 'sort', FLOW_SORTS),
    limit: optInt(p, 'limit', 1, maxLimit) ?? 1000,
  };
}

/** A validated processes.list query. */
export interface ProcessesQuery {
  uid: number | undefined;
  limit: number;
  by: ProcessGrouping;
  identity: ((id: OwnerIdentity) => boolean) | undefined;
  /** Places per process (geo). */
  places: number;
  /** Incremental reply (api/processdelta.ts): null to start, or the previous reply's cursor; undefined: a plain reply. */
  since?: string | null;
  /** Every param that chose the rows, as text (a cursor answers only the same again). */
  shape?: string;
}

/** processes.list parameters (D-Bus GetProcessTotals too) as a validated, scoped query. */
export function processesQuery(raw: unknown, caller: Caller, maxLimit = MAX_FLOWS, allowed: readonly string[] = PROCESS_PARAMS): ProcessesQuery {
  const p = paramsObject(raw, allowed);
  const q: ProcessesQuery = {
    uid: scopeUid(caller, optInt(p, 'uid', 0, MAX_UID)),
    limit: optInt(p, 'limit', 1, maxLimit) ?? 1000,
    by: optEnum(p, 'by', PROCESS_GROUPINGS) ?? 'process',
    identity: identityPredicate(p),
    places: optInt(p, 'places', 0, MAX_PLACES) ?? DEFAULT_PLACES,
  };
  const since = optSince(p);
  if (since === undefined) return q;
  // The identity filters as given (they were validated above); the rest as validated.
  const shape = JSON.stringify([q.uid ?? null, q.limit, q.by, q.places, ...IDENTITY_FILTER_PARAMS.map((k) => p[k] ?? null)]);
  return { ...q, since, shape };
}

/** What status reports about the transports (clients, subscriptions, refusals, losses). */
export interface TransportStats {
  rpc: RpcStatus;
  dbus: DbusStatus | null;
}

export interface MonitorMethodDeps {
  monitor: MonitorApi;
  version: string;
  startedAt: Date;
  /** The daemon's own memory and CPU (default: a meter sampled only when asked). */
  resources?: () => ResourceStatus;
  transports: () => TransportStats;
  lbStatus?: () => LbStatusSummary;
  historyStatus?: () => HistoryStatus;
  /** The application layer's section, when it runs. */
  l7Status?: (() => L7Status) | undefined;
  captureStatus?: () => CaptureStatus;
  identity: IdentityApi | null;
  geo?: GeoDeps;
  /** The exports' status, once they run (null: none configured). */
  exportStatus?: () => ExportStatus | null;
}

function exportSection(x: ExportStatus | null): { export?: ExportStatus } {
  return x && (x.metrics || x.clickhouse) ? { export: x } : {};
}

/** flows.list: the monitor's flows with `remoteGeo`; a geo filter applies before `limit`. */
export async function listFlows(monitor: MonitorApi, geo: GeoDeps, r: FlowsRequest): Promise<FlowsListResult> {
  const g = r.geo;
  if (!g) {
    const res = await monitor.queryFlows(r.query);
    withRemoteGeo(geo.resolver, res.flows);
    return res;
  }
  const { limit, ...unlimited } = r.query;
  const res = await monitor.queryFlows(unlimited);
  const kept = withRemoteGeo(geo.resolver, res.flows).filter((f) => matchesGeo(f.remoteGeo, g));
  return { flows: limit !== undefined ? kept.slice(0, limit) : kept, total: res.total, matched: kept.length };
}

export function monitorMethods(d: MonitorMethodDeps) {
  const geo = d.geo ?? NO_GEO;
  const cursors = new ProcessCursors();
  let meter: ResourceMeter | undefined;
  const resources = d.resources ?? (() => (meter ??= new ResourceMeter()).status());
  /** Placed rows per monitor row: the monitor hands out an unchanged row again (monitor/rowcache.ts). */
  const placed: PlacedRows = new WeakMap();
  return {
    status: method<'status', void>({
      access: 'read',
      validate: (raw) => void paramsObject(raw, []),
      run: async (): Promise<StatusResult> => {
        const s = await d.monitor.status();
        const t = d.transports();
        return {
          version: d.version,
          pid: process.pid,
          startedAt: d.startedAt.toISOString(),
          uptimeMs: Date.now() - d.startedAt.getTime(),
          resources: resources(),
          ...s,
          loss: { ...s.loss, subscriberDropped: t.rpc.subscriberDropped },
          transports: t,
          identity: identityStatus(d.identity),
          ...(d.lbStatus ? { lb: d.lbStatus() } : {}),
          ...(d.historyStatus ? { history: d.historyStatus() } : {}),
          ...(d.l7Status ? { l7: d.l7Status() } : {}),
          ...(d.captureStatus ? { capture: d.captureStatus() } : {}),
          ...exportSection(d.exportStatus?.() ?? null),
          geo: geoStatus(geo),
        };
      },
    }),
    'flows.list': method<'flows.list', FlowsRequest>({
      access: 'read',
      validate: (raw, caller) => flowsQuery(raw, caller),
      run: (r) => listFlows(d.monitor, geo, r),
    }),
    'processes.list': method<'processes.list', ProcessesQuery>({
      access: 'read',
      validate: (raw, caller) => processesQuery(raw, caller, MAX_FLOWS, PROCESS_RPC_PARAMS),
      run: async (q, caller): Promise<ProcessesListResult> => {
        // Remote addresses are gathered only when places are wanted and geo runs (the walk
        // then formats every flow's address; bench/geo measures it).
        const remotes = q.places > 0 && geo.resolver !== null;
        const all = withPlaces(geo.resolver, await d.monitor.processTotals({ uid: q.uid, identity: q.identity, remotes }), q.places, placed);
        const processes = all.slice(0, q.limit);
        // Groups total every matching process, whatever `limit` keeps of the list.
        const extra = q.by === 'process' ? {} : { groups: groupProcesses(all, q.by) };
        if (q.since === undefined) return { processes, ...extra };
        // Groups are not kept per cursor: with `by`, every reply is full.
        return cursors.reply(q.since, q.shape!, caller, processes, extra, q.by === 'process');
      },
    }),
    'programs.list': method<'programs.list', void>({
      access: 'read',
      validate: (raw) => void paramsObject(raw, []),
      run: () => d.monitor.programsList(),
    }),
  };
}
