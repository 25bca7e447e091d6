// SPDX-License-Identifier: Apache-2.0
// The identity filters and identity.get at the API boundary (every transport): bad input is
// InvalidParams naming the field, identity.get is scoped by caller, processes.list groups
// per unit/container/app, and events are filtered on their owner's identity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApi, eventFilter, type Caller, type IdentityApi } from '../../../../daemon/src/api/index.js';
import { ObjectEvent } from '../../../../daemon/src/events/bus.js';
import { AppError } from '../../../../daemon/src/errors.js';
import type { IdentityResult } from '../../../../daemon/src/contract/identity.js';
import { FakeMonitor, flow, noIdentity } from '../../../helpers/fake-monitor.js';

const root: Caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
const alice: Caller = { uid: 1000, gid: 1000, pid: 2, seesAll: false, admin: false };

const identity: IdentityApi = {
  get: async (q) => ({ ...noIdentity, pid: q.pid ?? null, cgroupId: q.cgroupId ?? '7', unit: 'x.service', tree: [] }) as IdentityResult,
  stats: () => ({ cgroupRoot: '/sys/fs/cgroup', entries: 0, hits: 0, resolved: 0, misses: 0, byPid: 0, byHandle: 0, byWalk: 0, walks: 0, lastWalkDirs: 0, lastWalkMs: 0, handlesDenied: false }),
  processUid: (pid) => (pid === 4242 ? 1000 : 0),
};

function api(fake = new FakeMonitor()) {
  return buildApi({ monitor: fake, lb: null, identity, version: 't', startedAt: new Date(), transports: () => ({ rpc: { clients: 0, subscriptions: 0, subscriberDropped: 0, refused: {}, limits: { maxClients: 1, maxClientsPerUid: 1, reservedClients: 0 } }, dbus: null }) }).methods;
}

function fails(fn: () => unknown, kind: string, field: string): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, String(err));
    assert.equal(err.kind, kind, err.message);
    assert.equal(err.data?.field, field, err.message);
    return;
  }
  assert.fail('did not throw');
}

test('bad identity filters are refused naming the field, on every method that takes them', () => {
  const m = api();
  fails(() => m['flows.list'].validate({ cgroup: 'system.slice' }, root), 'InvalidParams', 'params.cgroup');
  fails(() => m['flows.list'].validate({ cgroup: '/a/../b' }, root), 'InvalidParams', 'params.cgroup');
  fails(() => m['flows.list'].validate({ unit: '' }, root), 'InvalidParams', 'params.unit');
  fails(() => m['flows.list'].validate({ unit: 'a/b.service' }, root), 'InvalidParams', 'params.unit');
  fails(() => m['processes.list'].validate({ container: 'has space' }, root), 'InvalidParams', 'params.container');
  fails(() => m['processes.list'].validate({ by: 'pod' }, root), 'InvalidParams', 'params.by');
  fails(() => eventFilter({ app: 7 }, root), 'InvalidParams', 'params.app');
  fails(() => eventFilter({ cgroup: 'system.slice' }, root), 'InvalidParams', 'params.cgroup');
  fails(() => eventFilter({ unit: 'a/b.service' }, root), 'InvalidParams', 'params.unit');
  fails(() => eventFilter({ container: 'has space' }, root), 'InvalidParams', 'params.container');
  assert.ok(m['flows.list'].validate({ unit: 'getty@*', cgroup: '/system.slice' }, root).query.identity, 'a good filter becomes a predicate');
  assert.equal(m['flows.list'].validate({}, root).query.identity, undefined, 'no filter, no predicate');
});

