// SPDX-License-Identifier: Apache-2.0
// The host identity from the files the test writes. (Units and containers come from the
// identity service: test/unit/daemon/identity/.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostIdentity } from '../../../../daemon/src/export/host.js';

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
