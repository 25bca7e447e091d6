// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Manager at /org/ebpfmon1: the monitor's read side, over the API: GetFlows
// is flows.list, GetProcessTotals processes.list and GetIdentity identity.get (the same
// validation, naming `filter.X`/`params.X`, and the same uid scoping); the other
// per-process members share one cached walk of the flow table, filtered per caller.
import type { FlowsListParams, ProcessesListParams, ProcessTotals } from '../contract/flows.js';
import type { DnsListParams, HttpListParams } from '../contract/l7.js';
import type { IdentityGetParams } from '../contract/identity.js';
import { MANAGER_PATH, MANAGER_SPEC, type ManagerMethod, type ManagerProperty, type ManagerSignal } from '../contract/dbus.js';
import { flowsQuery, processesQuery, toApiError, withFieldPrefix, type Caller, type FlowsRequest, type MethodTable, type MethodsByName, type ProcessesQuery } from '../api/index.js';
import type { StatusResult } from '../contract/status.js';
import { AppError, invalidParam } from '../errors.js';
import { dictOf, flowDict, groupDict, identityDict, jsonDict, processDict, readDict, TALKER_TYPES, type Dict, type FieldKind } from './convert.js';
import { getHistory } from './history.js';
import type { CallContext, ObjectImpl } from './object.js';
import { rankTalkers, type RateTracker, type Talker } from './rates.js';

/** A D-Bus message is bounded (32 MiB on the system bus): replies stay far below that. */
export const LIMITS = { flows: 10_000, defaultFlows: 1000, processes: 10_000, topTalkers: 1000, signalTop: 10, l7: 10_000 } as const;

/** GetFlows filter keys: the params of JSON-RPC flows.list, with their variant types. */
export const FLOW_FILTER: { readonly [K in keyof FlowsListParams]-?: FieldKind } = {
  pid: 'int', comm: 'string', uid: 'int', remoteAddr: 'string', localAddr: 'string', port: 'int',
  protocol: 'string', interface: 'string', includeClosed: 'bool', sort: 'string', limit: 'int',
  unit: 'string', container: 'string', app: 'string', cgroup: 'string',
  country: 'string', asn: 'int', label: 'string',
};

/** GetDnsQueries / GetHttpRequests filter keys: the params of dns.list / http.list. */
export const DNS_FILTER: { readonly [K in keyof DnsListParams]-?: FieldKind } = { pid: 'int', uid: 'int', name: 'string', limit: 'int' };
export const HTTP_FILTER: { readonly [K in keyof HttpListParams]-?: FieldKind } = {
  pid: 'int', uid: 'int', host: 'string', status: 'string', method: 'string', tls: 'bool', limit: 'int',
};

/** Runs an API method with a D-Bus filter dictionary: its own validation (naming `filter.X`) and scoping. */
async function viaApi<M extends 'dns.list' | 'http.list'>(methods: MethodTable, name: M, kinds: Record<string, FieldKind>, raw: unknown, caller: Caller) {
  const m = (methods as MethodsByName)[name];
  const params = withFieldPrefix('filter', () => {
    const p = readDict(raw, 'filter', kinds) as { limit?: number };
    if (p.limit !== undefined && p.limit > LIMITS.l7) throw invalidParam('filter.limit', p.limit, `an integer from 1 to ${LIMITS.l7}`);
    return m.validate(p, caller);
  });
  return m.run(params, caller);
}

/** GetProcessTotals params: those of JSON-RPC processes.list but `since` (its reply has no
 * place for a cursor; incremental replies are the socket's, for `top`). */
export const PROCESS_FILTER: { readonly [K in Exclude<keyof ProcessesListParams, 'since'>]-?: FieldKind } = {
  uid: 'int', limit: 'int', by: 'string', places: 'int', unit: 'string', container: 'string', app: 'string', cgroup: 'string',
};

/** GetIdentity params: those of JSON-RPC identity.get (cgroupId as t). */
export const IDENTITY_PARAMS: { readonly [K in keyof IdentityGetParams]-?: FieldKind } = { pid: 'int', cgroupId: 'id' };

/** GetProcessTotals's params as a processes query: processes.list's validation, naming `params.X`. */
export function processTotalsQuery(raw: unknown, caller: Caller): ProcessesQuery {
  return withFieldPrefix('params', () => processesQuery(readDict(raw, 'params', PROCESS_FILTER), caller, LIMITS.processes));
}

/** GetFlows's filter as a flow query: flows.list's own validation and scoping, naming `filter.X`. */
export function flowQuery(raw: unknown, caller: Caller): FlowsRequest {
  return withFieldPrefix('filter', () => flowsQuery(readDict(raw, 'filter', FLOW_FILTER), caller, LIMITS.flows));
}

