// SPDX-License-Identifier: Apache-2.0
// What a page is sent, from what the daemon answered: lines and places from the processes'
// `places`, with sums equal to the sums the test made up; rates as byte differences over
// time; the hover details from the flow pool; limits; filters.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveModel } from '../../../../client/src/ui/model.js';
import { buildSnapshot, NO_FILTER } from '../../../../client/src/ui/snapshot.js';
import type { Flow, ProcessTotals } from '../../../../daemon/src/contract/flows.js';
import type { ProcessPlace, RemoteGeo } from '../../../../daemon/src/contract/geo.js';
import { flow } from '../../../helpers/fake-monitor.js';

const NULLS: RemoteGeo = { country: null, city: null, lat: null, lon: null, asn: null, org: null, label: null };
const OSAKA: RemoteGeo = { ...NULLS, city: 'Ōsaka', country: 'JP', lat: 34.6937, lon: 135.5022, asn: 2516, org: 'KDDI' };
const US: RemoteGeo = { ...NULLS, country: 'US' };

function place(g: RemoteGeo, remoteAddr: string, flows: number, txBytes: number, rxBytes: number): ProcessPlace {
  return { ...g, remoteAddr, flows, txBytes, rxBytes };
}

function proc(pid: number, comm: string, places: ProcessPlace[], extra: Partial<ProcessTotals> = {}): ProcessTotals {
  const tx = places.reduce((s, p) => s + p.txBytes, 0);
  const rx = places.reduce((s, p) => s + p.rxBytes, 0);
  return { pid, comm, uid: 1000, exe: null, cgroupId: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null, flows: places.length, openFlows: places.length, txBytes: tx, rxBytes: rx, txPackets: 0, rxPackets: 0, lastSeenAt: null, places, http: null, ...extra };
}

let n = 0;
const f = (p: Partial<Flow>): Flow => flow({ localPort: 40000 + ++n, firstSeenAt: `2026-12-01T00:00:00.${String(n).padStart(3, '0')}Z`, ...p });

