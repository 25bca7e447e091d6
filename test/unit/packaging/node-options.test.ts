// SPDX-License-Identifier: Apache-2.0
// The daemon's Node options are given by three launchers: /usr/sbin/ebpfmon (the package's,
// which systemd and the container image run), `npm start`, and the tests' and benches'
// startDaemon (test/helpers/daemon.ts). They must be the same options, or the benches
// measure a daemon no user runs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAUNCHER_NODE_ARGS } from '../../helpers/daemon.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');

/** The words between `node` and the daemon's bundle (ebpfmon.js) in a command line. */
function optionsOf(command: string, what: string): string[] {
  const m = /(?:^|\s)(?:\/usr\/bin\/)?node\s+(.*?)\s*(?:\S*\/)?build\/js\/daemon\/src\/ebpfmon\.js/.exec(command);
  assert.ok(m, `${what}: no "node ... build/js/daemon/src/ebpfmon.js" in ${JSON.stringify(command)}`);
  return m[1]!.split(/\s+/).filter(Boolean);
}

describe('the daemon\'s Node options', () => {
  it('packaging/bin/ebpfmon (systemd, the container image) gives the options the tests use', () => {
    const script = fs.readFileSync(path.join(root, 'packaging/bin/ebpfmon'), 'utf8');
    const exec = script.split('\n').find((l) => l.startsWith('exec '));
    assert.ok(exec, 'the launcher ends in exec (the pid systemd watches is node itself)');
    assert.deepEqual(optionsOf(exec, 'packaging/bin/ebpfmon'), [...LAUNCHER_NODE_ARGS]);
  });

  it('`npm start` gives the same options', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.deepEqual(optionsOf(pkg.scripts.start!, 'npm start'), [...LAUNCHER_NODE_ARGS]);
  });

  it('this Node starts with them (a misspelt option stops it: "bad option")', () => {
    const r = spawnSync(process.execPath, [...LAUNCHER_NODE_ARGS, '-e', '0'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
  });
});
