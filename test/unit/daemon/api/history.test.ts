// SPDX-License-Identifier: Apache-2.0
// history.query at the API boundary: every bad param is InvalidParams naming the field,
// another user's history is PermissionDenied (not silently narrowed), an unprivileged
// caller's query reaches the store scoped to its uid, and failures of the store reach the
// client as contract errors (NotAvailable, Busy), never Internal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { historyMethods, historyQuery, type HistoryApi } from '../../../../daemon/src/api/history.js';
import { toApiError } from '../../../../daemon/src/api/errors.js';
import { AppError } from '../../../../daemon/src/errors.js';
import { HistoryError } from '../../../../daemon/src/history/history.js';
import type { HistoryQuery, HistoryResult, HistoryScope, HistoryStatus } from '../../../../daemon/src/history/types.js';

const ROOT = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
const USER = { uid: 1234, gid: 1234, pid: 2, seesAll: false, admin: false };
const NOW = Date.parse('2026-12-01T12:00:00Z');

function kindOf(fn: () => unknown): { kind: string; field?: unknown } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, String(err));
    return { kind: err.kind, field: err.data?.field };
  }
  return { kind: 'none' };
}

test('bad params are InvalidParams naming the field', () => {
  const cases: Array<[unknown, string]> = [
    [[1], 'params'],
    [{ nope: 1 }, 'params.nope'],
    [{ since: 'yesterday' }, 'params.since'],
    [{ since: -5 }, 'params.since'],
    [{ since: '99999999999d' }, 'params.since'],
    [{ since: `${'9'.repeat(400)}d` }, 'params.since'],
    [{ until: 1e300 }, 'params.until'],
    [{ since: '0001-01-01' }, 'params.since'],
    [{ until: '2026-13-45' }, 'params.until'],
    [{ since: '1h', until: '2h' }, 'params.until'],
    [{ pid: 1.5 }, 'params.pid'],
    [{ pid: 'x' }, 'params.pid'],
    [{ comm: '' }, 'params.comm'],
    [{ comm: 7 }, 'params.comm'],
    [{ user: 'no-such-user-here' }, 'params.user'],
    [{ user: -1 }, 'params.user'],
    [{ unit: {} }, 'params.unit'],
    [{ remote: '300.1.1.1' }, 'params.remote'],
    [{ remote: '10.0.0.0/33' }, 'params.remote'],
    [{ name: null }, 'params.name'],
    [{ by: 'week' }, 'params.by'],
    [{ limit: 0 }, 'params.limit'],
    [{ limit: 10_001 }, 'params.limit'],
  ];
  for (const [raw, field] of cases) assert.deepEqual(kindOf(() => historyQuery(raw, ROOT, NOW)), { kind: 'InvalidParams', field }, JSON.stringify(raw));
});

test('good params become a query; durations count back from now', () => {
  const { q, scope } = historyQuery({ since: '2h', until: NOW - 60_000, comm: 'curl', remote: '198.18.0.0/15', by: 'remote', limit: 5 }, ROOT, NOW);
  assert.equal(scope, 'all');
  assert.deepEqual({ since: q.since, until: q.until, comm: q.comm, by: q.by, limit: q.limit, prefix: q.remote?.prefix }, { since: NOW - 7_200_000, until: NOW - 60_000, comm: 'curl', by: 'remote', limit: 5, prefix: 15 });
  assert.deepEqual(historyQuery({ user: 'root' }, ROOT, NOW).q.uid, 0);
  assert.deepEqual(historyQuery({ user: '0' }, ROOT, NOW).q.uid, 0);
});

test('scoping: an unprivileged caller sees its own uid; naming another is PermissionDenied', () => {
  const own = historyQuery({}, USER, NOW);
  assert.deepEqual([own.q.uid, own.scope], [USER.uid, { uid: USER.uid }]);
  assert.deepEqual(historyQuery({ user: USER.uid }, USER, NOW).scope, { uid: USER.uid });
  assert.deepEqual(kindOf(() => historyQuery({ user: 0 }, USER, NOW)), { kind: 'PermissionDenied', field: 'params.user' });
  assert.deepEqual(historyQuery({ user: 0 }, ROOT, NOW).q.uid, 0);
});

test('the store gets the scoped query; its failures are NotAvailable or Busy; disabled history is NotAvailable', async () => {
  const seen: Array<[HistoryQuery, HistoryScope]> = [];
  let fail: Error | null = null;
  const store: HistoryApi = {
    query: async (q, scope) => {
      seen.push([q, scope]);
      if (fail) throw fail;
      return { since: '', until: '', by: null, flows: [], totals: { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 }, matched: 0, truncated: false, source: 'records', recordsSince: null } satisfies HistoryResult;
    },
    status: () => ({}) as HistoryStatus,
  };
  const m = historyMethods(store)['history.query'];
  await m.run(m.validate({ since: '1h' }, USER), USER);
  assert.deepEqual([seen[0]![0].uid, seen[0]![1]], [USER.uid, { uid: USER.uid }]);
  for (const [err, kind] of [[new HistoryError('corrupt', 'a damaged block'), 'NotAvailable'], [new HistoryError('worker', 'no thread'), 'Busy'], [new Error('anything else'), 'NotAvailable']] as const) {
    fail = err;
    const got = await Promise.resolve().then(() => m.run(m.validate({}, ROOT), ROOT)).then(() => null, (e: unknown) => e);
    assert.ok(got instanceof AppError && got.kind === kind, `${err.message}: ${String(got)}`);
    assert.equal(toApiError(got).internal, false);
  }
  const off = historyMethods(null)['history.query'];
  assert.deepEqual(kindOf(() => off.validate({}, ROOT)), { kind: 'NotAvailable', field: undefined });
});
