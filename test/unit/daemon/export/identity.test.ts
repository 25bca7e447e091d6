// SPDX-License-Identifier: Apache-2.0
// Unit and container from cgroup paths as systemd, Docker, containerd, CRI-O, podman,
// LXC and systemd-nspawn lay them out (the paths below are their documented layouts), and
// the host identity from the files the test writes.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroupPathOf, hostIdentity, identityFromCgroupPath } from '../../../../daemon/src/export/identity.js';

const id64 = 'f2c1a0b9e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffeedd';

test('systemd units: the deepest service; login sessions by their user slice; scopes never', () => {
  const cases: Array<[string, string, string]> = [
    ['/system.slice/nginx.service', 'nginx.service', ''],
    ['/system.slice/system-getty.slice/getty@tty1.service', 'getty@tty1.service', ''],
    ['/user.slice/user-1000.slice/session-3.scope', 'user-1000.slice', ''],
    ['/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope', 'user@1000.service', ''],
    ['/', '', ''],
    ['', '', ''],
    ['/init.scope', '', ''],
  ];
  for (const [p, unit, container] of cases) assert.deepEqual(identityFromCgroupPath(p), { unit, container }, p);
});

test('containers: short id (12 hex) for docker, containerd, CRI-O, podman and cgroupfs layouts; names for LXC and nspawn', () => {
  const short = id64.slice(0, 12);
  const cases: Array<[string, string, string]> = [
    [`/system.slice/docker-${id64}.scope`, '', short],
    [`/docker/${id64}`, '', short],
    [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1d2c3b4a_5e6f.slice/cri-containerd-${id64}.scope`, '', short],
    [`/kubepods/burstable/pod1d2c3b4a-5e6f-7081-92a3-b4c5d6e7f809/${id64}`, '', short],
    [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/crio-${id64}.scope`, '', short],
    [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${id64}.scope/container`, 'user@1000.service', short],
    ['/lxc.payload.web1/system.slice/nginx.service', 'nginx.service', 'web1'],
    ['/machine.slice/machine-build\\x2dbox.scope/payload/system.slice/sshd.service', 'sshd.service', 'build-box'],
  ];
  for (const [p, unit, container] of cases) assert.deepEqual(identityFromCgroupPath(p), { unit, container }, p);
});

test('this process\'s cgroup path is read from /proc; a gone pid gives ""', () => {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8');
  const expected = /^0::(.*)$/m.exec(line)?.[1] ?? /^\d+:name=systemd:(.*)$/m.exec(line)?.[1] ?? '';
  assert.equal(cgroupPathOf(process.pid), expected);
  assert.equal(cgroupPathOf(0x7ffffffe), '');
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-id-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('host identity: the first valid machine id, the host name', () => {
  const bad = path.join(dir, 'bad');
  const good = path.join(dir, 'good');
  fs.writeFileSync(bad, 'not-an-id\n');
  fs.writeFileSync(good, '0123456789abcdef0123456789abcdef\n');
  assert.deepEqual(hostIdentity([path.join(dir, 'absent'), bad, good]), { hostName: os.hostname(), machineId: '0123456789abcdef0123456789abcdef' });
  assert.equal(hostIdentity([bad]).machineId, '');
});
