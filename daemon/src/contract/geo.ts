// SPDX-License-Identifier: Apache-2.0
// Where remote addresses are: `remoteGeo` on flows and connection events, `places` on
// per-process totals, `geo.lookup`, the `geo` section of `status`. docs/geo.md.

/** Address ranges that are labelled instead of being looked up in the bundled database
 * (daemon/src/geo/ranges.ts lists them with their RFCs). */
export const GEO_LABELS = ['unspecified', 'loopback', 'private', 'link-local', 'cgnat', 'documentation', 'benchmarking', 'multicast', 'broadcast', 'reserved'] as const;
export type GeoLabel = (typeof GEO_LABELS)[number];

/** Where a remote address is. Every field is null when no database knows it. */
export interface RemoteGeo {
  /** ISO 3166-1 alpha-2 country code ("DE"). */
  country: string | null;
  /** City name (English where the database has several languages). */
  city: string | null;
  /** Degrees, WGS 84; null when the database knows only the country (the bundled one). */
  lat: number | null;
  lon: number | null;
  /** Autonomous system number and the organisation that announces it. */
  asn: number | null;
  org: string | null;
  /** Set for special-purpose addresses (private, loopback, documentation...). */
  label: GeoLabel | null;
}

/** Where one process's current flows go, grouped by place: coordinates rounded to 0.01
 * degree, else the country, else the label. */
export interface ProcessPlace {
  country: string | null;
  city: string | null;
  lat: number | null;
  lon: number | null;
  label: GeoLabel | null;
  /** The AS and organisation of the place's largest remote address. */
  asn: number | null;
  org: string | null;
  /** The place's largest remote address (by bytes), as an example. */
  remoteAddr: string;
  flows: number;
  txBytes: number;
  rxBytes: number;
}

/** Places per process in processes.list (the busiest first) unless `places` says otherwise. */
export const DEFAULT_PLACES = 5;
export const MAX_PLACES = 100;

export interface GeoLookupParams {
  /** 1 to 1000 IPv4 or IPv6 addresses. */
  addrs: string[];
}

export const MAX_LOOKUP_ADDRS = 1000;

export interface GeoLookupResult {
  results: Array<{ addr: string; remoteGeo: RemoteGeo }>;
}

/** One MMDB file the daemon reads. */
export interface GeoDatabaseInfo {
  path: string;
  /** `user`: configured in geo.databases (consulted first, for every address);
   * `default`: shipped with ebpfmon (consulted last, never for special ranges). */
  source: 'user' | 'default';
  /** The file's own metadata. */
  databaseType: string;
  buildEpoch: string;
  ipVersion: number;
  nodeCount: number;
  sizeBytes: number;
  /** When the daemon last (re)loaded it. */
  loadedAt: string;
  /** For bundled databases: licence (SPDX) and the attribution it requires. */
  license?: string;
  attribution?: { text: string; url: string };
}

/** Where this machine is on the map (`ui.home`). */
export interface HomeLocation {
  lat: number;
  lon: number;
  name: string | null;
}

/** The `geo` section of `status`. */
export interface GeoStatus {
  enabled: boolean;
  /** In lookup order: the user's files (geo.databases), then the bundled default. */
  databases: GeoDatabaseInfo[];
  /** Lookups answered, cache misses (database walks), entries cached and the cache's size. */
  cache: { lookups: number; cacheMisses: number; cached: number; cacheMax: number };
  /** Files replaced on disk and reloaded, and reloads that failed (the old contents stay). */
  reloads: number;
  reloadErrors: number;
  /** Why geo is off although enabled (a database that could not be opened), else null. */
  error: string | null;
  /** `ui.home`, parsed; null when not set. */
  home: HomeLocation | null;
}
