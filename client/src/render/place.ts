// SPDX-License-Identifier: Apache-2.0
// Where a remote address is, in a table cell: "Reykjavík, IS", "DE" (a country-level
// database), the special range ("private", "loopback"), or "-" when nobody knows. No
// Node.js imports: the page of `ebpfmonctl ui` bundles this file too.
import type { RemoteGeo } from '../../../daemon/src/contract/geo.js';

export function placeText(g: Pick<RemoteGeo, 'city' | 'country' | 'label'> | null | undefined): string {
  if (!g) return '-';
  const parts = [g.city, g.country].filter((x): x is string => x !== null && x !== '');
  if (parts.length) return parts.join(', ');
  return g.label ?? '-';
}

/** "AS64512 Example Org", or "" without an AS number. */
export function asText(g: Pick<RemoteGeo, 'asn' | 'org'> | null | undefined): string {
  if (!g || g.asn === null) return '';
  return g.org ? `AS${g.asn} ${g.org}` : `AS${g.asn}`;
}
