// SPDX-License-Identifier: Apache-2.0
// The transport-neutral API: every method of the contract (contract/methods.ts) declared
// once, with its access rule, its validation and its implementation over the domain
// (monitor, load balancer). The JSON-RPC server and the D-Bus service are adapters over it;
// neither knows the domain, and the domain knows neither.
import type { ExportStatus } from '../contract/export.js';
import type { LbStatusSummary, ResourceStatus } from '../contract/status.js';
import type { MonitorApi } from '../monitor/api.js';
import { historyMethods, historyStatus, type HistoryApi } from './history.js';
import { identityMethods, type IdentityApi } from './identity.js';
import { geoMethods, NO_GEO, type GeoDeps } from './geo.js';
import { lbMethods, lbStatus, type LbApi } from './lb.js';
import { l7Methods, type L7Api } from './l7.js';
import { captureMethods, captureStatus, type CaptureApiDeps } from './capture.js';
import type { MethodsByName } from './method.js';
import { monitorMethods, type TransportStats } from './monitor.js';

export interface ApiDeps {
  monitor: MonitorApi;
  /** The load balancer, when configured (its methods answer NotAvailable otherwise). */
  lb: LbApi | null;
  /** The history store, when enabled (history.query answers NotAvailable otherwise). */
  history?: HistoryApi | null;
  /** The application layer, when any l7.* switch is on (dns.list/http.list answer NotAvailable otherwise). */
  l7?: L7Api | null;
  /** The identity service (identity.get, status.identity); null: those answer NotAvailable / empty. */
  identity?: IdentityApi | null;
  version: string;
  startedAt: Date;
  /** The daemon's own memory and CPU, for `status` (util/resources.ts). */
  resources?: () => ResourceStatus;
  /** Clients, subscriptions and dropped events of every transport, for `status`. */
  transports: () => TransportStats;
  /** Capture and mirror sessions (absent: capture.enabled is false). */
  capture?: CaptureApiDeps;
  /** The exports' status for `status.export` (null or absent: none runs). */
  exportStatus?: () => ExportStatus | null;
  /** Where remote addresses are (default: off). */
  geo?: GeoDeps;
}

/**
 * Every API method with its own validated params type (what its validator returns), so a
 * caller that skips validate() and calls run() directly (app.ts, the D-Bus adapters) is
 * checked against the shape run() really takes.
 */
export type MethodTable = ReturnType<typeof buildMethods>;

export interface Api {
  readonly methods: MethodTable;
}

export function buildApi(d: ApiDeps): Api {
  return { methods: buildMethods(d) };
}

function buildMethods(d: ApiDeps) {
  const lbSummary: (() => LbStatusSummary) | undefined = d.lb ? () => lbStatus(d.lb!) : undefined;
  return {
      ...monitorMethods({
        monitor: d.monitor,
        version: d.version,
        startedAt: d.startedAt,
        ...(d.resources ? { resources: d.resources } : {}),
        transports: d.transports,
        lbStatus: lbSummary,
        identity: d.identity ?? null,
        ...(d.history ? { historyStatus: () => historyStatus(d.history!) } : {}),
        l7Status: d.l7 ? () => d.l7!.status() : undefined,
        captureStatus: d.capture ? () => captureStatus(d.capture!) : undefined,
        exportStatus: d.exportStatus,
        geo: d.geo,
      }),
      ...lbMethods(d.lb),
      ...historyMethods(d.history ?? null),
      ...l7Methods(d.l7 ?? null),
      ...captureMethods(d.capture ?? { capture: null, reason: 'capture is switched off (configuration capture.enabled)' }),
      ...identityMethods(d.identity ?? null),
      ...geoMethods(d.geo ?? NO_GEO),
  } satisfies MethodsByName; // every method, each a MethodDef of its own name
}

export type { Caller } from './caller.js';
export type { FlowQuery } from '../monitor/flows.js';
export { flowsQuery, processesQuery, type FlowsRequest, type ProcessesQuery } from './monitor.js';
export type { IdentityApi } from './identity.js';
export { NO_GEO, remoteGeoOf, type GeoDeps } from './geo.js';
export { SYSTEM_CALLER } from './caller.js';
export type { Access, ApiMethodName, MethodDef, MethodsByName } from './method.js';
export type { LbApi } from './lb.js';
export type { HistoryApi } from './history.js';
export type { L7Api } from './l7.js';
export type { CaptureApi, CaptureApiDeps } from './capture.js';
export type { CaptureHandle, CaptureSink } from '../capture/manager.js';
export { captureStart, parseMirrorSpec } from './capture.js';
export type { TransportStats } from './monitor.js';
export { toApiError, withFieldPrefix } from './errors.js';
export { eventDelivery, eventFilter, subscriptionId, type EventDelivery, type EventFilter } from './events.js';
export { scopeUid } from './caller.js';
