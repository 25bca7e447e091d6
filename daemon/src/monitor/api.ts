// SPDX-License-Identifier: Apache-2.0
// What the API layer needs from the monitor. The real Monitor implements it; tests
// implement it with canned flows (test/helpers/fake-monitor.ts), so the whole socket
// protocol and the CLI can be tested without a kernel.
import type { ProcessTotals } from '../contract/flows.js';
import type { Loss, ProgramsListResult, StatusResult } from '../contract/status.js';
import type { Flow, FlowQuery, ProcessQuery } from './flows.js';

export type MonitorStatus = Pick<StatusResult, 'pinPath' | 'deployedAt' | 'adopted' | 'probes' | 'socketScan' | 'interfaces' | 'interfaceErrors' | 'maps' | 'counters' | 'events' | 'handoff'> & {
  loss: Omit<Loss, 'subscriberDropped'>;
};

export interface MonitorApi {
  queryFlows(q: FlowQuery): Promise<{ flows: Flow[]; total: number; matched: number }>;
  processTotals(q: ProcessQuery): Promise<ProcessTotals[]>;
  status(): Promise<MonitorStatus>;
  programsList(): ProgramsListResult;
  /** Applies a reloaded interface list (SIGHUP). */
  setInterfaces(patterns: string[]): void;
}
