// SPDX-License-Identifier: Apache-2.0
// A reload names every key it cannot apply: nested keys, arrays, keys added or removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changedKeys, RESTART_SECTIONS } from '../../../../daemon/src/config/changes.js';
import { loadConfig } from '../../../../daemon/src/config/load.js';

test('changed keys under the restart-only sections, dotted; other sections ignored', () => {
  const a = { logLevel: 'info', history: { retentionDays: 30, maxBytes: 1 }, export: { clickhouse: { batchRows: 10, url: '' } }, metrics: { listen: '', topProcesses: 50 } };
  const b = { logLevel: 'debug', history: { retentionDays: 7, maxBytes: 1 }, export: { clickhouse: { batchRows: 10, url: 'http://h:8123' } }, metrics: { listen: '', topProcesses: 20 } };
  assert.deepEqual(changedKeys(a, b, RESTART_SECTIONS), ['history.retentionDays', 'export.clickhouse.url', 'metrics.topProcesses']);
  assert.deepEqual(changedKeys(a, structuredClone(a), RESTART_SECTIONS), []);
  assert.deepEqual(changedKeys({ x: { l: [1, 2] } }, { x: { l: [1, 3], n: 1 } }, ['x']), ['x.l', 'x.n']);
});

test('the daemon\'s own configuration: an unchanged reload names nothing', () => {
  const c = loadConfig({ env: {} }).config;
  assert.deepEqual(changedKeys(c, structuredClone(c), RESTART_SECTIONS), []);
});
