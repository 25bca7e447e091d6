// SPDX-License-Identifier: Apache-2.0
// D-Bus values in and out: an incoming a{sv} is checked key by key and then validated by
// the JSON-RPC helpers (same rules, same messages, field renamed), scoping follows the
// socket's rule, and outgoing dictionaries have one fixed type per key.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dbus from 'dbus-next';
import { AppError } from '../../../../daemon/src/errors.js';
import { optInt, optCidr, optEnum } from '../../../../daemon/src/api/validate.js';
import { FLOW_SORTS } from '../../../../daemon/src/contract/index.js';
import { flowDict, jsonDict, processDict, readDict } from '../../../../daemon/src/dbus/convert.js';
import { flowQuery, FLOW_FILTER, LIMITS } from '../../../../daemon/src/dbus/manager.js';
import type { CallContext } from '../../../../daemon/src/dbus/object.js';
import { flow, noIdentity } from '../../../helpers/fake-monitor.js';

const V = (sig: string, value: unknown) => new dbus.Variant(sig, value);

function ctx(uid: number, seesAll: boolean): CallContext {
  return {
    sender: ':1.1', creds: { uid, pid: 1, gids: [uid] }, scope: { seesAll, admin: false }, uid: seesAll ? undefined : uid,
    caller: { uid, gid: null, pid: 1, seesAll, admin: false },
    requireAuthorization: async () => undefined,
  };
}