describe('ui snapshots', () => {
  test('lines, places and the not-on-the-map buckets add up to the places the daemon gave', () => {
    const procs = [
      proc(100, 'curl', [place(OSAKA, '81.2.69.10', 2, 1300, 5700)]),
      proc(200, 'firefox', [place(OSAKA, '81.2.69.12', 1, 10, 20), place(US, '93.184.216.34', 1, 40, 60)]),
      proc(300, 'ssh', [place({ ...NULLS, label: 'private' }, '10.1.2.3', 1, 11, 13), place(NULLS, '5.5.5.5', 2, 2, 3)]),
    ];
    const flows = [
      f({ remoteAddr: '81.2.69.10', pid: 100, comm: 'curl', txBytes: 1000, rxBytes: 5000, remoteGeo: OSAKA }),
      f({ remoteAddr: '81.2.69.11', pid: 100, comm: 'curl', txBytes: 300, rxBytes: 700, remotePort: 8443, remoteGeo: OSAKA }),
      f({ remoteAddr: '81.2.69.12', pid: 200, comm: 'firefox', txBytes: 10, rxBytes: 20, remoteGeo: OSAKA }),
    ];
    const m = new LiveModel();
    const s = buildSnapshot(m.update(procs, flows, 9, Date.now()), NO_FILTER, 'c:34.69,135.50');

    const osaka = s.locations.find((l) => l.city === 'Ōsaka')!;
    assert.equal(osaka.key, 'c:34.69,135.50');
    assert.deepEqual([osaka.txBytes, osaka.rxBytes, osaka.flows], [1300 + 10, 5700 + 20, 3]);
    const us = s.locations.find((l) => l.key === 'k:US')!;
    assert.deepEqual([us.lat, us.lon, us.country, us.txBytes + us.rxBytes], [null, null, 'US', 100], 'country-only: placed by the page');
    const line = (pid: number, key: string) => s.lines.find((l) => l.pid === pid && l.location === key);
    assert.deepEqual([line(100, osaka.key)!.txBytes, line(100, osaka.key)!.rxBytes], [1300, 5700]);
    assert.equal(line(200, 'k:US')!.txBytes, 40);
    assert.equal(s.lines.length, 3);
    assert.deepEqual(s.special.map((x) => [x.label, x.flows, x.txBytes + x.rxBytes]).sort(), [['private', 1, 24], ['unknown', 2, 5]]);
    assert.equal(s.totals.flows, 9);
    // The hovered place's details: its processes (from places) and remote addresses (from flows).
    assert.deepEqual(s.detail!.processes, [{ pid: 100, comm: 'curl', bytes: 7000 }, { pid: 200, comm: 'firefox', bytes: 30 }]);
    assert.deepEqual(s.detail!.remotes.find((r) => r.addr === '81.2.69.11'), { addr: '81.2.69.11', name: null, ports: [8443], bytes: 1000, asn: 2516, org: 'KDDI' });
    assert.equal(buildSnapshot(m.state!, NO_FILTER).detail, null, 'details only for a hovered place');
  });

  test('rates are the byte differences between two polls over the time between them', () => {
    const m = new LiveModel();
    const fl = f({ remoteAddr: '81.2.69.20', txBytes: 1000, rxBytes: 2000, remoteGeo: OSAKA });
    m.update([proc(100, 'curl', [place(OSAKA, '81.2.69.20', 1, 1000, 2000)])], [fl], 1, 10_000);
    const s = m.update([proc(100, 'curl', [place(OSAKA, '81.2.69.20', 1, 6000, 2500)])], [{ ...fl, txBytes: 6000, rxBytes: 2500 }], 1, 12_000);
    assert.deepEqual([s.flows[0]!.txRate, s.flows[0]!.rxRate], [2500, 250]);
    assert.deepEqual([s.processes[0]!.txRate, s.processes[0]!.rxRate], [2500, 250]);
    const snap = buildSnapshot(s, NO_FILTER);
    assert.deepEqual([snap.totals.txRate, snap.totals.rxRate], [2500, 250]);
    assert.deepEqual([snap.lines[0]!.txRate, snap.locations[0]!.rxRate], [2500, 250]);
  });

  test('limits: the largest lines are kept and the rest counted; filters select by process, text, port, protocol, state', () => {
    const procs: ProcessTotals[] = [];
    const flows: Flow[] = [];
    for (let i = 0; i < 50; i++) {
      const g = { ...NULLS, lat: i, lon: i };
      procs.push(proc(1000 + i, `p${i}`, [place(g, `81.2.69.${i}`, 1, i * 10, 0)]));
      flows.push(f({ remoteAddr: `81.2.69.${i}`, pid: 1000 + i, comm: `p${i}`, txBytes: i * 10, rxBytes: 0, remoteGeo: g }));
    }
    procs.push(proc(7, 'udpthing', [place(US, '93.184.216.1', 1, 1, 1)]));
    flows.push(f({ remoteAddr: '93.184.216.1', pid: 7, comm: 'udpthing', protocol: 'udp', remotePort: 53, txBytes: 1, rxBytes: 1, closedAt: '2026-12-01T00:00:02.000Z', remoteGeo: US }));
    const m = new LiveModel();
    const state = m.update(procs, flows, flows.length, 1);
    const limits = { lines: 10, locations: 10, processes: 5, flowRows: 3, perLocation: 2 };
    const s = buildSnapshot(state, NO_FILTER, null, limits);
    assert.deepEqual(s.lines.map((l) => l.pid), [1049, 1048, 1047, 1046, 1045, 1044, 1043, 1042, 1041, 1040]);
    assert.equal(s.linesOmitted, 51 - 10);
    assert.equal(s.locations.length, 10);
    assert.equal(s.processes.length, 5);
    assert.equal(s.flows.rows.length, 3);
    assert.equal(s.flows.matched, 51);

    const only = buildSnapshot(state, { ...NO_FILTER, pid: 1003 }, null, limits);
    assert.deepEqual([only.lines.map((l) => l.pid), only.flows.rows.map((x) => x.pid)], [[1003], [1003]]);
    assert.equal(buildSnapshot(state, { ...NO_FILTER, text: 'united' }, null, limits).flows.matched, 0, "country names are the page's; text matches codes");
    assert.deepEqual(buildSnapshot(state, { ...NO_FILTER, text: 'US' }, null, limits).flows.rows.map((x) => x.comm), ['udpthing']);
    assert.deepEqual(buildSnapshot(state, { ...NO_FILTER, port: 53 }, null, limits).flows.rows.map((x) => x.comm), ['udpthing']);
    assert.deepEqual(buildSnapshot(state, { ...NO_FILTER, protocol: 'udp' }, null, limits).flows.rows.map((x) => x.comm), ['udpthing']);
    assert.equal(buildSnapshot(state, { ...NO_FILTER, closed: false }, null, limits).flows.matched, 50);
  });
});
