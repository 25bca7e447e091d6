// SPDX-License-Identifier: Apache-2.0
// The resolver's cache and lookups over a stand-in hierarchy (a directory tree: ids are its
// inode numbers, as they are on cgroupfs) and a stand-in /proc. What is measured on real
// cgroups against the kernel's own ids is in test/integration/identity.test.ts.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IdentityResolver } from '../../../../daemon/src/identity/resolver.js';
import { DesktopEntries } from '../../../../daemon/src/identity/desktop.js';
import { processTree } from '../../../../daemon/src/identity/tree.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-resolver-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const root = path.join(dir, 'cg');
const proc = path.join(dir, 'proc');
const mk = (rel: string) => {
  fs.mkdirSync(path.join(root, rel), { recursive: true });
  return fs.statSync(path.join(root, rel), { bigint: true }).ino;
};
const fakeProc = (pid: number, ppid: number, comm: string, cg: string) => {
  fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
  fs.writeFileSync(path.join(proc, String(pid), 'stat'), `${pid} (${comm}) S ${ppid} 1 1 0 -1\n`);
  fs.writeFileSync(path.join(proc, String(pid), 'cgroup'), `1:name=systemd:${cg}\n0::${cg}\n`);
};
const write = (rel: string, text: string) => {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), text);
};

const apps = 'user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.example.Calc-42.scope';
const svcId = mk('system.slice/web.service');
const appId = mk(apps);
fakeProc(10, 1, 'systemd', '/init.scope');
fakeProc(20, 10, 'web (main)', '/system.slice/web.service');
fakeProc(30, 20, 'worker', '/system.slice/web.service');

function resolver(clock: { t: number }, extra: Partial<ConstructorParameters<typeof IdentityResolver>[0]> = {}) {
  return new IdentityResolver({ cgroupRoot: root, procRoot: proc, useHandles: false, minRewalkMs: 0, now: () => clock.t, desktop: new DesktopEntries({ systemDataDirs: [path.join(dir, 'share')] }), ...extra });
}

test('by id: a walk finds it; by pid: /proc does, and the chain stops at the unit\'s main process', async () => {
  const r = resolver({ t: 0 });
  const a = await r.resolveAsync({ cgroupId: svcId.toString() });
  assert.deepEqual([a.cgroup, a.unit, a.slice], ['/system.slice/web.service', 'web.service', 'system.slice']);
  const b = r.resolve({ pid: 30 });
  assert.equal(b.cgroupId, svcId.toString());
  assert.deepEqual(b.tree, [{ pid: 30, comm: 'worker' }, { pid: 20, comm: 'web (main)' }], 'comm with spaces and parentheses; stops below systemd');
  assert.equal(r.stats().walks, 1);
});

test('an id not yet seen: a miss now, found after a walk; misses are not looked for again at once', async () => {
  const clock = { t: 0 };
  const r = resolver(clock, { missTtlMs: 1000, minRewalkMs: 10_000 });
  await r.resolveAsync({ cgroupId: svcId.toString() }); // one walk
  const lateId = mk('system.slice/late.service');
  assert.equal((await r.resolveAsync({ cgroupId: lateId.toString() })).cgroup, null, 'the next walk is not due yet');
  clock.t = 20_000;
  assert.equal((await r.resolveAsync({ cgroupId: lateId.toString() })).unit, 'late.service');
  assert.equal(r.stats().walks, 2);
});

test('names are read again after namesTtlMs; what the path says is kept', async () => {
  const clock = { t: 0 };
  const r = resolver(clock, { namesTtlMs: 60_000 });
  const first = await r.resolveAsync({ cgroupId: appId });
  assert.deepEqual(first.app, { kind: 'desktop', id: 'org.example.Calc', desktopId: 'org.example.Calc', launcher: 'gnome' }, 'no .desktop file yet');
  write('share/applications/org.example.Calc.desktop', '[Desktop Entry]\nName=Calculator\n');
  clock.t = 30_000;
  assert.equal(r.resolve({ cgroupId: appId }).app?.name, undefined, 'cached');
  clock.t = 61_000;
  assert.equal(r.resolve({ cgroupId: appId }).app?.name, 'Calculator');
  assert.equal(r.resolve({ cgroupId: appId }).userUnit?.uid, 1000);
});

test('the cache is bounded (least recently used go first)', async () => {
  const r = resolver({ t: 0 }, { maxEntries: 1 });
  await r.resolveAsync({ cgroupId: svcId });
  await r.resolveAsync({ cgroupId: appId });
  assert.equal(r.stats().entries, 1);
});

test('bad queries are refused, naming the field', () => {
  const r = resolver({ t: 0 });
  assert.throws(() => r.resolve({ cgroupId: '12x' }), /cgroupId must be a decimal string like "4294967302", got "12x"/);
  assert.throws(() => r.resolve({ cgroupId: 0 }), /cgroupId must be a positive integer, got 0/);
  assert.throws(() => r.resolve({ pid: 1.5 }), /pid must be a positive integer, got 1.5/);
  assert.throws(() => r.resolve({}), /needs a cgroupId or a pid/);
  assert.throws(() => processTree(0, { procRoot: proc }), /pid must be a positive integer, got 0/);
});

test('a pid that is gone: no identity, no tree, no error', () => {
  const r = resolver({ t: 0 });
  assert.deepEqual(r.resolve({ pid: 99999 }), { cgroupId: null, cgroup: null, unit: null, slice: null, tree: [] });
});

test('the tree is bounded in depth', () => {
  for (let i = 0; i < 40; i++) fakeProc(1000 + i, i === 0 ? 1 : 1000 + i - 1, `p${i}`, '/system.slice/deep.service');
  assert.equal(processTree(1039, { procRoot: proc, maxDepth: 16 }).length, 16);
});

test('owner(): the contract\'s flat shape, one cache lookup once seen, the pid used only for a cgroup not seen yet', () => {
  const r = resolver({ t: 0 });
  const o = r.owner(svcId.toString(), 30); // pid 30 is in web.service (stand-in /proc)
  assert.deepEqual(o, { cgroupPath: '/system.slice/web.service', unit: 'web.service', userUnit: null, slice: 'system.slice', container: null, app: null });
  assert.equal(r.stats().byPid, 1);
  assert.equal(r.owner(svcId.toString(), 30), o, 'the same object from the cache');
  assert.equal(r.owner(svcId.toString(), null), o);
  assert.equal(r.stats().byPid, 1, 'no /proc read for a cached cgroup');
  assert.deepEqual(r.owner(null, 30), r.owner('0', null), 'no cgroup: every field null');
  assert.equal(r.owner(null, 30).unit, null);
});

test('an id a walk begun after it was asked for does not find is gone: no walk for it again', async () => {
  const clock = { t: 0 };
  const r = resolver(clock, { missTtlMs: 0, minRewalkMs: 0 });
  const goneId = mk('system.slice/brief.service');
  fs.rmdirSync(path.join(root, 'system.slice/brief.service'));
  assert.equal((await r.resolveAsync({ cgroupId: goneId })).cgroup, null);
  const walks = r.stats().walks;
  assert.ok(walks >= 1);
  for (let i = 0; i < 3; i++) {
    clock.t += 10_000;
    assert.equal(r.owner(goneId.toString(), null).cgroupPath, null);
    assert.equal((await r.resolveAsync({ cgroupId: goneId })).cgroup, null);
  }
  assert.equal(r.stats().walks, walks, 'never walked for again');
});
