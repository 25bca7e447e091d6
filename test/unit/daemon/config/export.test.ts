// SPDX-License-Identifier: Apache-2.0
// metrics.* and export.clickhouse.* through the daemon's own loader: defaults (both off),
// and every bad value refused with a line naming the key and what was expected.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../../daemon/src/config/load.js';
import { readCredentials } from '../../../../daemon/src/export/credentials.js';
import { ClickHouseExporter } from '../../../../daemon/src/export/clickhouse.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-xcfg-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (o: object) => {
  const f = path.join(dir, `${n++}.json`);
  fs.writeFileSync(f, JSON.stringify(o));
  return f;
};
const fails = (o: object, re: RegExp, env: Record<string, string> = {}) =>
  assert.throws(() => loadConfig({ file: file(o), env }), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(o));

test('both exports are off by default', () => {
  const c = loadConfig({ file: file({}), env: {} }).config;
  assert.equal(c.metrics.listen, '');
  assert.equal(c.metrics.topProcesses, 50);
  assert.equal(c.export.clickhouse.url, '');
  assert.deepEqual([c.export.clickhouse.database, c.export.clickhouse.table, c.export.clickhouse.cluster], ['ebpfmon', 'flows', '']);
});

test('valid values from the file and the environment', () => {
  const c = loadConfig({
    file: file({ metrics: { listen: '[::1]:9417' }, export: { clickhouse: { url: 'https://ch.example:8443/', cluster: 'fleet', batchRows: 500 } } }),
    env: { EBPFMON_METRICS_TOP_PROCESSES: '7', EBPFMON_EXPORT_CLICKHOUSE_COMPRESS: 'false' },
  }).config;
  assert.equal(c.metrics.listen, '[::1]:9417');
  assert.equal(c.metrics.topProcesses, 7);
  assert.equal(c.export.clickhouse.batchRows, 500);
  assert.equal(c.export.clickhouse.compress, false);
});

test('bad values name the key and what was expected', () => {
  fails({ metrics: { listen: '9417' } }, /metrics\.listen: must be "ADDRESS:PORT"/);
  fails({ metrics: { listen: 'myhost:9417' } }, /metrics\.listen/);
  fails({ metrics: { listen: '127.0.0.1:70000' } }, /metrics\.listen/);
  fails({ metrics: { topProcesses: 0 } }, /metrics\.topProcesses: must be an integer from 1 to 1000/);
  fails({ export: { clickhouse: { url: 'ftp://x' } } }, /export\.clickhouse\.url: must be an http:\/\/ or https:\/\/ URL/);
  fails({ export: { clickhouse: { url: 'http://u:p@ch:8123' } } }, /export\.clickhouse\.url: must not carry credentials: put "USER:PASSWORD" in export\.clickhouse\.credentialsFile/);
  fails({ export: { clickhouse: { table: 'flows; DROP TABLE x' } } }, /export\.clickhouse\.table: must be a ClickHouse identifier/);
  fails({ export: { clickhouse: { credentialsFile: 'relative' } } }, /export\.clickhouse\.credentialsFile: must be an absolute path/);
  fails({ export: { clickhouse: { bufferRows: 0 } } }, /export\.clickhouse\.bufferRows/);
  fails({}, /environment EBPFMON_EXPORT_CLICKHOUSE_BATCH_ROWS/, { EBPFMON_EXPORT_CLICKHOUSE_BATCH_ROWS: 'many' });
});

test('the credentials file: USER:PASSWORD (the password may hold colons); anything else is refused by name', () => {
  const f = path.join(dir, 'cred');
  fs.writeFileSync(f, 'ebpfmon:pa:ss word\n');
  assert.deepEqual(readCredentials(f), { user: 'ebpfmon', password: 'pa:ss word' });
  fs.writeFileSync(f, 'justauser\n');
  assert.throws(() => readCredentials(f), /export\.clickhouse\.credentialsFile: .*cred must hold "USER:PASSWORD"/);
  assert.throws(() => readCredentials(path.join(dir, 'absent')), /export\.clickhouse\.credentialsFile: cannot read/);
  const opts = { url: 'http://127.0.0.1:1', database: 'd', table: 't', batchRows: 1, flushIntervalMs: 1, bufferRows: 1, compress: false, timeoutMs: 1 };
  assert.throws(() => new ClickHouseExporter({ ...opts, table: 'a-b' }), /export\.clickhouse\.table: "a-b" is not a ClickHouse identifier/);
  assert.throws(() => new ClickHouseExporter({ ...opts, bufferRows: 0 }), /bufferRows must be a positive integer/);
});
