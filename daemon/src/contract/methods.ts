// SPDX-License-Identifier: Apache-2.0
// Every JSON-RPC method on ebpfmon's Unix socket: its name, params and result, declared
// once (the way vscode-languageserver-node declares each request). The client's call()
// and the server's registration are typed by this map, so both ends agree by
// construction. Framing: one JSON message per line ("\n"-delimited), UTF-8.
// docs/api.md documents each method with examples; a feature adds its methods here first.
import type { EventBatchNotification, EventNotification, EventsSubscribeParams, EventsSubscribeResult, EventsUnsubscribeParams, EventsUnsubscribeResult, LostNotification } from './events.js';
import type { HistoryQueryParams, HistoryQueryResult } from './history.js';
import type { FlowsListParams, FlowsListResult, ProcessesListParams, ProcessesListResult } from './flows.js';
import type { IdentityGetParams, IdentityResult } from './identity.js';
import type { GeoLookupParams, GeoLookupResult } from './geo.js';
import type {
  AddBackendParams, AddVipParams, BackendInfo, BackendParams, DropRuleInfo, DropRuleList, DropRuleParams, LbFlows, LbFlowsParams, LbList,
  LbStats, RemoveVipResult, VipInfo, VipParams,
} from './lb.js';
import type { ProgramsListResult, StatusResult } from './status.js';
import type { DnsListParams, DnsListResult, HttpListParams, HttpListResult } from './l7.js';
import type {
  CaptureListResult, CaptureStartParams, CaptureStartResult, CaptureStopParams, CaptureStopResult, MirrorAddParams, MirrorListResult,
  MirrorNameParams, MirrorRemoveResult, MirrorStatsParams, MirrorStatsResult, MirrorView,
} from './capture.js';

/** A method that takes no parameters (an empty object or none). */
export type NoParams = Record<string, never> | undefined;

export interface Methods {
  status: { params: NoParams; result: StatusResult };
  'flows.list': { params: FlowsListParams; result: FlowsListResult };
  'processes.list': { params: ProcessesListParams; result: ProcessesListResult };
  'programs.list': { params: NoParams; result: ProgramsListResult };
  'identity.get': { params: IdentityGetParams; result: IdentityResult };
  'events.subscribe': { params: EventsSubscribeParams; result: EventsSubscribeResult };
  'events.unsubscribe': { params: EventsUnsubscribeParams; result: EventsUnsubscribeResult };
  'lb.vip.add': { params: AddVipParams; result: VipInfo };
  'lb.vip.remove': { params: VipParams; result: RemoveVipResult };
  'lb.backend.add': { params: AddBackendParams; result: BackendInfo };
  'lb.backend.remove': { params: BackendParams; result: BackendInfo };
  'lb.backend.drain': { params: BackendParams; result: BackendInfo };
  'lb.list': { params: NoParams; result: LbList };
  'lb.stats': { params: NoParams; result: LbStats };
  'lb.flows': { params: LbFlowsParams; result: LbFlows };
  'lb.drop.add': { params: DropRuleParams; result: DropRuleInfo };
  'lb.drop.remove': { params: DropRuleParams; result: DropRuleInfo };
  'lb.drop.list': { params: NoParams; result: DropRuleList };
  'history.query': { params: HistoryQueryParams; result: HistoryQueryResult };
  'dns.list': { params: DnsListParams; result: DnsListResult };
  'http.list': { params: HttpListParams; result: HttpListResult };
  /** The connection carries the pcapng stream after the reply (contract/capture.ts). */
  'capture.start': { params: CaptureStartParams; result: CaptureStartResult };
  'capture.stop': { params: CaptureStopParams; result: CaptureStopResult };
  'capture.list': { params: NoParams; result: CaptureListResult };
  'mirror.add': { params: MirrorAddParams; result: MirrorView };
  'mirror.remove': { params: MirrorNameParams; result: MirrorRemoveResult };
  'mirror.list': { params: NoParams; result: MirrorListResult };
  'mirror.stats': { params: MirrorStatsParams; result: MirrorStatsResult };
  'geo.lookup': { params: GeoLookupParams; result: GeoLookupResult };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]['params'];
export type ResultOf<M extends MethodName> = Methods[M]['result'];

/** The method names as constants, for code that names a method. */
export const METHODS = {
  status: 'status',
  flowsList: 'flows.list',
  processesList: 'processes.list',
  programsList: 'programs.list',
  identityGet: 'identity.get',
  eventsSubscribe: 'events.subscribe',
  eventsUnsubscribe: 'events.unsubscribe',
  lbVipAdd: 'lb.vip.add',
  lbVipRemove: 'lb.vip.remove',
  lbBackendAdd: 'lb.backend.add',
  lbBackendRemove: 'lb.backend.remove',
  lbBackendDrain: 'lb.backend.drain',
  lbList: 'lb.list',
  lbStats: 'lb.stats',
  lbFlows: 'lb.flows',
  lbDropAdd: 'lb.drop.add',
  lbDropRemove: 'lb.drop.remove',
  lbDropList: 'lb.drop.list',
  historyQuery: 'history.query',
  dnsList: 'dns.list',
  httpList: 'http.list',
  captureStart: 'capture.start',
  captureStop: 'capture.stop',
  captureList: 'capture.list',
  mirrorAdd: 'mirror.add',
  mirrorRemove: 'mirror.remove',
  mirrorList: 'mirror.list',
  mirrorStats: 'mirror.stats',
  geoLookup: 'geo.lookup',
} as const satisfies Record<string, MethodName>;

/** Compile-time check: every method of the map has a constant. */
type Unnamed = Exclude<MethodName, (typeof METHODS)[keyof typeof METHODS]>;
export const ALL_METHODS_NAMED: [Unnamed] extends [never] ? true : Unnamed = true;

/** Server -> client notifications. */
export interface Notifications {
  'events.event': EventNotification;
  'events.batch': EventBatchNotification;
  'events.lost': LostNotification;
}

export const NOTIFICATIONS = {
  event: 'events.event',
  batch: 'events.batch',
  lost: 'events.lost',
} as const satisfies Record<string, keyof Notifications>;
