// SPDX-License-Identifier: Apache-2.0
// One name per concept on both wires: a flow, a process's totals and a flows filter have
// the same field names over D-Bus as over JSON-RPC (checked on real output of both
// adapters for the same data), and D-Bus members are the JSON-RPC names in PascalCase.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { buildDaemon, type Daemon } from '../../../../daemon/src/app.js';
import { DNS_FILTER, FLOW_FILTER, HTTP_FILTER, IDENTITY_PARAMS, PROCESS_FILTER } from '../../../../daemon/src/dbus/manager.js';
import { DNS_LIST_PARAMS, HTTP_LIST_PARAMS } from '../../../../daemon/src/api/l7.js';
import { FLOW_TCP_FLAG_KEYS, flowDict, groupDict, processDict } from '../../../../daemon/src/dbus/convert.js';
import { MANAGER_PROPERTY } from '../../../../daemon/src/contract/dbus.js';
import { HISTORY_PARAMS } from '../../../../daemon/src/api/history.js';
import { HISTORY_FILTER } from '../../../../daemon/src/dbus/history.js';
import { FLOW_PARAMS, PROCESS_PARAMS } from '../../../../daemon/src/api/monitor.js';
import { DaemonClient } from '../../../../client/src/rpc.js';
import { FakeMonitor, flow } from '../../../helpers/fake-monitor.js';
import { GeoResolver } from '../../../../daemon/src/geo/resolver.js';
import type { HttpFlowSummary } from '../../../../daemon/src/contract/l7.js';

// Every key set (none null): null fields are left out on D-Bus.
const HTTP_SUMMARY: HttpFlowSummary = {
  requests: 3, clientErrors: 1, serverErrors: 1, unanswered: 1, requestBytes: 300, responseBytes: 9000,
  lastMethod: 'GET', lastHost: 'www.l7.test', lastPath: '/x', lastStatus: 200, lastAt: '2026-11-22T00:00:02.000Z', tls: false,
};
const FLOW_FOR_HTTP = flow({ pid: 7 });

