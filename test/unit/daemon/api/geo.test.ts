// SPDX-License-Identifier: Apache-2.0
// processes.list `places` (api/geo.ts withPlaces): each process's remote addresses grouped
// into places, busiest first, named after the place's largest address; every other field
// of the row as the monitor gave it, in the same order (the JSON `top --json` prints), and
// each address looked up once per answer however many processes share it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withPlaces } from '../../../../daemon/src/api/geo.js';
import type { GeoResolver } from '../../../../daemon/src/geo/resolver.js';
import type { RemoteGeo } from '../../../../daemon/src/contract/geo.js';
import type { ProcessTraffic } from '../../../../daemon/src/monitor/flows.js';

const PLACES: Record<string, RemoteGeo> = {
  '198.51.100.1': { country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.4, asn: 64500, org: 'A', label: null },
  '198.51.100.2': { country: 'DE', city: null, lat: 52.52, lon: 13.4, asn: 64501, org: 'B', label: null },
  '203.0.113.9': { country: 'FR', city: 'Paris', lat: 48.85, lon: 2.35, asn: 64502, org: 'C', label: null },
};

function resolver(): { geo: GeoResolver; asked: string[] } {
  const asked: string[] = [];
  const geo = { lookup: (a: string) => (asked.push(a), PLACES[a] ?? { country: null, city: null, lat: null, lon: null, asn: null, org: null, label: 'private' }) };
  return { geo: geo as unknown as GeoResolver, asked };
}

function row(pid: number, remotes: ProcessTraffic['remotes']): ProcessTraffic {
  return {
    pid, comm: `p${pid}`, uid: 1000, exe: '/bin/p', cgroupId: '7', flows: 3, openFlows: 2, txBytes: 10, rxBytes: 20, txPackets: 1, rxPackets: 2,
    lastSeenAt: '2026-12-04T10:00:00.000Z', places: [], http: { requests: 1, clientErrors: 0, serverErrors: 0, requestBytes: 5, responseBytes: 6 },
    cgroupPath: '/system.slice/p.service', unit: 'p.service', userUnit: null, slice: 'system.slice', container: null, app: null,
    remotes,
  };
}

test('withPlaces: places grouped and ordered, the row otherwise unchanged and in its order, one lookup per address', () => {
  const { geo, asked } = resolver();
  const a = row(1, [
    { addr: '198.51.100.1', flows: 1, txBytes: 100, rxBytes: 0 },
    { addr: '198.51.100.2', flows: 2, txBytes: 500, rxBytes: 50 }, // same coordinates, larger: names the place
    { addr: '203.0.113.9', flows: 1, txBytes: 10, rxBytes: 10 },
    { addr: '10.0.0.1', flows: 1, txBytes: 1, rxBytes: 0 },
  ]);
  const b = row(2, [{ addr: '203.0.113.9', flows: 4, txBytes: 7, rxBytes: 0 }]);
  const [pa, pb] = withPlaces(geo, [a, b], 2);
  const { remotes: _r, ...rest } = a;
  assert.equal(JSON.stringify(pa), JSON.stringify({
    ...rest,
    places: [
      { country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.4, label: null, asn: 64501, org: 'B', remoteAddr: '198.51.100.2', flows: 3, txBytes: 600, rxBytes: 50 },
      { country: 'FR', city: 'Paris', lat: 48.85, lon: 2.35, label: null, asn: 64502, org: 'C', remoteAddr: '203.0.113.9', flows: 1, txBytes: 10, rxBytes: 10 },
    ],
  }));
  assert.deepEqual(pb!.places.map((p) => [p.country, p.flows]), [['FR', 4]]);
  assert.deepEqual([...asked].sort(), ['10.0.0.1', '198.51.100.1', '198.51.100.2', '203.0.113.9'], 'each address once');
  assert.deepEqual(withPlaces(null, [a], 2)[0]!.places, [], 'geo off: no places');
  assert.equal('remotes' in pa!, false);
});