test('identity.get: a pid or a cgroup id; outside the group, only one\'s own processes, by pid', async () => {
  const m = api();
  fails(() => m['identity.get'].validate({}, root), 'InvalidParams', 'params.pid');
  fails(() => m['identity.get'].validate({ cgroupId: '0x12' }, root), 'InvalidParams', 'params.cgroupId');
  fails(() => m['identity.get'].validate({ cgroupId: '18446744073709551616' }, root), 'InvalidParams', 'params.cgroupId');
  assert.equal(m['identity.get'].validate({ cgroupId: '18446744073709551615' }, root).cgroupId, '18446744073709551615', 'the largest u64 is an id');
  fails(() => m['identity.get'].validate({ pid: 0 }, root), 'InvalidParams', 'params.pid');
  fails(() => m['identity.get'].validate({ cgroupId: '4294967302' }, alice), 'PermissionDenied', 'params.cgroupId');
  fails(() => m['identity.get'].validate({ pid: 1 }, alice), 'PermissionDenied', 'params.pid');
  const own = await m['identity.get'].run(m['identity.get'].validate({ pid: 4242 }, alice), alice);
  assert.deepEqual([own.pid, own.unit], [4242, 'x.service']);
  assert.equal((await m['identity.get'].run(m['identity.get'].validate({ cgroupId: '4294967302' }, root), root)).cgroupId, '4294967302');
});

test('processes.list: filtered by identity, and grouped per unit with `by`', async () => {
  const fake = new FakeMonitor();
  fake.flows = [
    flow({ pid: 1, unit: 'a.service', txBytes: 10, rxBytes: 1 }), flow({ pid: 2, unit: 'a.service', txBytes: 20, rxBytes: 2 }),
    flow({ pid: 3, unit: 'b.service', txBytes: 5, rxBytes: 5 }), flow({ pid: 4, txBytes: 1, rxBytes: 0 }),
  ];
  const m = api(fake);
  const run = async (p: object) => m['processes.list'].run(m['processes.list'].validate(p, root), root);
  const plain = await run({});
  assert.equal(plain.groups, undefined);
  assert.deepEqual((await run({ unit: 'a.service' })).processes.map((p) => p.pid).sort(), [1, 2]);
  const g = (await run({ by: 'unit', limit: 1 })).groups!;
  assert.deepEqual(g.map((x) => [x.key, x.pids, x.txBytes, x.rxBytes]), [['a.service', [1, 2], 30, 3], ['b.service', [3], 5, 5], [null, [4], 1, 0]], 'groups total every process, whatever limit keeps');
});

test('events: an identity filter keeps the events of matching owners (asked once per owner) and leaves events without one out', () => {
  const base = { type: 'exec' as const, at: 'x', pid: 1, uid: 0, comm: 'c', ppid: 0, gid: 0, filename: '/x', args: [] as string[], argsTruncated: false, ...noIdentity, cgroupId: '9' };
  const web = { ...base, unit: 'docker-abc.scope', container: { runtime: 'docker' as const, id: 'a'.repeat(64), name: 'web' } };
  const lb = new ObjectEvent({ type: 'lb', at: 'x', pid: null, uid: null, comm: null, name: 'lb.vip.added', detail: {} });
  const f = eventFilter({ container: 'web' }, root);
  assert.ok(f.accepts(new ObjectEvent(web)));
  assert.ok(!f.accepts(new ObjectEvent(base)));
  assert.ok(!f.accepts(lb), 'no owner: left out by an identity filter');
  assert.ok(eventFilter({}, root).accepts(lb), 'without one, kept');
  assert.ok(eventFilter({ unit: 'docker-*', container: 'aaaaaaaaaaaa' }, root).accepts(new ObjectEvent(web)), 'all filters must match');
  assert.ok(!eventFilter({ unit: 'docker-*', app: 'x' }, root).accepts(new ObjectEvent(web)));
  // The record views hand the same identity object for every event of a cgroup: the
  // predicate runs once for it.
  let reads = 0;
  const shared = { ...web };
  const view = { type: 'close' as const, pid: 1, uid: 1000, owner: () => shared };
  const g = eventFilter({ cgroup: '/' }, root);
  Object.defineProperty(shared, 'cgroupPath', { get: () => (reads++, '/system.slice/docker-abc.scope') });
  for (let i = 0; i < 100; i++) assert.ok(g.accepts(view));
  assert.equal(reads, 1);
  // Scoping still applies first: alice never sees uid 0's events, whatever the filter.
  assert.ok(!eventFilter({ container: 'web' }, alice).accepts(new ObjectEvent(web)));
});
