// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl` loads no native code: not koffi, not the daemon's libc or libbpf bindings.
// Each command runs in a child process whose every resolved module is recorded (a Node
// resolve hook), against an in-process daemon over a fake monitor: the compiled module tree
// (main.js), and the one-file bundle made of it (client/bundle.mjs), which the package runs,
// whose inputs its build recorded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { buildDaemon, type Daemon } from '../../../daemon/src/app.js';
import { BUILD, CTL_MAIN, CTL_TREE_MAIN } from '../../helpers/daemon.js';
import { ROOT } from '../../helpers/cc.js';
import { FakeMonitor, flow } from '../../helpers/fake-monitor.js';

const TRAP = path.join(ROOT, 'test/fixtures/node/module-trap.mjs');

function run(main: string, args: string[], log: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', TRAP, main, ...args], { env: { ...process.env, MODULE_TRAP_LOG: log }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the client module graph', () => {
  let dir: string;
  let daemon: Daemon;
  const fake = new FakeMonitor();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-mods-'));
    fake.flows = [flow({ pid: 4242 })];
    daemon = buildDaemon({
      monitor: fake, bus: fake.bus, logger: pino({ level: 'silent' }), version: '9.9.9', socketPath: path.join(dir, 's.sock'),
      limits: { maxClients: 8, maxMessageBytes: 1 << 20, maxSubscriptionsPerClient: 2, subscriberQueue: 100 },
      groups: { group: 'ebpfmon', adminGroup: 'ebpfmon-admin' }, identify: () => ({ uid: 0, gid: 0, pid: 1, seesAll: true, admin: true }),
    });
    await daemon.start();
  });
  after(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const args of [['--help'], ['flows', '--json'], ['status', '--json']]) {
    test(`ebpfmonctl ${args.join(' ')} loads no koffi and none of the daemon beyond the contract`, async () => {
      const log = path.join(dir, `${args[0]}.log`);
      const r = await run(CTL_TREE_MAIN, args[0] === '--help' ? args : [...args, '--socket', path.join(dir, 's.sock')], log);
      assert.equal(r.code, 0, r.stderr);
      const loaded = fs.readFileSync(log, 'utf8').trim().split('\n');
      assert.ok(loaded.some((u) => u.endsWith('/client/src/main.js')), 'the hook saw the client load');
      if (args[0] === 'flows') assert.equal((JSON.parse(r.stdout) as Array<{ pid: number }>)[0]!.pid, 4242, 'and the command worked');
      assert.deepEqual(loaded.filter((u) => /koffi/.test(u)), [], 'no koffi');
      const daemonModules = loaded.filter((u) => u.includes('/daemon/src/') && !u.includes('/daemon/src/contract/') && !u.endsWith('/daemon/src/version.js'));
      assert.deepEqual(daemonModules, [], 'only the contract of the daemon');
    });
  }

  test('the bundle: made of the client and the daemon\'s contract only, one module at run time, and it works', async () => {
    const meta = JSON.parse(fs.readFileSync(path.join(BUILD, 'client/src/ebpfmonctl.meta.json'), 'utf8')) as { inputs: string[] };
    assert.ok(meta.inputs.includes('build/js/client/src/main.js') && meta.inputs.includes('build/js/client/src/commands/flows.js'), 'the bundle was made of the compiled client');
    assert.deepEqual(meta.inputs.filter((i) => /koffi/.test(i)), [], 'no koffi in the bundle');
    assert.deepEqual(meta.inputs.filter((i) => i.includes('/daemon/src/') && !i.includes('/daemon/src/contract/') && !i.endsWith('/daemon/src/version.js')), [], 'only the contract of the daemon');
    assert.deepEqual(meta.inputs.filter((i) => i.includes('/client/src/ui/run.js')), [], 'the ui server stays out (loaded by `ebpfmonctl ui` only)');
    const log = path.join(dir, 'bundle.log');
    const r = await run(CTL_MAIN, ['flows', '--json', '--socket', path.join(dir, 's.sock')], log);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as Array<{ pid: number }>)[0]!.pid, 4242, 'the bundle answered from the daemon');
    const loaded = fs.readFileSync(log, 'utf8').trim().split('\n').filter((u) => u.startsWith('file:'));
    assert.deepEqual(loaded.map((u) => path.basename(u)), ['ebpfmonctl.js'], `one module loaded through the ES loader: ${loaded.join(', ')}`);
    const version = await run(CTL_MAIN, ['--version'], path.join(dir, 'version.log'));
    assert.equal(version.stdout.trim(), (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version, 'the bundle finds package.json for its version');
  });
});
