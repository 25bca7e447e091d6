// SPDX-License-Identifier: Apache-2.0
// describeProcess(): /proc while the process lives, the process table's record once it is
// gone. Truth: a child this test spawned (its executable and arguments as given to spawn),
// read while it runs and again after it exited and was reaped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describeProcess, type KnownProcess } from '../../../../daemon/src/capture/procinfo.js';

test('a live process is described from /proc, a gone one from what the table kept, an unknown gone one not at all', async () => {
  const args = [process.execPath, '-e', 'setTimeout(() => {}, 60000)', 'procinfo-marker'];
  const child = spawn(args[0]!, args.slice(1), { stdio: 'ignore' });
  const pid = child.pid!;
  // What a table kept from the exec event: deliberately not what /proc says (the live read must win).
  const kept: KnownProcess = { ppid: process.pid, uid: 4242, exe: '/kept/exe', args: ['kept', 'args'] };
  const table = new Map<number, KnownProcess>([[pid, kept]]);
  const describe = describeProcess((p) => table.get(p));
  try {
    await new Promise((r) => setTimeout(r, 100)); // exec done: /proc/PID/exe is node's
    const live = describe(pid)!;
    assert.equal(live.cmd, fs.realpathSync(process.execPath));
    assert.deepEqual(live.args, args);
    assert.equal(live.uid, process.getuid!());
    assert.equal(live.ppid, process.pid);
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  assert.equal(fs.existsSync(`/proc/${pid}`), false, 'the child is gone and reaped');
  const gone = describe(pid)!;
  assert.deepEqual({ cmd: gone.cmd, args: gone.args, uid: gone.uid, ppid: gone.ppid }, { cmd: '/kept/exe', args: ['kept', 'args'], uid: 4242, ppid: process.pid });
  // The parent (this process) lives: described from /proc.
  assert.equal(gone.parentCmd, fs.realpathSync(process.execPath));
  table.delete(pid);
  assert.equal(describe(pid), null, 'neither /proc nor the table knows it');
});

test('the identity service names the cgroup: the live process\'s now, a gone one\'s from the cgroup id of its exec', async () => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const pid = child.pid!;
  const asked: Array<[string | null, number | null]> = [];
  const container = { runtime: 'containerd' as const, id: 'c'.repeat(64), name: 'app', podUid: '0b7632a2-a56e-4278-987a-22de18008dbe', podName: 'shop-7d9f', namespace: 'prod' };
  const names = {
    // The live child's cgroup id as the service would read it; a different one for its exec.
    cgroupIdOfPid: (p: number) => (p === pid ? '1111' : null),
    of: (cgroupId: string | null, p: number | null) => {
      asked.push([cgroupId, p]);
      return cgroupId === '1111'
        ? { cgroupPath: '/kubepods.slice/x/cri-containerd-c.scope', unit: 'cri-containerd-c.scope', userUnit: null, slice: 'x', container, app: null }
        : { cgroupPath: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.App-1.scope', unit: 'user@1000.service', userUnit: 'app-flatpak-org.example.App-1.scope', slice: 'user-1000.slice', container: null, app: { kind: 'flatpak' as const, id: 'org.example.App' } };
    },
  };
  const table = new Map<number, KnownProcess>([[pid, { ppid: process.pid, uid: 1000, exe: '/usr/bin/app', args: ['app'], cgroupId: '2222' }]]);
  const describe = describeProcess((p) => table.get(p), names);
  try {
    await new Promise((r) => setTimeout(r, 100));
    const live = describe(pid)!;
    assert.deepEqual(asked, [['1111', pid]], 'the live process: the cgroup id it has now, with its pid');
    assert.deepEqual({ unit: live.unit, cgroup: live.cgroup, container: live.container, pod: live.pod, app: live.app }, {
      unit: 'cri-containerd-c.scope', cgroup: '/kubepods.slice/x/cri-containerd-c.scope', container: { id: 'c'.repeat(64), name: 'app' },
      pod: { name: 'shop-7d9f', namespace: 'prod', uid: '0b7632a2-a56e-4278-987a-22de18008dbe' }, app: null,
    });
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  const gone = describe(pid)!;
  assert.deepEqual(asked.at(-1), ['2222', null], 'a gone process: the cgroup id its exec had, no pid');
  assert.deepEqual({ unit: gone.unit, cgroup: gone.cgroup, container: gone.container, pod: gone.pod, app: gone.app, cmd: gone.cmd }, {
    unit: 'app-flatpak-org.example.App-1.scope', cgroup: '/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.example.App-1.scope',
    container: null, pod: null, app: 'org.example.App', cmd: '/usr/bin/app',
  }, 'the most specific unit (the user manager\'s), the app');
  // A gone process whose cgroup the table does not know (its exec unseen, and the start-up
  // scan could not read it): no cgroup to name.
  table.set(pid, { ppid: process.pid, uid: 1000, exe: '/usr/bin/app', args: ['app'], cgroupId: null });
  const n = asked.length;
  const bare = describe(pid)!;
  assert.equal(asked.length, n, 'the service is not asked');
  assert.deepEqual({ unit: bare.unit, cgroup: bare.cgroup }, { unit: null, cgroup: null });
});
