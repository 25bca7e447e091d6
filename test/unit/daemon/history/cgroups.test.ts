// SPDX-License-Identifier: Apache-2.0
// cgroup id -> systemd unit, on a directory tree the test builds (ids are inode numbers,
// as on cgroup v2), and the cgroup2 mount found in a mounts table.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Root, CgroupUnits, unitOfPath } from '../../../../daemon/src/history/cgroups.js';

test('the unit is the deepest service or scope on the path', () => {
  assert.equal(unitOfPath('system.slice/nginx.service'), 'nginx.service');
  assert.equal(unitOfPath('user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope'), 'app-firefox-1234.scope');
  assert.equal(unitOfPath('user.slice/user-1000.slice/user@1000.service/app.slice'), 'user@1000.service');
  assert.equal(unitOfPath('system.slice/docker-0123abcd.scope/init'), 'docker-0123abcd.scope');
  assert.equal(unitOfPath(''), null);
  assert.equal(unitOfPath('init.scope'), 'init.scope');
});

test('the cgroup2 mount: a hybrid layout, a unified one, none', () => {
  assert.equal(cgroup2Root('tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n'), '/sys/fs/cgroup/unified');
  assert.equal(cgroup2Root('cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n'), '/sys/fs/cgroup');
  assert.equal(cgroup2Root('proc /proc proc rw 0 0\n'), null);
});

test('ids resolve by inode; an id that appears later is found by one rescan, at most every rescanMs', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-cg-'));
  after(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'system.slice/sshd.service'), { recursive: true });
  const ino = (rel: string) => fs.statSync(path.join(root, rel), { bigint: true }).ino.toString();
  let now = 0;
  const u = new CgroupUnits(root, { rescanMs: 5000, maxDirs: 1000, now: () => now });
  assert.equal(u.unit(ino('system.slice/sshd.service')), 'sshd.service');
  assert.equal(u.unit(ino('system.slice')), null);
  fs.mkdirSync(path.join(root, 'system.slice/cron.service'));
  now = 1000;
  assert.equal(u.unit(ino('system.slice/cron.service')), null, 'no rescan within rescanMs');
  now = 6000;
  assert.equal(u.unit(ino('system.slice/cron.service')), 'cron.service');
  assert.equal(u.unit(null), null);
  assert.equal(new CgroupUnits(null).unit('5'), null, 'no cgroup2: no units');
});