export interface ManagerDeps {
  methods: MethodTable;
  version: string;
  startedAt: Date;
  tracker: RateTracker;
  /** processTotals({}) of every uid, cached briefly (reads are filtered per caller). */
  totals(): Promise<ProcessTotals[]>;
  /** The daemon's status, cached briefly. */
  status(): Promise<StatusResult>;
  subscribe(ctx: CallContext): void;
  unsubscribe(ctx: CallContext): void;
  signalsDropped(): number;
}

const visible = (all: ProcessTotals[], uid: number | undefined) => (uid === undefined ? all : all.filter((p) => p.uid === uid));
const sum = (list: ProcessTotals[], f: (p: ProcessTotals) => number) => list.reduce((n, p) => n + f(p), 0);

export function talkerDict(t: Talker): Dict {
  return { ...processDict(t), ...dictOf(t, TALKER_TYPES) };
}

/** Sums of the rates a caller may see (`uid` undefined: all). */
export function visibleRates(talkers: readonly Talker[], uid: number | undefined): { tx: number; rx: number } {
  let tx = 0;
  let rx = 0;
  for (const t of talkers) {
    if (uid !== undefined && t.uid !== uid) continue;
    tx += t.txBytesPerSec;
    rx += t.rxBytesPerSec;
  }
  return { tx, rx };
}

export function managerObject(d: ManagerDeps): ObjectImpl<ManagerMethod, ManagerProperty, ManagerSignal> {
  const talkers = async (): Promise<Talker[]> => {
    try {
      return await d.tracker.talkers();
    } catch (err) {
      // A known failure (kernel, limits) as it is; anything else means no sample yet.
      if (!toApiError(err).internal) throw err;
      throw new AppError('Busy', `no traffic sample yet (${(err as Error).message}); try again`);
    }
  };
  return {
    path: MANAGER_PATH,
    spec: MANAGER_SPEC,
    methods: {
      GetFlows: async (ctx, [filter]) => {
        return (await d.methods['flows.list'].run(flowQuery(filter, ctx.caller), ctx.caller)).flows.map(flowDict);
      },
      GetProcesses: async (ctx) =>
        visible(await d.totals(), ctx.uid)
          .slice()
          .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes))
          .slice(0, LIMITS.processes)
          .map(processDict),
      GetProcessTotals: async (ctx, [params]) => {
        const r = await d.methods['processes.list'].run(processTotalsQuery(params, ctx.caller), ctx.caller);
        return [r.processes.map(processDict), (r.groups ?? []).map(groupDict)];
      },
      GetIdentity: async (ctx, [params]) => {
        const m = d.methods['identity.get'];
        const p = withFieldPrefix('params', () => m.validate(readDict(params, 'params', IDENTITY_PARAMS), ctx.caller));
        return identityDict(await m.run(p, ctx.caller));
      },
      GetTopTalkers: async (ctx, [limit]) => {
        if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > LIMITS.topTalkers) {
          throw invalidParam('limit', limit, `an integer from 1 to ${LIMITS.topTalkers}`);
        }
        return rankTalkers(await talkers(), ctx.uid, limit).map(talkerDict);
      },
      GetHistory: (ctx, [filter]) => getHistory(d.methods, filter, ctx.caller),
      GetDnsQueries: async (ctx, [filter]) =>
        (await viaApi(d.methods, 'dns.list', DNS_FILTER, filter, ctx.caller)).queries.map((q) => jsonDict({ ...q })),
      GetHttpRequests: async (ctx, [filter]) =>
        (await viaApi(d.methods, 'http.list', HTTP_FILTER, filter, ctx.caller)).requests.map((r) => jsonDict({ ...r })),
      Subscribe: (ctx) => d.subscribe(ctx),
      Unsubscribe: (ctx) => d.unsubscribe(ctx),
    },
    properties: {
      Version: () => d.version,
      StartedAt: () => d.startedAt.toISOString(),
      Interfaces: async () => (await d.status()).interfaces.map((i) => i.name),
      SeesAllUsers: (ctx) => ctx.scope.seesAll,
      FlowCount: async (ctx) => sum(visible(await d.totals(), ctx.uid), (p) => p.openFlows),
      ProcessCount: async (ctx) => visible(await d.totals(), ctx.uid).filter((p) => p.pid !== null).length,
      TxBytes: async (ctx) => sum(visible(await d.totals(), ctx.uid), (p) => p.txBytes),
      RxBytes: async (ctx) => sum(visible(await d.totals(), ctx.uid), (p) => p.rxBytes),
      RingbufFull: async () => (await d.status()).loss.ringbufFull,
      FlowsEvicted: async () => (await d.status()).loss.flowsEvicted,
      SignalsDropped: () => d.signalsDropped(),
      TxBytesPerSec: async (ctx) => visibleRates(await talkers(), ctx.uid).tx,
      RxBytesPerSec: async (ctx) => visibleRates(await talkers(), ctx.uid).rx,
    },
  };
}