function fails(fn: () => unknown, kind: string, field?: string): AppError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, `an AppError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (field !== undefined) assert.equal(err.data?.field, field, err.message);
    return err;
  }
  assert.fail('did not throw');
}

describe('readDict', () => {
  test('accepts integers of any width, strings, booleans and nested dictionaries', () => {
    const spec = { a: 'int', b: 'string', c: 'bool', d: { dict: { x: 'int' } } } as const;
    for (const sig of ['y', 'n', 'q', 'i', 'u', 'x', 't']) {
      const value = sig === 'x' || sig === 't' ? 7n : 7;
      assert.deepEqual(readDict({ a: V(sig, value) }, 'p', spec), { a: 7 });
    }
    assert.deepEqual(readDict({ b: V('s', 'hi'), c: V('b', true), d: V('a{sv}', { x: V('u', 3) }) }, 'p', spec), { b: 'hi', c: true, d: { x: 3 } });
  });

  test('refuses unknown keys, wrong variant types, and non-dictionaries, naming the key', () => {
    const spec = { a: 'int', d: { dict: { x: 'int' } } } as const;
    fails(() => readDict({ zz: V('u', 1) }, 'filter', spec), 'InvalidParams', 'filter.zz');
    fails(() => readDict({ a: V('s', '1') }, 'filter', spec), 'InvalidParams', 'filter.a');
    fails(() => readDict({ a: V('d', 1.5) }, 'filter', spec), 'InvalidParams', 'filter.a');
    fails(() => readDict({ d: V('a{sv}', { y: V('u', 1) }) }, 'params', spec), 'InvalidParams', 'params.d.y');
    fails(() => readDict({ d: V('as', ['x']) }, 'params', spec), 'InvalidParams', 'params.d');
    fails(() => readDict({ a: 1 }, 'filter', spec), 'InvalidParams', 'filter.a');
    fails(() => readDict([1], 'filter', spec), 'InvalidParams', 'filter');
    // keys that exist on every object's prototype are not "known"
    fails(() => readDict({ constructor: V('u', 1) }, 'filter', spec), 'InvalidParams', 'filter.constructor');
  });
});

describe('GetFlows filter', () => {
  test('validates every key with the JSON-RPC rules and messages, the field named filter.*', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ pid: V('i', -1) }, 'filter.pid'], [{ pid: V('s', 'x') }, 'filter.pid'], [{ limit: V('u', 0) }, 'filter.limit'],
      [{ limit: V('u', LIMITS.flows + 1) }, 'filter.limit'], [{ protocol: V('s', 'bogus') }, 'filter.protocol'],
      [{ remoteAddr: V('s', 'not-an-ip') }, 'filter.remoteAddr'], [{ remoteAddr: V('s', '10.0.0.0/33') }, 'filter.remoteAddr'],
      [{ port: V('u', 70000) }, 'filter.port'], [{ sort: V('s', 'size') }, 'filter.sort'], [{ pids: V('au', [1]) }, 'filter.pids'],
      [{ comm: V('s', 'x'.repeat(16)) }, 'filter.comm'], [{ includeClosed: V('s', 'yes') }, 'filter.includeClosed'],
      [{ uid: V('t', 2n ** 40n) }, 'filter.uid'], [{ interface: V('s', '') }, 'filter.interface'],
      [{ unit: V('s', '') }, 'filter.unit'], [{ cgroup: V('s', 'system.slice') }, 'filter.cgroup'], [{ app: V('u', 1) }, 'filter.app'],
    ];
    for (const [filter, field] of cases) fails(() => flowQuery(filter, ctx(0, true).caller), 'InvalidParams', field);
    // the same message as flows.list, field renamed
    const rpc = fails(() => optInt({ pid: -1 }, 'pid', 0, 0x7fffffff), 'InvalidParams');
    const bus = fails(() => flowQuery({ pid: V('i', -1) }, ctx(0, true).caller), 'InvalidParams');
    assert.equal(bus.message, rpc.message.replace('params.pid', 'filter.pid'));
    const rpcSort = fails(() => optEnum({ sort: 'size' }, 'sort', FLOW_SORTS), 'InvalidParams');
    assert.equal(fails(() => flowQuery({ sort: V('s', 'size') }, ctx(0, true).caller), 'InvalidParams').message, rpcSort.message.replace('params.', 'filter.'));
    assert.equal(Object.keys(FLOW_FILTER).length, 18);
  });

  test('a good filter becomes the same FlowQuery flows.list builds', () => {
    const q = flowQuery({ pid: V('u', 100), remoteAddr: V('s', '198.18.0.0/15'), protocol: V('s', 'tcp'), sort: V('s', 'packets'), limit: V('u', 5), includeClosed: V('b', false) }, ctx(0, true).caller).query;
    assert.deepEqual([q.pid, q.protocol, q.sort, q.limit, q.includeClosed, q.uid], [100, 6, 'packets', 5, false, undefined]);
    assert.deepEqual(q.remoteAddr, optCidr({ a: '198.18.0.0/15' }, 'a'));
    assert.equal(flowQuery({}, ctx(0, true).caller).query.limit, LIMITS.defaultFlows);
    const g = flowQuery({ country: V('s', 'is'), asn: V('u', 64512), label: V('s', 'private') }, ctx(0, true).caller);
    assert.deepEqual(g.geo, { country: 'IS', asn: 64512, label: 'private' });
    fails(() => flowQuery({ country: V('s', 'ISL') }, ctx(0, true).caller), 'InvalidParams', 'filter.country');
    fails(() => flowQuery({ label: V('s', 'nowhere') }, ctx(0, true).caller), 'InvalidParams', 'filter.label');
  });

  test('a caller outside the group is held to its own uid', () => {
    assert.equal(flowQuery({}, ctx(1000, false).caller).query.uid, 1000);
    assert.equal(flowQuery({ uid: V('u', 1000) }, ctx(1000, false).caller).query.uid, 1000);
    fails(() => flowQuery({ uid: V('u', 1001) }, ctx(1000, false).caller), 'PermissionDenied', 'filter.uid');
    assert.equal(flowQuery({ uid: V('u', 1001) }, ctx(1000, true).caller).query.uid, 1001);
  });
});

describe('outgoing dictionaries', () => {
  test('a flow has one type per key, null fields left out, 64-bit ids intact', () => {
    const d = flowDict(flow({ interface: null, cgroupId: '18446744073709551615', closedAt: null, icmpType: undefined }));
    const sigs = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.signature]));
    assert.equal(sigs.pid, 'u');
    assert.equal(sigs.txBytes, 't');
    assert.equal(sigs.comm, 's');
    assert.equal(sigs.ipOptions, 'b');
    assert.equal(sigs.tcpFlagsTx, 'as');
    assert.equal(d.cgroupId?.value, 18446744073709551615n);
    for (const absent of ['interface', 'closedAt', 'icmpType', 'tcpFlags']) assert.ok(!(absent in d), absent);
  });

  test('an unattributed process has no pid, comm or uid', () => {
    const d = processDict({ pid: null, comm: null, uid: null, exe: null, flows: 2, openFlows: 1, txBytes: 5, rxBytes: 6, txPackets: 1, rxPackets: 1, lastSeenAt: null, places: [], http: null, ...noIdentity });
    assert.deepEqual(Object.keys(d).sort(), ['flows', 'openFlows', 'places', 'rxBytes', 'rxPackets', 'txBytes', 'txPackets']);
    assert.equal(d.places!.signature, 'aa{sv}');
  });

  test('a process\'s http summary: a{sv} with the contract\'s keys and types; left out when null', () => {
    const http = { requests: 100, clientErrors: 10, serverErrors: 0, requestBytes: 9000, responseBytes: 5_000_000_000 };
    const d = processDict({ pid: 7, comm: 'curl', uid: 0, exe: null, flows: 1, openFlows: 1, txBytes: 1, rxBytes: 1, txPackets: 1, rxPackets: 1, lastSeenAt: null, places: [], http, ...noIdentity });
    assert.equal(d.http!.signature, 'a{sv}');
    const h = d.http!.value as Record<string, InstanceType<typeof dbus.Variant>>;
    assert.deepEqual(Object.fromEntries(Object.entries(h).map(([k, v]) => [k, [v.signature, v.value]])), {
      requests: ['u', 100], clientErrors: ['u', 10], serverErrors: ['u', 0], requestBytes: ['t', 9000n], responseBytes: ['t', 5_000_000_000n],
    });
  });

  test('remoteGeo and places: a{sv} with one type per key, whatever the value (a whole-degree latitude stays d)', () => {
    const g = { country: 'IS', city: null, lat: 64, lon: -22, asn: 64512, org: 'lab', label: null };
    const f = flowDict(flow({ remoteGeo: g }));
    assert.equal(f.remoteGeo!.signature, 'a{sv}');
    const gd = f.remoteGeo!.value as Record<string, InstanceType<typeof dbus.Variant>>;
    assert.deepEqual(Object.fromEntries(Object.entries(gd).map(([k, v]) => [k, [v.signature, v.value]])), { country: ['s', 'IS'], lat: ['d', 64], lon: ['d', -22], asn: ['u', 64512], org: ['s', 'lab'] });
    assert.ok(!('remoteGeo' in flowDict(flow({ remoteGeo: null }))), 'null (geo off) is left out');
    const p = processDict({ pid: 1, comm: 'c', uid: 0, exe: null, flows: 1, openFlows: 1, txBytes: 1, rxBytes: 1, txPackets: 1, rxPackets: 1, lastSeenAt: null, ...noIdentity, http: null, places: [{ ...g, remoteAddr: '198.18.0.2', flows: 1, txBytes: 10, rxBytes: 20 }] });
    const place = (p.places!.value as Array<Record<string, InstanceType<typeof dbus.Variant>>>)[0]!;
    assert.deepEqual(Object.fromEntries(Object.entries(place).map(([k, v]) => [k, v.signature])), { country: 's', lat: 'd', lon: 'd', asn: 'u', org: 's', remoteAddr: 's', flows: 'u', txBytes: 't', rxBytes: 't' });
  });

  test('JSON objects from the load balancer: stable types for keys whose value cannot tell', () => {
    const d = jsonDict({
      vip: '198.19.10.10:80/tcp', port: 80, tableShare: 1, flows: 3, delta: -2, ratio: 0.5, interfaces: [], health: null,
      backends: [{ backend: '198.19.0.2:80', weight: 2, tableShare: 0.5 }], counters: { packets: 10 }, ok: true,
    });
    const sigs = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.signature]));
    assert.deepEqual(sigs, { vip: 's', port: 'u', tableShare: 'd', flows: 't', delta: 'x', ratio: 'd', interfaces: 'as', backends: 'aa{sv}', counters: 'a{sv}', ok: 'b' });
    const backend = (d.backends!.value as Array<Record<string, InstanceType<typeof dbus.Variant>>>)[0]!;
    assert.equal(backend.weight!.signature, 'u');
    assert.equal(backend.tableShare!.signature, 'd');
  });
});
