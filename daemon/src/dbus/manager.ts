// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Manager at /org/ebpfmon1: the monitor's read side, with the JSON-RPC
// rules: the same parameter validation (rpc/validate.ts) and the same uid scoping as
// flows.list and processes.list (rpc/methods/monitor.ts).
import type { MonitorApi, MonitorStatus } from '../monitor/api.js';
import type { FlowQuery, ProcessTotals } from '../monitor/flows.js';
import { AppError, invalidParam } from '../rpc/errors.js';
import { flowsListQuery, scopeUid as scopeRpcUid } from '../rpc/methods/monitor.js';
import { optInt } from '../rpc/validate.js';
import { BpfError } from '../bpf/errors.js';
import { asField, dictOf, flowDict, processDict, readDict, TALKER_TYPES, type Dict, type FieldKind } from './convert.js';
import { MANAGER_PATH, type ManagerMethod, type ManagerProperty, type ManagerSignal } from './names.js';
import type { CallContext, ObjectImpl } from './object.js';
import { rankTalkers, type RateTracker, type Talker } from './rates.js';
import { MANAGER_SPEC } from './schema.js';

/** A D-Bus message is bounded (32 MiB on the system bus): replies stay far below that. */
export const LIMITS = { flows: 10_000, defaultFlows: 1000, processes: 10_000, topTalkers: 1000, signalTop: 10 } as const;

/** GetFlows filter keys: the params of JSON-RPC flows.list, with their variant types. */
export const FLOW_FILTER: Record<string, FieldKind> = {
  pid: 'int', comm: 'string', uid: 'int', remoteAddr: 'string', localAddr: 'string', port: 'int',
  proto: 'string', interface: 'string', includeClosed: 'bool', sort: 'string', limit: 'int',
};

const viewer = (ctx: CallContext) => ({ uid: ctx.creds.uid, seesAll: ctx.scope.seesAll });

/** GetFlows's filter as a FlowQuery: flows.list's own validation and scoping. */
export function flowQuery(raw: unknown, ctx: CallContext): FlowQuery {
  const p = readDict(raw, 'filter', FLOW_FILTER);
  return asField('filter', () => flowsListQuery(p, viewer(ctx), LIMITS.flows));
}

/** The uid a caller may see (rpc/methods/monitor.ts). */
export function scopeUid(ctx: CallContext, requested: number | undefined, field = 'params.uid'): number | undefined {
  return scopeRpcUid(viewer(ctx), requested, field);
}

export interface ManagerDeps {
  monitor: MonitorApi;
  version: string;
  startedAt: Date;
  tracker: RateTracker;
  /** processTotals({}) of every uid, cached briefly (reads are filtered per caller). */
  totals(): Promise<ProcessTotals[]>;
  /** monitor.status(), cached briefly. */
  status(): Promise<MonitorStatus>;
  subscribe(ctx: CallContext): void;
  unsubscribe(ctx: CallContext): void;
  signalsDropped(): number;
}

const visible = (all: ProcessTotals[], uid: number | undefined) => (uid === undefined ? all : all.filter((p) => p.uid === uid));
const sum = (list: ProcessTotals[], f: (p: ProcessTotals) => number) => list.reduce((n, p) => n + f(p), 0);

export function talkerDict(t: Talker): Dict {
  return dictOf(t, TALKER_TYPES);
}

export function managerObject(d: ManagerDeps): ObjectImpl<ManagerMethod, ManagerProperty, ManagerSignal> {
  return {
    path: MANAGER_PATH,
    spec: MANAGER_SPEC,
    methods: {
      GetFlows: async (ctx, [filter]) => (await d.monitor.queryFlows(flowQuery(filter, ctx))).flows.map(flowDict),
      GetProcesses: async (ctx) =>
        visible(await d.totals(), ctx.uid)
          .slice()
          .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes))
          .slice(0, LIMITS.processes)
          .map(processDict),
      GetTopTalkers: async (ctx, [limit]) => {
        if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > LIMITS.topTalkers) {
          throw invalidParam('limit', limit, `an integer from 1 to ${LIMITS.topTalkers}`);
        }
        let talkers;
        try {
          talkers = await d.tracker.talkers();
        } catch (err) {
          if (err instanceof AppError || err instanceof BpfError) throw err;
          throw new AppError('Busy', `no traffic sample yet (${(err as Error).message}); try again`);
        }
        return rankTalkers(talkers, ctx.uid, limit).map(talkerDict);
      },
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
      EventsLost: async () => (await d.status()).loss.kernelRingbufFull,
      FlowsEvicted: async () => (await d.status()).loss.flowsEvicted,
      SignalsDropped: () => d.signalsDropped(),
    },
  };
}
