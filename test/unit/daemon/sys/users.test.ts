// SPDX-License-Identifier: Apache-2.0
// Group names resolve through the name service, as `getent group` (the independent view)
// resolves them: every group it lists, and none it does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { groupGid } from '../../../../daemon/src/sys/users.js';
import { getgrnamR } from '../../../../daemon/src/sys/libc.js';

test('every group getent lists has the gid getent gives it', () => {
  const lines = execFileSync('getent', ['group'], { encoding: 'utf8' }).trim().split('\n');
  assert.ok(lines.length > 5);
  for (const l of lines) {
    const [name, , gid] = l.split(':');
    assert.equal(getgrnamR(name!), Number(gid), l);
  }
  assert.equal(groupGid('root'), 0);
});

test('an unknown group is null, not an error; the answer is cached for a moment', () => {
  assert.equal(getgrnamR('no-such-group-ebpfmon-x'), null);
  assert.equal(groupGid('no-such-group-ebpfmon-x', 1000), null);
  assert.equal(groupGid('root', 1000), 0);
});
