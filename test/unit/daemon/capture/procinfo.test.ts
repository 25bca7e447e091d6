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
