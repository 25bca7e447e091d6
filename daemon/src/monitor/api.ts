// SPDX-License-Identifier: Apache-2.0
// What the RPC and D-Bus layers need from the monitor. The real Monitor implements it;
// tests implement it with canned flows (test/helpers/fake-monitor.ts), so the whole
// socket protocol and the CLI can be tested without a kernel.
import type { EventBus } from './events.js';
import type { Flow, FlowQuery, ProcessTotals } from './flows.js';
import type { ProgramsListResult, StatusResult } from '../rpc/protocol.js';

export type MonitorStatus = Pick<StatusResult, 'pinPath' | 'deployedAt' | 'adopted' | 'probes' | 'socketScan' | 'interfaces' | 'interfaceErrors' | 'maps' | 'counters' | 'events'> & {
  loss: Omit<StatusResult['loss'], 'subscriberDropped'>;
};

export interface MonitorApi {
  readonly bus: EventBus;
  queryFlows(q: FlowQuery): Promise<{ flows: Flow[]; total: number; matched: number }>;
  processTotals(q: { uid?: number }): Promise<ProcessTotals[]>;
  status(): Promise<MonitorStatus>;
  programsList(): ProgramsListResult;
  /** Applies a reloaded interface list (SIGHUP). */
  setInterfaces(patterns: string[]): void;
}
