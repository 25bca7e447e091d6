// SPDX-License-Identifier: Apache-2.0
// The spool file: written atomically with mode 0600, taken (read and removed) once; a file
// that is not a spool is moved aside with an error naming it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SPOOL_VERSION, takeSpool, writeSpool, type SpoolContent } from '../../../../daemon/src/export/spool.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-spool-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('written 0600, taken once, then gone with any temp file a cut-short write left', () => {
  const file = path.join(dir, 'sub', 'spool.json');
  const c: SpoolContent = { version: SPOOL_VERSION, savedAt: new Date().toISOString(), table: 'e.f', machineId: 'm', rows: ['{"a":1}', '{"a":2}'], uncertainRows: 1, tracker: { generation: 3, flows: [] } };
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(`${file}.999.tmp`, '{"cut": '); // a write the stop deadline cut short
  writeSpool(file, c);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(takeSpool(file), c);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), [], 'no temp file left, the spool taken');
  assert.equal(fs.existsSync(file), false);
  assert.equal(takeSpool(file), null, 'none the second time');
});

test('a file that is not a spool: an error naming it, and it is moved aside', () => {
  const file = path.join(dir, 'bad.json');
  fs.writeFileSync(file, '{"version": 99}');
  assert.throws(() => takeSpool(file), (e: Error) => e.message.includes(file) && /not a version 1 spool/.test(e.message));
  assert.equal(fs.existsSync(file), false);
  assert.equal(fs.existsSync(`${file}.bad`), true);
});
