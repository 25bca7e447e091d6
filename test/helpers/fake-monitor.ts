// SPDX-License-Identifier: Apache-2.0
// A MonitorApi without a kernel: canned flows, and an event bus the test publishes into
// (pass it to buildDaemon as the daemon's bus).
// Lets the socket protocol, its limits and the CLI be tested in-process and unprivileged.
import { EventBus } from '../../daemon/src/events/bus.js';
import type { MonitorEvent } from '../../daemon/src/contract/events.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import type { OwnerIdentity } from '../../daemon/src/contract/identity.js';
import type { FlowQuery, ProcessQuery } from '../../daemon/src/monitor/flows.js';
import type { MonitorApi, MonitorStatus, ProcessTraffic } from '../../daemon/src/monitor/api.js';
import { DAEMON_COUNTERS, MONITOR_COUNTERS, type CounterName, type ProgramsListResult } from '../../daemon/src/contract/status.js';

/** The identity fields of an owner nobody knows (flows, process totals and events carry them). */
export const noIdentity: OwnerIdentity & { cgroupId: null } = { cgroupId: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null };

export function flow(over: Partial<Flow>): Flow {
  return {
    protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 40000, remoteAddr: '198.18.0.2', remotePort: 80,
    direction: 'outbound', interface: 'veth0', pid: 100, tid: 100, comm: 'curl', uid: 1000, gid: 1000, cgroupId: '1',
    attributedBy: 'connect', ppid: 1, exe: '/usr/bin/curl', state: 'established', tcpFlags: { tx: ['SYN', 'ACK'], rx: ['SYN', 'ACK'] },
    txBytes: 100, rxBytes: 200, txPackets: 1, rxPackets: 2, fragments: 0, ipOptions: false, ipv6ExtHeaders: false,
    firstSeenAt: '2026-11-22T00:00:00.000Z', lastSeenAt: '2026-11-22T00:00:01.000Z', closedAt: null,
    remoteName: null, serverName: null, tlsVersion: null, http: null, remoteGeo: null,
    cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null,
    ...over,
  };
}

export class FakeMonitor implements MonitorApi {
  readonly bus = new EventBus();
  flows: Flow[] = [];
  /** Every query the RPC layer made, as it made it (what the method validated and scoped). */
  readonly queries: FlowQuery[] = [];
  interfaces: string[] = [];

  async queryFlows(q: FlowQuery) {
    this.queries.push(q);
    const m = this.flows.filter((f) => (q.pid === undefined || f.pid === q.pid) && (q.uid === undefined || f.uid === q.uid) && (q.comm === undefined || f.comm === q.comm) && (!q.identity || q.identity(f)));
    return { flows: m.slice(0, q.limit), total: this.flows.length, matched: m.length };
  }

  async processTotals(q: ProcessQuery): Promise<ProcessTraffic[]> {
    const by = new Map<number | null, ProcessTraffic>();
    for (const f of this.flows) {
      if (q.uid !== undefined && f.uid !== q.uid) continue;
      if (q.identity && !q.identity(f)) continue;
      const t = by.get(f.pid) ?? {
        pid: f.pid, comm: f.comm, uid: f.uid, exe: f.exe, cgroupId: f.cgroupId, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, lastSeenAt: f.lastSeenAt,
        cgroupPath: f.cgroupPath, unit: f.unit, userUnit: f.userUnit, slice: f.slice, container: f.container, app: f.app, places: [], http: null, ...(q.remotes ? { remotes: [] } : {}),
      };
      t.flows++;
      t.txBytes += f.txBytes;
      t.rxBytes += f.rxBytes;
      if (t.remotes) {
        const r = t.remotes.find((x) => x.addr === f.remoteAddr);
        if (r) Object.assign(r, { flows: r.flows + 1, txBytes: r.txBytes + f.txBytes, rxBytes: r.rxBytes + f.rxBytes });
        else t.remotes.push({ addr: f.remoteAddr, flows: 1, txBytes: f.txBytes, rxBytes: f.rxBytes });
      }
      by.set(f.pid, t);
    }
    return [...by.values()];
  }

  async status(): Promise<MonitorStatus> {
    return {
      pinPath: '/sys/fs/bpf/fake', deployedAt: '2026-11-22T00:00:00.000Z', adopted: { flows: true }, probes: [],
      socketScan: { method: null, state: 'done', sockets: 0, durationMs: 0, fallbacks: [] }, interfaces: [], interfaceErrors: {},
      maps: [], flowIndex: { mode: 'full-walk', reason: 'fake monitor', trusted: false, dirtyRecords: 0, fullWalks: 0, refreshes: 0, flowsRead: 0, resyncs: { ringFull: 0, nearFull: 0 }, mirrored: 0, closeChecks: { checked: 0, stillOpen: 0, inferred: 0 }, reads: { mode: 'lookup', reason: 'fake monitor', batches: 0, batchedFlows: 0 } },
      counters: Object.fromEntries([...MONITOR_COUNTERS, ...DAEMON_COUNTERS].map((c) => [c, 0])) as Record<CounterName, number>, loss: { ringbufFull: 0, probeMisses: 0, flowsEvicted: 0, undecodable: 0 },
      events: { received: { ...this.bus.counts }, pendingBytes: 0, maxDrainMs: 0 },
      handoff: { active: null, sockets: 0, counters: { slowPath: 0, handoffs: 0, shared: 0, ownersFilled: 0, flowsPatched: 0, updateFailed: 0 } },
    };
  }

  programsList(): ProgramsListResult {
    return { programs: [], links: [] };
  }

  setInterfaces(p: string[]): void {
    this.interfaces = p;
  }

  emit(e: Partial<MonitorEvent> & { type: MonitorEvent['type'] }): void {
    this.bus.publish({ at: new Date().toISOString(), pid: 100, uid: 1000, comm: 'curl', ...e } as MonitorEvent);
  }
}
