// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Capture's dictionaries name every field as JSON-RPC does (mirror.list,
// mirror.stats, capture.list), with one D-Bus type per key; AddMirror's arguments arrive as
// mirror.add's params (lists in any integer width), and wrong types are named.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dbus from 'dbus-next';
import { ADD_MIRROR, captureSessionDict, mirrorDict } from '../../../../daemon/src/dbus/capture.js';
import { readDict } from '../../../../daemon/src/dbus/convert.js';
import type { CaptureSessionView, MirrorView } from '../../../../daemon/src/contract/capture.js';
import { parseMirrorSpec } from '../../../../daemon/src/api/capture.js';

const SPEC = {
  name: 'web', to: '198.51.100.7', encap: 'vxlan' as const, vni: 42, snaplen: 128, ratePps: 1000, pids: [10, 20], comms: ['curl'], user: 'alice',
  unit: 'nginx.service', cgroup: '/system.slice', interfaces: ['eth1'], direction: 'out' as const, expression: 'tcp port 443',
};
const MIRROR: MirrorView = {
  name: 'web', to: '198.51.100.7', encap: 'vxlan', vni: 42, spec: SPEC, state: 'active', source: 'api', createdAt: '2026-12-03T22:00:00.000Z', device: 'emon-vxlan', pathMtu: 1500,
  interfaces: [{ name: 'eth1', ifindex: 3, linkType: 'ethernet' }],
  counters: { matched: 1, matchedBytes: 2, mirrored: 3, mirroredBytes: 4, truncated: 5, rateLimited: 6, failed: 7, tooBig: 8 },
};
const SESSION: CaptureSessionView = {
  session: 'cap-0123456789ab', uid: 1000, pid: 4242, startedAt: '2026-12-03T22:00:00.000Z', selector: { pids: [4242], user: 1000, expression: 'udp' }, snaplen: 262144,
  delivery: 'fd', deliveryReason: "the client's regular file",
  counters: { matched: 1, matchedBytes: 2, captured: 3, capturedBytes: 4, dropped: 5, clientDropped: 6, written: 7, truncated: 8, lostInRestart: 9 },
};

const sigs = (d: Record<string, { signature: string }>) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.signature]));

describe('org.ebpfmon1.Capture dictionaries', () => {
  test('a mirror: every JSON-RPC key, typed; the declaration and counters too', () => {
    const d = mirrorDict(MIRROR);
    assert.deepEqual(Object.keys(d).sort(), Object.keys(MIRROR).sort());
    assert.deepEqual(Object.keys(d.spec!.value as object).sort(), Object.keys(SPEC).sort());
    assert.deepEqual(Object.keys(d.counters!.value as object).sort(), Object.keys(MIRROR.counters).sort());
    const s = sigs(d as never);
    assert.deepEqual([s.vni, s.pathMtu, s.spec, s.interfaces, s.counters], ['u', 'u', 'a{sv}', 'aa{sv}', 'a{sv}']);
    const spec = sigs(d.spec!.value as never);
    assert.deepEqual([spec.pids, spec.comms, spec.user, spec.vni], ['au', 'as', 's', 'u']);
    assert.ok(Object.values(sigs(d.counters!.value as never)).every((x) => x === 't'));
    assert.ok(!('pathMtu' in mirrorDict({ ...MIRROR, pathMtu: null })), 'null fields are left out');
  });

  test('a capture session: every JSON-RPC key, typed; user as a uid is u', () => {
    const d = captureSessionDict(SESSION);
    assert.deepEqual(Object.keys(d).sort(), Object.keys(SESSION).sort());
    assert.deepEqual(Object.keys(d.counters!.value as object).sort(), Object.keys(SESSION.counters).sort());
    assert.equal(sigs(d.selector!.value as never).user, 'u');
  });

  test('AddMirror arguments: lists in any integer width become mirror.add params; wrong types are named', () => {
    const raw = {
      name: new dbus.Variant('s', 'web'), to: new dbus.Variant('s', '198.51.100.7'), pids: new dbus.Variant('ai', [10, 20]), comms: new dbus.Variant('as', ['curl']),
      user: new dbus.Variant('u', 1000), vni: new dbus.Variant('q', 42), interfaces: new dbus.Variant('as', ['eth1']),
    };
    const p = readDict(raw, 'params', ADD_MIRROR);
    assert.deepEqual(parseMirrorSpec(p), { name: 'web', to: '198.51.100.7', vni: 42, pids: [10, 20], comms: ['curl'], user: 1000, interfaces: ['eth1'] });
    assert.deepEqual(readDict({ pids: new dbus.Variant('at', [10n]) }, 'params', ADD_MIRROR), { pids: [10] });
    assert.throws(() => readDict({ pids: new dbus.Variant('ay', Buffer.from([1])) }, 'params', ADD_MIRROR), /params\.pids: expected an array of integers variant \(au\), not type ay/);
    assert.throws(() => readDict({ comms: new dbus.Variant('s', 'curl') }, 'params', ADD_MIRROR), /params\.comms: expected an array of strings variant \(as\), not type s/);
  });
});
