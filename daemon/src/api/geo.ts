// SPDX-License-Identifier: Apache-2.0
// Where remote addresses are, as the API serves it: `remoteGeo` on every flow and
// connection event, `places` per process (where its current flows go, grouped by place),
// the flows.list filters `country`, `asn` and `label`, the method `geo.lookup`, and the
// `geo` section of `status`. The domain (geo/) answers one address at a time; this module
// decides what the transports carry.
import { GEO_LABELS, MAX_LOOKUP_ADDRS, type GeoLabel, type GeoStatus, type HomeLocation, type ProcessPlace, type RemoteGeo } from '../contract/geo.js';
import type { Flow, ProcessTotals } from '../contract/flows.js';
import { AppError, invalidParam } from '../errors.js';
import type { GeoResolver } from '../geo/resolver.js';
import { canonicalAddress } from '../geo/ranges.js';
import type { ProcessTraffic, RemoteTraffic } from '../monitor/api.js';
import { method } from './method.js';
import { optEnum, optInt, optString, paramsObject, type Params } from './validate.js';

export interface GeoDeps {
  /** The open databases; null when geo is off (`geo.enabled` false, or none could be opened). */
  resolver: GeoResolver | null;
  /** `geo.enabled` as configured. */
  enabled: boolean;
  /** Why geo runs with fewer databases than configured (or none), else null. */
  error: string | null;
  /** `ui.home`, parsed. */
  home: HomeLocation | null;
}

export const NO_GEO: GeoDeps = { resolver: null, enabled: false, error: null, home: null };

/** Where `addr` is, or null when geo is off. The monitor only ever hands out addresses it
 * formatted itself, so a refusal here would be a bug: it yields no place, not an error. */
export function remoteGeoOf(geo: GeoResolver | null, addr: string): RemoteGeo | null {
  if (!geo) return null;
  try {
    return geo.lookup(addr);
  } catch {
    return null;
  }
}

/** Sets `remoteGeo` on flows the monitor built (in place: one lookup per flow, cached per address). */
export function withRemoteGeo<F extends Flow>(geo: GeoResolver | null, flows: F[]): F[] {
  for (const f of flows) f.remoteGeo = remoteGeoOf(geo, f.remoteAddr);
  return flows;
}

/** The flows.list filters on where the remote address is. */
export interface GeoFilter {
  country?: string;
  asn?: number;
  label?: GeoLabel;
}

export const GEO_FLOW_PARAMS = ['country', 'asn', 'label'] as const;

export function geoFilter(p: Params): GeoFilter | undefined {
  const country = optString(p, 'country', 2, /^[A-Za-z]{2}$/, 'an ISO 3166-1 alpha-2 country code (two letters, e.g. "DE")')?.toUpperCase();
  const asn = optInt(p, 'asn', 0, 0xffffffff);
  const label = optEnum(p, 'label', GEO_LABELS);
  if (country === undefined && asn === undefined && label === undefined) return undefined;
  return { country, asn, label };
}

export function matchesGeo(g: RemoteGeo | null, f: GeoFilter): boolean {
  if (!g) return false;
  return (f.country === undefined || g.country === f.country) && (f.asn === undefined || g.asn === f.asn) && (f.label === undefined || g.label === f.label);
}

/** The key a flow's place is grouped by (the map's grouping): coordinates rounded to
 * about 1 km, else the country, else the label; addresses nobody knows share one place. */
export function placeKey(g: RemoteGeo): string {
  if (g.lat !== null && g.lon !== null) return `c:${g.lat.toFixed(2)},${g.lon.toFixed(2)}`;
  if (g.country !== null) return `k:${g.country}`;
  return g.label !== null ? `l:${g.label}` : 'u:';
}

/** A process's remote addresses grouped into places, busiest (by bytes) first, at most `n`
 * (`seen`: addresses already looked up in this answer). */
