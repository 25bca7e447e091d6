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
 * records give them without building the event object). `into` (emptyObservation()): filled
 * and returned instead of a new object; History.recordClose() keeps nothing of it but its
 * strings, so the daemon feeds every close through one (no object per close). */
export function observationFromFacts(e: CloseFacts, owner?: OwnerLookup, into?: FlowObservation): FlowObservation | null {
  if (!e.flowSeen || e.durationMs === null) return null;
  const known = e.pid !== null ? owner?.(e.pid) : undefined;
  const closed = e.atMs;
  const o = into ?? emptyObservation();
  o.proto = e.protocol;
  o.family = e.family;
  o.localAddr = e.localAddr;
  o.localPort = e.localPort;
  o.remoteAddr = e.remoteAddr;
  o.remotePort = e.remotePort;
  o.interface = e.interface;
  o.direction = null;
  o.attributedBy = e.attributedBy;
  o.pid = e.pid;
  o.comm = e.comm;
  o.uid = e.uid;
  o.exe = known?.exe ?? null;
  o.cgroupId = known?.cgroupId ?? null;
  // The event carries the flow's age, not its first-seen time.
  o.firstMs = closed - Math.round(e.durationMs);
  o.lastMs = closed;
  o.closedMs = closed;
  o.txBytes = e.txBytes;
  o.rxBytes = e.rxBytes;
  o.txPackets = e.txPackets;
  o.rxPackets = e.rxPackets;
  return o;
}

/** The fields observationFromFacts() sets, in its order (one object shape for every fill). */
export function emptyObservation(): FlowObservation {
  return {
    proto: '', family: 'ipv4', localAddr: '', localPort: null, remoteAddr: '', remotePort: null,
    interface: null, direction: null, attributedBy: null, pid: null, comm: null, uid: null, exe: null, cgroupId: null,
    firstMs: 0, lastMs: 0, closedMs: null, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0,
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
