// SPDX-License-Identifier: Apache-2.0
// `ui.home`: where this machine is on the map of `ebpfmonctl ui` ("LAT,LON[,NAME]"),
// checked with the configuration and served, parsed, in `status.geo.home`.
import type { HomeLocation } from '../contract/geo.js';

/** Parses "LAT,LON[,NAME]" (degrees, WGS 84); "" is no home. Throws naming what is wrong. */
export function parseHome(text: string): HomeLocation | null {
  if (text.trim() === '') return null;
  const [latS = '', lonS = '', ...rest] = text.split(',');
  const num = (s: string) => (/^\s*[-+]?\d+(\.\d+)?\s*$/.test(s) ? Number(s) : NaN);
  const lat = num(latS);
  const lon = num(lonS);
  if (!(Math.abs(lat) <= 90)) throw new Error(`home "${text}": latitude must be a number from -90 to 90 (expected "LAT,LON" or "LAT,LON,NAME")`);
  if (!(Math.abs(lon) <= 180)) throw new Error(`home "${text}": longitude must be a number from -180 to 180 (expected "LAT,LON" or "LAT,LON,NAME")`);
  const name = rest.join(',').trim();
  return { lat, lon, name: name === '' ? null : name };
}
