// SPDX-License-Identifier: Apache-2.0
// Where a flow or a process's place goes on the map. The daemon groups a process's flows
// into places by the same rule (daemon/src/api/geo.ts placeKey): coordinates rounded to
// 0.01 degree (about 1 km: one city is one place), else the country, else the special
// range, else unknown.
import type { RemoteGeo } from '../../../daemon/src/contract/geo.js';

type Where = Pick<RemoteGeo, 'lat' | 'lon' | 'country' | 'label'>;

export function placeKey(g: Where): string {
  if (g.lat !== null && g.lon !== null) return `c:${g.lat.toFixed(2)},${g.lon.toFixed(2)}`;
  if (g.country !== null) return `k:${g.country}`;
  return g.label !== null ? `l:${g.label}` : 'u:';
}

/** Drawn on the map: it has coordinates, or at least a country (the page places it there). */
export function placeable(g: Where): boolean {
  return (g.lat !== null && g.lon !== null) || g.country !== null;
}