export function placesOf(geo: GeoResolver, remotes: readonly RemoteTraffic[], n: number, seen?: Map<string, RemoteGeo | null>): ProcessPlace[] {
  if (n === 0 || remotes.length === 0) return [];
  const by = new Map<string, ProcessPlace & { top: number }>();
  for (const r of remotes) {
    let g = seen?.get(r.addr);
    if (g === undefined) {
      g = remoteGeoOf(geo, r.addr);
      seen?.set(r.addr, g);
    }
    if (!g) continue;
    const k = placeKey(g);
    const bytes = r.txBytes + r.rxBytes;
    let p = by.get(k);
    if (!p) {
      p = { country: g.country, city: g.city, lat: g.lat, lon: g.lon, label: g.label, asn: g.asn, org: g.org, remoteAddr: r.addr, flows: 0, txBytes: 0, rxBytes: 0, top: -1 };
      by.set(k, p);
    }
    p.flows += r.flows;
    p.txBytes += r.txBytes;
    p.rxBytes += r.rxBytes;
    if (bytes > p.top) {
      // The place is named after its largest address (a place may span several ASes).
      p.remoteAddr = r.addr;
      p.asn = g.asn;
      p.org = g.org;
      p.city ??= g.city;
      p.top = bytes;
    }
  }
  return [...by.values()]
    .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) || (a.remoteAddr < b.remoteAddr ? -1 : 1))
    .slice(0, n)
    .map((p): ProcessPlace => ({ country: p.country, city: p.city, lat: p.lat, lon: p.lon, label: p.label, asn: p.asn, org: p.org, remoteAddr: p.remoteAddr, flows: p.flows, txBytes: p.txBytes, rxBytes: p.rxBytes }));
}

/** The monitor's per-process traffic as the contract's ProcessTotals, with `places`. */
export function withPlaces(geo: GeoResolver | null, list: ProcessTraffic[], n: number, cache?: PlacedRows): ProcessTotals[] {
  // Each field spelled out (in the row's order), not `{ remotes, ...t }`: V8 copies a rest
  // or spread through its runtime, which at 1000 rows per `top` refresh showed in profiles.
  // Processes share remotes (1000 rows, one address: 1000 lookups of the resolver's cache
  // per `top` refresh): each address is looked up once per answer.
  const seen = new Map<string, RemoteGeo | null>();
  // A row the monitor handed out again (unchanged) keeps its places while the databases do.
  const gen = geo ? geo.reloads : -1;
  return list.map((t) => {
    const c = cache?.get(t);
    if (c && c.n === n && c.gen === gen && c.geo === geo) return c.row;
    const row: ProcessTotals = {
      pid: t.pid, comm: t.comm, uid: t.uid, exe: t.exe, cgroupId: t.cgroupId,
      flows: t.flows, openFlows: t.openFlows, txBytes: t.txBytes, rxBytes: t.rxBytes, txPackets: t.txPackets, rxPackets: t.rxPackets,
      lastSeenAt: t.lastSeenAt,
      places: geo && t.remotes ? placesOf(geo, t.remotes, n, seen) : [],
      http: t.http,
      cgroupPath: t.cgroupPath, unit: t.unit, userUnit: t.userUnit, slice: t.slice, container: t.container, app: t.app,
    };
    cache?.set(t, { n, gen, geo, row });
    return row;
  });
}

/** withPlaces()' answers per monitor row (weak: a row the monitor dropped goes with them). */
export type PlacedRows = WeakMap<ProcessTraffic, { n: number; gen: number; geo: GeoResolver | null; row: ProcessTotals }>;

export function geoStatus(d: GeoDeps): GeoStatus {
  const r = d.resolver;
  return {
    enabled: d.enabled && r !== null,
    databases: r?.databases() ?? [],
    cache: r?.stats() ?? { lookups: 0, cacheMisses: 0, cached: 0, cacheMax: 0 },
    reloads: r?.reloads ?? 0,
    reloadErrors: r?.reloadErrors ?? 0,
    error: d.error,
    home: d.home,
  };
}

export function geoMethods(d: GeoDeps) {
  return {
    // Needs no privilege: where an address is says nothing about this machine's traffic.
    'geo.lookup': method<'geo.lookup', string[]>({
      access: 'read',
      validate: (raw) => {
        const p = paramsObject(raw, ['addrs']);
        const a = p.addrs;
        if (!Array.isArray(a) || a.length === 0 || a.length > MAX_LOOKUP_ADDRS) throw invalidParam('params.addrs', a, `an array of 1 to ${MAX_LOOKUP_ADDRS} IP addresses`);
        a.forEach((x, i) => {
          if (typeof x !== 'string' || x.length > 64 || canonicalAddress(x) === null) throw invalidParam(`params.addrs[${i}]`, x, 'an IPv4 or IPv6 address');
        });
        return a as string[];
      },
      run: (addrs) => {
        const r = d.resolver;
        if (!r) throw new AppError('NotAvailable', d.enabled ? `geo lookups are off: ${d.error ?? 'no database'}` : 'geo lookups are off (geo.enabled is false)');
        return { results: addrs.map((addr) => ({ addr, remoteGeo: r.lookup(addr) })) };
      },
    }),
  };
}
