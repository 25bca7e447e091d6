// SPDX-License-Identifier: Apache-2.0
// Remote address -> RemoteGeo, from MMDB files read with the `maxmind` reader.
//
// Order, for every address:
//   1. the user's own databases (geo.databases), in the order given: a user maps internal
//      ranges to sites this way, so they win even for private or lab addresses;
//   2. the special-range label (ranges.ts): a labelled address is never looked up in
//   3. the default (bundled) databases, which only fill fields the user's files left empty.
// Per field, the first database that knows it wins; latitude and longitude move as a pair.
//
// Results are cached in a bounded LRU keyed by address: a flow table holds the same remote
// addresses over and over, and an MMDB lookup (a tree walk plus record decoding) costs
// microseconds where a cache hit costs tens of nanoseconds (bench/geo).
import fs from 'node:fs';
import { LRUCache } from 'lru-cache';
import maxmind, { Reader, type Response } from 'maxmind';
import type { GeoDatabaseInfo, RemoteGeo } from '../contract/geo.js';
import { bundledPath, DEFAULT_DATABASES, GeoDatabaseError, type BundledDatabase } from './databases.js';
import { fieldsOf, type GeoFields } from './record.js';
import { canonicalAddress, specialLabel } from './ranges.js';

export const DEFAULT_CACHE_SIZE = 65536;
/** How often a watched file's mtime is checked (fs.watchFile polls; inotify would miss a
 * file replaced by rename into a directory we do not watch). */
export const WATCH_INTERVAL_MS = 5000;

export interface GeoOptions {
  /** The user's own MMDB files, consulted first, in this order. */
  databases?: readonly string[];
  /** Use the databases ebpfmon ships (default true). */
  defaultDatabases?: boolean;
  /** Replaces the bundled list (tests put a database they built in the default's place). */
  defaults?: ReadonlyArray<{ path: string; license?: string; attribution?: { text: string; url: string } }>;
  /** Cached addresses (default 65536). */
  cacheSize?: number;
  /** Reload a file when it changes on disk (geoipupdate replaces them weekly). Off by
   * default: short-lived processes and tests do not need it. */
  watch?: boolean | { intervalMs: number };
  /** A user's file that cannot be opened: throw (default), or skip it and report it in
   * `errors` (the daemon keeps running with the others). */
  skipUnreadable?: boolean;
  /** Told about every reload, good or failed (the daemon logs them). */
  onReload?: (path: string, err: Error | null) => void;
}

interface Db {
  info: GeoDatabaseInfo;
  reader: Reader<Response>;
}

export class GeoInputError extends TypeError {
  override readonly name = 'GeoInputError';
}

export class GeoResolver {
  private readonly cache: LRUCache<string, RemoteGeo>;
  private lookups = 0;
  private misses = 0;
  private readonly watched: string[] = [];
  reloads = 0;
  reloadErrors = 0;

  private constructor(
    private readonly user: Db[],
    private readonly defaults: Db[],
    cacheSize: number,
    /** Files given but not opened (skipUnreadable), with the reason. */
    readonly errors: string[],
  ) {
    this.cache = new LRUCache({ max: cacheSize });
  }

  static async open(opts: GeoOptions = {}): Promise<GeoResolver> {
    const cacheSize = opts.cacheSize ?? DEFAULT_CACHE_SIZE;
    if (!Number.isInteger(cacheSize) || cacheSize < 1) throw new RangeError(`geo: cacheSize must be a positive integer, got ${String(cacheSize)}`);
    const errors: string[] = [];
    const user: Db[] = [];
    for (const f of opts.databases ?? []) {
      try {
        user.push(await openOne(f, 'user', {}));
      } catch (err) {
        if (!opts.skipUnreadable) throw err;
        errors.push((err as Error).message);
      }
    }
    const defaults: Db[] = [];
    if (opts.defaultDatabases !== false) {
      const list = opts.defaults ?? DEFAULT_DATABASES.map((d: BundledDatabase) => ({ path: bundledPath(d), license: d.license, attribution: d.attribution }));
      for (const d of list) defaults.push(await openOne(d.path, 'default', { ...(d.license ? { license: d.license } : {}), ...(d.attribution ? { attribution: d.attribution } : {}) }));
    }
    const r = new GeoResolver(user, defaults, cacheSize, errors);
    if (opts.watch) r.watch(typeof opts.watch === 'object' ? opts.watch.intervalMs : WATCH_INTERVAL_MS, opts.onReload);
    return r;
  }

