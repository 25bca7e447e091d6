// SPDX-License-Identifier: Apache-2.0
// Identity filters (--unit --container --app --cgroup) over the identity fields flows,
// processes and events carry, and `top --by` grouping: each group's totals are the sum of
// its processes'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupProcesses, matchesIdentity } from '../../../../daemon/src/identity/filter.js';
import { parseCgroupPath } from '../../../../daemon/src/identity/parse.js';
import { toOwner } from '../../../../daemon/src/identity/owner.js';
import type { OwnerIdentity } from '../../../../daemon/src/contract/identity.js';
import type { ProcessTotals } from '../../../../daemon/src/contract/flows.js';
import type { ContainerInfo } from '../../../../daemon/src/identity/types.js';

const ID = '6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394';
const idOf = (cgroup: string, container?: Partial<ContainerInfo>, appName?: string): OwnerIdentity => {
  const p = parseCgroupPath(cgroup);
  if (container) p.container = { ...p.container!, ...container };
  if (appName) p.app = { ...p.app!, name: appName };
  return toOwner({ cgroupId: '1', cgroup, ...p });
};
const nginx = idOf('/system.slice/nginx.service');
const inst = idOf('/system.slice/system-echo\\x2dtcpa.slice/echo-tcpa@0-127.0.0.1:7002-127.0.0.1:5000.service');
const web = idOf(`/system.slice/docker-${ID}.scope`, { name: 'web' });
const pod = idOf(`/kubepods.slice/kubepods-pod0b7632a2_a56e_4278_987a_22de18008dbe.slice/cri-containerd-${ID}.scope`, { name: 'app', podName: 'shop-1', namespace: 'prod' });
const calc = idOf('/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.example.Calc-42.scope', undefined, 'Calculator');

test('the contract shape: flat, every field present, a user unit beside its manager', () => {
  assert.deepEqual(calc, {
    cgroupPath: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.example.Calc-42.scope',
    unit: 'user@1000.service', userUnit: 'app-gnome-org.example.Calc-42.scope', slice: 'user-1000.slice', container: null,
    app: { kind: 'desktop', id: 'org.example.Calc', name: 'Calculator' },
  });
  assert.deepEqual(web.container, { runtime: 'docker', id: ID, name: 'web' });
});

test('--unit: a system unit, a user unit, a template\'s instances', () => {
  assert.ok(matchesIdentity(nginx, { unit: 'nginx.service' }));
  assert.ok(!matchesIdentity(nginx, { unit: 'nginx' }), 'exact unless a * ends it');
  assert.ok(matchesIdentity(calc, { unit: 'app-gnome-org.example.Calc-42.scope' }));
  assert.ok(matchesIdentity(calc, { unit: 'user@1000.service' }));
  assert.ok(matchesIdentity(inst, { unit: 'echo-tcpa@*' }));
});

test('--container: id, a 12-digit prefix, name, pod name, namespace/pod, pod UID', () => {
  for (const q of [ID, ID.slice(0, 12), 'web']) assert.ok(matchesIdentity(web, { container: q }), q);
  assert.ok(!matchesIdentity(web, { container: ID.slice(0, 6) }), 'too short a prefix');
  for (const q of ['app', 'shop-1', 'prod/shop-1', '0b7632a2-a56e-4278-987a-22de18008dbe']) assert.ok(matchesIdentity(pod, { container: q }), q);
  assert.ok(!matchesIdentity(nginx, { container: 'web' }));
});

test('--app: id or .desktop Name (any case); --cgroup: the path or an ancestor; all must match', () => {
  assert.ok(matchesIdentity(calc, { app: 'org.example.Calc' }));
  assert.ok(matchesIdentity(calc, { app: 'calculator' }));
  assert.ok(!matchesIdentity(nginx, { app: 'calculator' }));
  assert.ok(matchesIdentity(nginx, { cgroup: '/system.slice' }));
  assert.ok(matchesIdentity(nginx, { cgroup: '/system.slice/nginx.service' }));
  assert.ok(!matchesIdentity(nginx, { cgroup: '/system.sl' }), 'whole components only');
  assert.ok(matchesIdentity(nginx, { cgroup: '/' }));
  assert.ok(!matchesIdentity(nginx, { cgroup: '/system.slice', unit: 'other.service' }));
});

test('top --by unit: each unit\'s totals are the sum of its processes\'; others in one row', () => {
  const p = (pid: number | null, id: OwnerIdentity, txBytes: number, rxBytes: number, openFlows = 1): ProcessTotals => ({
    pid, comm: 'x', uid: 0, exe: null, cgroupId: null, flows: 1, openFlows, txBytes, rxBytes, txPackets: 1, rxPackets: 1, lastSeenAt: null, places: [], http: null, ...id,
  });
  const none = toOwner({ cgroupId: null, cgroup: null, unit: null, slice: null });
  const procs = [p(10, nginx, 100, 1), p(11, nginx, 200, 2, 0), p(20, calc, 5, 5), p(null, none, 7, 0)];
  const rows = groupProcesses(procs, 'unit');
  assert.deepEqual(rows.map((r) => [r.key, r.label, r.pids, r.flows, r.openFlows, r.txBytes, r.rxBytes]), [
    ['nginx.service', 'nginx.service', [10, 11], 2, 1, 300, 3],
    ['user@1000.service/app-gnome-org.example.Calc-42.scope', 'app-gnome-org.example.Calc-42.scope', [20], 1, 1, 5, 5],
    [null, '(other)', [], 1, 1, 7, 0],
  ]);
  const sum = (k: 'txBytes' | 'rxBytes') => procs.reduce((s, f) => s + f[k], 0);
  assert.equal(rows.reduce((s, r) => s + r.txBytes, 0), sum('txBytes'), 'nothing lost or double counted');
  assert.deepEqual(groupProcesses(procs, 'app').map((r) => r.label), ['(other)', 'Calculator']);
  assert.deepEqual(groupProcesses([p(1, web, 1, 1)], 'container').map((r) => [r.key, r.label]), [[`docker:${ID}`, 'docker:web']]);
});
