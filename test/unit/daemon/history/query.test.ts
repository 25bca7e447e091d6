// SPDX-License-Identifier: Apache-2.0
// history.query params: what is accepted, and every refusal names the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HistoryParamError, parseHistoryQuery, parseTime, uidFromPasswd } from '../../../../daemon/src/history/query.js';

const NOW = Date.UTC(2026, 10, 30, 15, 0, 0);
const users = (n: string) => (n === 'alice' ? 1000 : null);
const parse = (p: object) => parseHistoryQuery(p as never, NOW, users);

function refuses(p: object, field: string, re: RegExp) {
  assert.throws(() => parse(p), (e: unknown) => e instanceof HistoryParamError && e.field === field && re.test(e.message), JSON.stringify(p));
}

test('defaults: the last 24 hours, 100 rows, no grouping', () => {
  assert.deepEqual(parse({}), { since: NOW - 86_400_000, until: NOW, limit: 100 });
});

test('times: durations, ISO date-times, epoch ms', () => {
  assert.equal(parseTime('since', '90m', NOW), NOW - 90 * 60_000);
  assert.equal(parseTime('since', '7d', NOW), NOW - 7 * 86_400_000);
  assert.equal(parseTime('since', '2026-11-30T14:00:00Z', NOW), Date.UTC(2026, 10, 30, 14));
  assert.equal(parseTime('since', '2026-11-30T14:00:00+02:00', NOW), Date.UTC(2026, 10, 30, 12));
  assert.equal(parseTime('since', 1_700_000_000_000, NOW), 1_700_000_000_000);
  refuses({ since: 'yesterday' }, 'since', /not an ISO 8601 date-time/);
  refuses({ since: '1' }, 'since', /not an ISO 8601/);
  refuses({ until: -5 }, 'until', /must be a time/);
  refuses({ since: '1h', until: '2h' }, 'until', /later than since/);
});

test('filters and grouping', () => {
  const q = parse({ pid: 42, comm: 'curl', user: 'alice', unit: '*.service', remote: '203.0.113.77/24', name: '*.example.com', by: 'remote', limit: 5 });
  assert.deepEqual({ ...q, remote: { ...q.remote, bytes: [...q.remote!.bytes] } }, {
    since: NOW - 86_400_000, until: NOW, pid: 42, comm: 'curl', uid: 1000, unit: '*.service',
    remote: { family: 4, bytes: [203, 0, 113, 0], prefix: 24 }, name: '*.example.com', by: 'remote', limit: 5,
  });
  assert.equal(parse({ user: 33 }).uid, 33);
  assert.equal(parse({ user: '33' }).uid, 33);
  assert.deepEqual([...parse({ remote: '2001:db8:ffff::1/33' }).remote!.bytes], [0x20, 0x01, 0x0d, 0xb8, 0x80, ...Array(11).fill(0)]);
  assert.equal(parse({ remote: '2001:db8::1' }).remote!.prefix, 128);
});

test('refusals name the field', () => {
  refuses({ pid: -1 }, 'pid', /process id/);
  refuses({ pid: 1.5 }, 'pid', /process id/);
  refuses({ user: 'mallory' }, 'user', /no user named "mallory"/);
  refuses({ remote: '300.1.1.1' }, 'remote', /not an address or a CIDR prefix/);
  refuses({ remote: '10.0.0.0/33' }, 'remote', /CIDR/);
  refuses({ by: 'week' }, 'by', /process, remote, name, hour, day/);
  refuses({ limit: 0 }, 'limit', /1 to 10000/);
  refuses({ limit: 10_001 }, 'limit', /1 to 10000/);
  refuses({ comm: '' }, 'comm', /command name/);
  refuses({ color: 'red' }, 'color', /unknown parameter/);
});

test('user names from a passwd text', () => {
  assert.equal(uidFromPasswd('alice', 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n'), 1000);
  assert.equal(uidFromPasswd('bob', 'root:x:0:0::/root:/bin/sh\n'), null);
});