  /**
   * Reloads a file when its mtime or size changes. Our own watcher rather than maxmind's
   * `watchForUpdates`: that one lets a failed reload (a file caught half-written by `cp`)
   * reject unhandled, which ends the process, and reports nothing. Here a file that does
   * not parse is counted and the old contents stay in use until a good one appears.
   */
  private watch(intervalMs: number, onReload?: (path: string, err: Error | null) => void): void {
    for (const db of [...this.user, ...this.defaults]) {
      const file = db.info.path;
      this.watched.push(file);
      fs.watchFile(file, { persistent: false, interval: intervalMs }, (cur, prev) => {
        if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
        if (cur.nlink === 0 && cur.size === 0) return; // removed: keep what we have until it is back
        void fs.promises.readFile(file).then(
          (buf) => {
            const reader = new Reader<Response>(buf); // parses the metadata: throws on a bad file
            db.reader = reader;
            db.info = infoOf(file, db.info.source, reader, buf.length, { license: db.info.license, attribution: db.info.attribution });
            this.cache.clear();
            this.reloads++;
            onReload?.(file, null);
          },
        ).catch((err: Error) => {
          this.reloadErrors++;
          onReload?.(file, new GeoDatabaseError(file, `not reloaded, the previous contents stay in use: ${err.message}`, { cause: err }));
        });
      });
    }
  }

  /** Where `addr` is. Throws GeoInputError when `addr` is not an IP address. */
  lookup(addr: string): RemoteGeo {
    this.lookups++;
    // Keyed by the text as given: a hit costs one map lookup, no parsing.
    const hit = this.cache.get(addr);
    if (hit) return hit;
    const canon = typeof addr === 'string' ? canonicalAddress(addr) : null;
    if (canon === null) throw new GeoInputError(`geo: not an IP address: ${JSON.stringify(addr)}`);
    this.misses++;
    const label = specialLabel(canon);
    const f: GeoFields = { country: null, city: null, lat: null, lon: null, asn: null, org: null };
    for (const db of this.user) merge(f, db.reader.get(canon));
    if (label === null) for (const db of this.defaults) merge(f, db.reader.get(canon));
    const geo: RemoteGeo = Object.freeze({ ...f, label });
    this.cache.set(addr, geo);
    return geo;
  }

  /** The files in use, in lookup order (user's first). */
  databases(): GeoDatabaseInfo[] {
    return [...this.user, ...this.defaults].map((d) => d.info);
  }

  stats(): { lookups: number; cacheMisses: number; cached: number; cacheMax: number } {
    return { lookups: this.lookups, cacheMisses: this.misses, cached: this.cache.size, cacheMax: this.cache.max };
  }

  /** Stops watching files; the resolver still answers from what it loaded. */
  close(): void {
    for (const f of this.watched) fs.unwatchFile(f);
    this.watched.length = 0;
  }
}

function infoOf(file: string, source: 'user' | 'default', reader: Reader<Response>, size: number, extra: Pick<GeoDatabaseInfo, 'license' | 'attribution'>): GeoDatabaseInfo {
  const m = reader.metadata;
  return {
    path: file, source, databaseType: m.databaseType, buildEpoch: m.buildEpoch.toISOString(), ipVersion: m.ipVersion, nodeCount: m.nodeCount, sizeBytes: size,
    loadedAt: new Date().toISOString(),
    ...(extra.license ? { license: extra.license } : {}),
    ...(extra.attribution ? { attribution: extra.attribution } : {}),
  };
}

async function openOne(file: string, source: 'user' | 'default', extra: Pick<GeoDatabaseInfo, 'license' | 'attribution'>): Promise<Db> {
  if (typeof file !== 'string' || !file.startsWith('/')) throw new GeoDatabaseError(String(file), 'must be an absolute path');
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new GeoDatabaseError(file, e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message, { cause: err });
  }
  let reader: Reader<Response>;
  try {
    reader = await maxmind.open<Response>(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new GeoDatabaseError(file, e.code === 'EACCES' ? 'permission denied' : `not a readable MMDB file (${e.message})`, { cause: err });
  }
  return { reader, info: infoOf(file, source, reader, size, extra) };
}

function merge(into: GeoFields, record: unknown): void {
  if (record === null || record === undefined) return;
  const r = fieldsOf(record);
  into.country ??= r.country;
  into.city ??= r.city;
  if (into.lat === null && r.lat !== null && r.lon !== null) {
    into.lat = r.lat;
    into.lon = r.lon;
  }
  into.asn ??= r.asn;
  into.org ??= r.org;
}
