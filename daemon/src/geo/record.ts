// SPDX-License-Identifier: Apache-2.0
// MMDB records -> RemoteGeo fields. The databases a user may point ebpfmon at store the
// same facts under different keys; this reads each layout that is in common use:
//   - MaxMind GeoIP2/GeoLite2 City and Country, and DB-IP's own Lite files (GeoIP2-compatible):
//     country.iso_code, city.names.en, location.latitude/longitude
//   - GeoLite2-ASN, GeoIP2-ISP, DB-IP ASN Lite: autonomous_system_number/_organization
//     (GeoIP2 Enterprise puts them under traits)
//   - ip-location-db's flat files (the bundled default): country_code, city, latitude, longitude
//   - IPinfo's files: country (code), asn ("AS15169"), as_name
// Values of the wrong type are ignored rather than trusted.
import type { RemoteGeo } from '../contract/geo.js';

export type GeoFields = Omit<RemoteGeo, 'label'>;

type Rec = Record<string, unknown>;

const obj = (v: unknown): Rec | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Rec) : undefined);
const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v : null);

function countryCode(v: unknown): string | null {
  const s = str(v);
  return s !== null && /^[A-Za-z]{2}$/.test(s) ? s.toUpperCase() : null;
}

function degrees(v: unknown, limit: number): number | null {
  return typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= limit ? v : null;
}

function asNumber(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
  const m = typeof v === 'string' ? /^(?:AS)?(\d{1,10})$/i.exec(v.trim()) : null;
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n <= 0xffffffff ? n : null;
}

/** The English name from a GeoIP2 `names` map, else any name it has. */
function name(v: unknown): string | null {
  const names = obj(obj(v)?.names);
  if (!names) return null;
  return str(names.en) ?? Object.values(names).map(str).find((s) => s !== null) ?? null;
}

export function fieldsOf(record: unknown): GeoFields {
  const r = obj(record);
  if (!r) return { country: null, city: null, lat: null, lon: null, asn: null, org: null };
  const loc = obj(r.location);
  const traits = obj(r.traits);
  return {
    country: countryCode(obj(r.country)?.iso_code) ?? countryCode(r.country_code) ?? countryCode(r.country) ?? countryCode(obj(r.registered_country)?.iso_code),
    city: name(r.city) ?? str(r.city),
    lat: degrees(loc?.latitude, 90) ?? degrees(r.latitude, 90),
    lon: degrees(loc?.longitude, 180) ?? degrees(r.longitude, 180),
    asn: asNumber(r.autonomous_system_number) ?? asNumber(traits?.autonomous_system_number) ?? asNumber(r.asn),
    org: str(r.autonomous_system_organization) ?? str(traits?.autonomous_system_organization) ?? str(r.as_name),
  };
}
