// SPDX-License-Identifier: Apache-2.0
// Builds MMDB files for tests with MaxMind's own Perl writer (Debian's
// libmaxmind-db-writer-perl, through test/fixtures/geo/write-mmdb.pl), so that what the
// geo module reads was written by code independent of the reader under test.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { BUILD } from './daemon.js';
import { requireTool } from './privileged.js';

export const ROOT = path.resolve(BUILD, '../..');
export const WRITER = path.join(ROOT, 'test/fixtures/geo/write-mmdb.pl');

/** MMDB types of the keys the layouts in use have (GeoIP2 City/ASN, ip-location-db, IPinfo). */
export const TYPES: Record<string, string> = {
  city: 'map', names: 'map', en: 'utf8_string', de: 'utf8_string', location: 'map', latitude: 'double', longitude: 'double',
  accuracy_radius: 'uint16', country: 'map', registered_country: 'map', iso_code: 'utf8_string', geoname_id: 'uint32',
  autonomous_system_number: 'uint32', autonomous_system_organization: 'utf8_string', traits: 'map',
  country_code: 'utf8_string', asn: 'utf8_string', as_name: 'utf8_string', site: 'utf8_string',
};

export interface MmdbRecord {
  network: string;
  data: Record<string, unknown>;
}

/** Writes an MMDB file into `opts.dir` (the caller's temp dir, which it removes) and returns its path. */
export function writeMmdb(records: MmdbRecord[], opts: { dir: string; name?: string; databaseType?: string; types?: Record<string, string> }): string {
  requireTool('perl');
  const file = path.join(opts.dir, opts.name ?? 'test.mmdb');
  const spec = { databaseType: opts.databaseType ?? 'ebpfmon-Test-City', description: 'ebpfmon test database', types: { ...TYPES, ...opts.types }, records };
  try {
    execFileSync('perl', [WRITER, file], { input: JSON.stringify(spec), stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer };
    throw new Error(`write-mmdb.pl failed (is libmaxmind-db-writer-perl installed? scripts/setup.sh test installs it): ${e.stderr?.toString() ?? String(err)}`);
  }
  return file;
}

/** A GeoIP2-City-layout record (what GeoLite2-City and DB-IP's own Lite files hold). */
export function cityRecord(p: { city: string; country: string; lat: number; lon: number; asn?: number; org?: string }): Record<string, unknown> {
  return {
    city: { names: { en: p.city } },
    country: { iso_code: p.country },
    location: { latitude: p.lat, longitude: p.lon, accuracy_radius: 5 },
    ...(p.asn !== undefined ? { autonomous_system_number: p.asn } : {}),
    ...(p.org !== undefined ? { autonomous_system_organization: p.org } : {}),
  };
}
