// SPDX-License-Identifier: Apache-2.0
// One page's view of the model: places and lines (process x place) for the map, the process
// table and the filtered flow table, each bounded, so that what a page receives and draws
// each second does not grow with the number of flows (bench/ui measures it at 10,000).
import type { ModelFlow, ModelState } from './model.js';
import type { FlowRow, LineRow, LocationDetail, LocationRow, PageFilter, Snapshot, SpecialRow } from './protocol.js';

export interface SnapshotLimits {
  lines: number;
  locations: number;
  processes: number;
  flowRows: number;
  /** Per place, in the hover details. */
  perLocation: number;
}

// 200 lines cover a busy desktop's places; the tables render only their visible rows, so
// 100 rows each cost the page little more than the 14 it shows.
export const DEFAULT_LIMITS: SnapshotLimits = { lines: 200, locations: 200, processes: 100, flowRows: 100, perLocation: 6 };

export const NO_FILTER: PageFilter = { pid: null, text: '', port: null, protocol: null, closed: true };

export function flowMatches(f: ModelFlow, filter: PageFilter): boolean {
  if (filter.pid !== null && f.pid !== filter.pid) return false;
  if (filter.port !== null && f.remotePort !== filter.port && f.localPort !== filter.port) return false;
  if (filter.protocol && f.protocol !== filter.protocol) return false;
  if (!filter.closed && f.closed) return false;
  const t = filter.text.trim().toLowerCase();
  if (t) {
    const hay = [f.comm, f.remoteAddr, f.localAddr, f.remoteName, f.where, f.org, f.asn !== null ? `as${f.asn}` : null, f.pid !== null ? String(f.pid) : null];
    if (!hay.some((h) => h && h.toLowerCase().includes(t))) return false;
  }
  return true;
}

function top<T>(items: Iterable<T>, n: number, size: (t: T) => number): T[] {
  return [...items].sort((a, b) => size(b) - size(a)).slice(0, n);
}

/** Who talks to the place `key` and to which addresses (the largest flows only). */
export function locationDetail(s: ModelState, key: string, filter: PageFilter, limits: SnapshotLimits = DEFAULT_LIMITS): LocationDetail | null {
  const procs = s.places.filter((p) => p.location === key && (filter.pid === null || p.pid === filter.pid));
  if (procs.length === 0) return null;
  const remotes = new Map<string, LocationDetail['remotes'][number]>();
  for (const f of s.flows) {
    if (f.place !== key || (filter.pid !== null && f.pid !== filter.pid)) continue;
    let r = remotes.get(f.remoteAddr);
    if (!r) remotes.set(f.remoteAddr, (r = { addr: f.remoteAddr, name: null, ports: [], bytes: 0, asn: f.asn, org: f.org }));
    r.name ??= f.remoteName;
    if (f.remotePort !== null && r.ports.length < 16 && !r.ports.includes(f.remotePort)) r.ports.push(f.remotePort);
    r.bytes += f.txBytes + f.rxBytes;
  }
  return {
    key,
    processes: top(procs, limits.perLocation, (p) => p.txBytes + p.rxBytes).map((p) => ({ pid: p.pid, comm: p.comm, bytes: p.txBytes + p.rxBytes })),
    remotes: top(remotes.values(), limits.perLocation, (r) => r.bytes).map((r) => ({ ...r, ports: r.ports.sort((a, b) => a - b) })),
  };
}

export function buildSnapshot(s: ModelState, filter: PageFilter, hovered: string | null = null, limits: SnapshotLimits = DEFAULT_LIMITS): Snapshot {
  const locs = new Map<string, LocationRow>();
  const special = new Map<SpecialRow['label'], SpecialRow>();
  const lines: LineRow[] = [];
  for (const p of s.places) {
    if (filter.pid !== null && p.pid !== filter.pid) continue;
    if (!p.onMap) {
      const label = p.label ?? 'unknown';
      let sp = special.get(label);
      if (!sp) special.set(label, (sp = { label, flows: 0, txBytes: 0, rxBytes: 0 }));
      sp.flows += p.flows;
      sp.txBytes += p.txBytes;
      sp.rxBytes += p.rxBytes;
      continue;
    }
    let loc = locs.get(p.location);
    if (!loc) {
      loc = { key: p.location, lat: p.lat, lon: p.lon, country: p.country, city: p.city, txBytes: 0, rxBytes: 0, txRate: 0, rxRate: 0, flows: 0 };
      locs.set(p.location, loc);
    }
    loc.txBytes += p.txBytes;
    loc.rxBytes += p.rxBytes;
    loc.txRate += p.txRate;
    loc.rxRate += p.rxRate;
    loc.flows += p.flows;
    loc.city ??= p.city;
    lines.push({ key: `${p.location}|${p.pid}|${p.comm}`, location: p.location, pid: p.pid, comm: p.comm, txBytes: p.txBytes, rxBytes: p.rxBytes, txRate: p.txRate, rxRate: p.rxRate });
  }
  const keptLines = top(lines, limits.lines, (l) => l.txBytes + l.rxBytes);
  const wanted = new Set(keptLines.map((l) => l.location));
  const locations = top([...locs.values()].filter((l) => wanted.has(l.key)), limits.locations, (l) => l.txBytes + l.rxBytes);
  const locSet = new Set(locations.map((l) => l.key));

  const matching = s.flows.filter((f) => flowMatches(f, filter));
  const flowRows: FlowRow[] = matching
    // By bytes, not by rate: rows that change places every second cost the page a layout
    // each time (the process table is the one sorted by rate, like top).
    .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) || (a.id < b.id ? -1 : 1))
    .slice(0, limits.flowRows)
    .map(({ place: _p, ...row }) => row);
  const processes = [...s.processes].sort((a, b) => b.txRate + b.rxRate - (a.txRate + a.rxRate) || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes)).slice(0, limits.processes);
  let txRate = 0;
  let rxRate = 0;
  for (const p of s.processes) {
    txRate += p.txRate;
    rxRate += p.rxRate;
  }
  return {
    type: 'snapshot',
    at: new Date(s.at).toISOString(),
    totals: { txRate, rxRate, flows: s.flowsMatched, processes: s.processes.length },
    processes,
    locations,
    lines: keptLines.filter((l) => locSet.has(l.location)),
    linesOmitted: lines.length - keptLines.length,
    special: [...special.values()].sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes)),
    flows: { rows: flowRows, matched: matching.length, pool: s.flows.length, total: s.flowsMatched },
    detail: hovered ? locationDetail(s, hovered, filter, limits) : null,
  };
}
