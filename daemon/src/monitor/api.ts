// SPDX-License-Identifier: Apache-2.0
// What the API layer needs from the monitor. The real Monitor implements it; tests
// implement it with canned flows (test/helpers/fake-monitor.ts), so the whole socket
// protocol and the CLI can be tested without a kernel.
import type { Loss, ProgramsListResult, StatusResult } from '../contract/status.js';
import type { Flow, FlowQuery, ProcessQuery, ProcessTraffic } from './flows.js';

export type { ProcessTraffic, RemoteTraffic } from './flows.js';

export type MonitorStatus = Pick<StatusResult, 'pinPath' | 'deployedAt' | 'adopted' | 'probes' | 'socketScan' | 'interfaces' | 'interfaceErrors' | 'maps' | 'flowIndex' | 'counters' | 'events' | 'handoff'> & {
  loss: Omit<Loss, 'subscriberDropped'>;
};

export interface MonitorApi {
  /** Flows as the contract has them, `remoteGeo` null (the API layer fills it). */
  queryFlows(q: FlowQuery): Promise<{ flows: Flow[]; total: number; matched: number }>;
  /** Per-process totals (`places` empty); `remotes`: also each process's live remote addresses. */
  processTotals(q: ProcessQuery): Promise<ProcessTraffic[]>;
  status(): Promise<MonitorStatus>;
  programsList(): ProgramsListResult;
  /** Applies a reloaded interface list (SIGHUP). */
  setInterfaces(patterns: string[]): void;
}
