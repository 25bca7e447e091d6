// SPDX-License-Identifier: Apache-2.0
// The monitor's shapes -> history's observations. The only file of history that knows the
// monitor's types (import type only): when the monitor's fields are renamed, this is the
// file to change.
import type { CloseEvent } from '../contract/events.js';
import type { Flow } from '../contract/flows.js';
import { closeFactsOf, type CloseFacts } from '../events/bus.js';
import type { FlowObservation, GoneObservation } from './types.js';

/** What the daemon knows of a process that a close event does not carry (its process
 * table has the executable; exec events the cgroup). */
export type OwnerLookup = (pid: number) => { exe: string | null; cgroupId?: string | null } | undefined;

/** A close event with the flow's final counts; null when no monitored interface carried
 * the flow (its IP-layer counts are zero: history records flows, as flows.list shows them).
 * `owner` fills in the executable and cgroup (the writer also learns them from listings). */
export function observationFromClose(e: CloseEvent, owner?: OwnerLookup): FlowObservation | null {
  return observationFromFacts(closeFactsOf(e), owner);
}

/** observationFromClose() from a close's facts (BusEvent.closeFacts(): the monitor's
 * records give them without building the event object). */
export function observationFromFacts(e: CloseFacts, owner?: OwnerLookup): FlowObservation | null {
  if (!e.flowSeen || e.durationMs === null) return null;
  const known = e.pid !== null ? owner?.(e.pid) : undefined;
  const closed = e.atMs;
  return {
    proto: e.protocol, family: e.family,
    localAddr: e.localAddr, localPort: e.localPort, remoteAddr: e.remoteAddr, remotePort: e.remotePort,
    interface: e.interface, direction: null, attributedBy: e.attributedBy,
    pid: e.pid, comm: e.comm, uid: e.uid, exe: known?.exe ?? null, cgroupId: known?.cgroupId ?? null,
    // The event carries the flow's age, not its first-seen time.
    firstMs: closed - Math.round(e.durationMs), lastMs: closed, closedMs: closed,
    txBytes: e.txBytes, rxBytes: e.rxBytes, txPackets: e.txPackets, rxPackets: e.rxPackets,
  };
}

/** One flow of the flow table (flows.list), open or recently closed. */
export function observationFromFlow(f: Flow): FlowObservation {
  const icmp = f.protocol === 'icmp' || f.protocol === 'icmpv6';
  return {
    proto: f.protocol, family: f.family,
    localAddr: f.localAddr, localPort: icmp ? (f.icmpId ?? null) : f.localPort,
    remoteAddr: f.remoteAddr, remotePort: icmp ? (f.icmpType ?? null) : f.remotePort,
    interface: f.interface, direction: f.direction, attributedBy: f.attributedBy,
    pid: f.pid, comm: f.comm, uid: f.uid, exe: f.exe, cgroupId: f.cgroupId, unit: f.userUnit ?? f.unit,
    firstMs: Date.parse(f.firstSeenAt), lastMs: Date.parse(f.lastSeenAt), closedMs: f.closedAt === null ? null : Date.parse(f.closedAt),
    txBytes: f.txBytes, rxBytes: f.rxBytes, txPackets: f.txPackets, rxPackets: f.rxPackets,
  };
}

/** A flow the flow table found gone (the monitor's GoneFlow, FlowTable.listChanges; spelled
 * out here: history does not import the monitor). ICMP's id and type are already in the
 * port fields, as observationFromFlow() puts them. */
export function observationFromGone(g: { protocol: string; localAddr: string; localPort: number; remoteAddr: string; remotePort: number; goneAtMs: number }): GoneObservation {
  return { proto: g.protocol, localAddr: g.localAddr, localPort: g.localPort, remoteAddr: g.remoteAddr, remotePort: g.remotePort, goneAtMs: g.goneAtMs };
}