describe('JSON-RPC and D-Bus name the same fields the same', () => {
  let dir: string;
  let daemon: Daemon;
  let client: DaemonClient;
  let geo: GeoResolver;
  const fake = new FakeMonitor();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-names-'));
    // Every optional field present (ICMP ids and types), none null.
    fake.flows = [flow({
      pid: 7, protocol: 'icmp', icmpType: 8, icmpId: 3, localPort: null, remotePort: null, closedAt: '2026-11-22T00:00:02.000Z',
      cgroupPath: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.App-7.scope', unit: 'user@1000.service',
      userUnit: 'app-flatpak-org.example.App-7.scope', slice: 'user-1000.slice', container: { runtime: 'podman', id: 'a'.repeat(64), name: 'web' },
      app: { kind: 'flatpak', id: 'org.example.App', name: 'Example' },
    })];
    // The bundled database: every flow gets a remoteGeo (a lab address: its label), and
    // every process its places.
    geo = await GeoResolver.open({});
    daemon = buildDaemon({
      geo: { resolver: geo, enabled: true, error: null, home: null },
      monitor: fake, bus: fake.bus, logger: pino({ level: 'silent' }), version: '9.9.9', socketPath: path.join(dir, 's.sock'),
      limits: { maxClients: 8, maxMessageBytes: 1 << 20, maxSubscriptionsPerClient: 2, subscriberQueue: 100 },
      groups: { group: 'g', adminGroup: 'a' }, identify: () => ({ uid: 0, gid: 0, pid: 1, seesAll: true, admin: true }),
    });
    await daemon.start();
    client = await DaemonClient.connect(path.join(dir, 's.sock'));
  });
  after(async () => {
    client.close();
    await daemon.stop();
    geo.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a flow: the JSON-RPC keys, and the D-Bus dictionary\'s (tcpFlags as tcpFlagsTx/tcpFlagsRx)', async () => {
    const rpc = (await client.call('flows.list', {})).flows[0]!;
    const rpcKeys = Object.keys(rpc).filter((k) => k !== 'tcpFlags').sort();
    // Null fields are left out on D-Bus (ports are null for ICMP, the L7 names when unknown: set them for this check).
    const bus = flowDict({ ...rpc, localPort: 1, remotePort: 2, remoteName: 'a.example', serverName: 'a.example', tlsVersion: '1.3', http: HTTP_SUMMARY });
    assert.deepEqual(Object.keys(bus).filter((k) => !(FLOW_TCP_FLAG_KEYS as readonly string[]).includes(k)).sort(), rpcKeys);
    assert.deepEqual(FLOW_TCP_FLAG_KEYS.map((k) => k in bus), [true, true]);
  });

  test('a process\'s totals: the same keys', async () => {
    const rpc = (await client.call('processes.list', {})).processes[0]!;
    assert.deepEqual(Object.keys(processDict(rpc)).sort(), Object.keys(rpc).filter((k) => (rpc as unknown as Record<string, unknown>)[k] !== null).sort());
  });

  test('a flow\'s HTTP summary: every key typed on D-Bus', () => {
    const d = flowDict({ ...FLOW_FOR_HTTP, http: HTTP_SUMMARY }).http!.value as Record<string, unknown>;
    assert.deepEqual(Object.keys(d).sort(), Object.keys(HTTP_SUMMARY).sort());
  });

  test('remoteGeo and a place: the same keys (a place has every key of remoteGeo)', async () => {
    const f = (await client.call('flows.list', {})).flows[0]!;
    const g = { ...f.remoteGeo!, country: 'IS', city: 'Reykjavik', lat: 64.1, lon: -21.9, asn: 1, org: 'o' };
    assert.deepEqual(Object.keys((flowDict({ ...f, remoteGeo: g }).remoteGeo!.value as object)).sort(), Object.keys(f.remoteGeo!).sort());
    const place = (await client.call('processes.list', {})).processes[0]!.places[0]!;
    assert.equal(place.label, 'benchmarking');
    const full = { ...place, ...g };
    const busPlace = (processDict({ ...(await client.call('processes.list', {})).processes[0]!, places: [full] }).places!.value as object[])[0]!;
    assert.deepEqual(Object.keys(busPlace).sort(), Object.keys(full).sort());
  });

  test('the flows filter: GetFlows takes exactly the params of flows.list', () => {
    assert.deepEqual(Object.keys(FLOW_FILTER).sort(), [...FLOW_PARAMS].sort());
  });

  test('the history filter: GetHistory takes exactly the params of history.query', () => {
    assert.deepEqual(Object.keys(HISTORY_FILTER).sort(), [...HISTORY_PARAMS].sort());
  });

  test('the L7 filters: GetDnsQueries and GetHttpRequests take exactly the params of dns.list and http.list', () => {
    assert.deepEqual(Object.keys(DNS_FILTER).sort(), [...DNS_LIST_PARAMS].sort());
    assert.deepEqual(Object.keys(HTTP_FILTER).sort(), [...HTTP_LIST_PARAMS].sort());
  });

  test('GetProcessTotals takes the params of processes.list; a group has the same keys on both wires', async () => {
    assert.deepEqual(Object.keys(PROCESS_FILTER).sort(), [...PROCESS_PARAMS].sort());
    assert.deepEqual(Object.keys(IDENTITY_PARAMS).sort(), ['cgroupId', 'pid']);
    const g = (await client.call('processes.list', { by: 'app' })).groups![0]!;
    assert.deepEqual(Object.keys(groupDict(g)).sort(), Object.keys(g).filter((k) => (g as unknown as Record<string, unknown>)[k] !== null).sort());
    assert.deepEqual(Object.keys(flowDict((await client.call('flows.list', {})).flows[0]!).container!.value as object).sort(), ['id', 'name', 'runtime']);
  });

  test('status counters and D-Bus properties: RingbufFull is loss.ringbufFull', async () => {
    const st = await client.call('status');
    const pascal = (s: string) => s[0]!.toUpperCase() + s.slice(1);
    for (const k of ['ringbufFull', 'flowsEvicted'] as const) {
      assert.ok(k in st.loss, k);
      assert.ok(pascal(k) in MANAGER_PROPERTY, `D-Bus property ${pascal(k)}`);
    }
  });
});
