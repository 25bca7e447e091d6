// SPDX-License-Identifier: Apache-2.0
// dns.list / http.list (api/l7.ts over l7/store.ts): validation names the field, a caller
// without the group is scoped to its uid, filters select what was put in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { l7Methods, type L7Api } from '../../../../daemon/src/api/l7.js';
import type { Caller } from '../../../../daemon/src/api/caller.js';
import { AppError } from '../../../../daemon/src/errors.js';
import { ResolverCache } from '../../../../daemon/src/l7/dns/cache.js';
import { L7Store } from '../../../../daemon/src/l7/store.js';
import type { HttpEvent } from '../../../../daemon/src/l7/pipeline.js';
import type { L7Status } from '../../../../daemon/src/contract/l7.js';

const user = (uid: number, seesAll = false): Caller => ({ uid, gid: uid, pid: 1, seesAll, admin: false });

function fixture() {
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache(), maxHttpRequests: 4 });
  const http = (pid: number, uid: number, path: string, status: number, host: string, tls = false): HttpEvent => ({
    pid, uid, method: 'GET', path, status, host, requestBytes: 10, responseBytes: 20, requestStartNs: 1e9, requestEndNs: 1e9, tls, flags: [],
  });
  store.addHttp(http(10, 1000, '/a', 200, 'a.example.test'));
  store.addHttp(http(11, 1001, '/b', 503, 'b.example.test'));
  store.addHttp(http(10, 1000, '/c', 404, 'api.example.test', true));
  store.addDns({ timeMs: 1, pid: 10, uid: 1000, name: 'a.example.test', type: 'A', answers: [], server: '198.18.0.1:53', transport: 'udp' });
  store.addDns({ timeMs: 2, pid: 11, uid: 1001, name: 'b.example.test', type: 'A', answers: [], server: '198.18.0.1:53', transport: 'udp' });
  const api: L7Api = { dnsList: (f) => store.dnsList(f), httpList: (f) => store.httpList(f), status: () => ({}) as L7Status };
  const m = l7Methods(api);
  // The store answers synchronously: validate throws, run returns.
  const http_ = (params: unknown, c: Caller) => m['http.list'].run(m['http.list'].validate(params, c), c) as ReturnType<L7Api['httpList']>;
  const dns = (params: unknown, c: Caller) => m['dns.list'].run(m['dns.list'].validate(params, c), c) as ReturnType<L7Api['dnsList']>;
  return { store, http: http_, dns };
}

test('a caller sees only its own uid; asking for another is refused; the group sees all', async () => {
  const f = fixture();
  assert.deepEqual((f.http({}, user(1000))).requests.map((r) => r.path), ['/c', '/a']);
  assert.deepEqual((f.dns({}, user(1001))).queries.map((q) => q.name), ['b.example.test']);
  assert.throws(() => f.http({ uid: 1001 }, user(1000)), (e: unknown) => e instanceof AppError && e.kind === 'PermissionDenied');
  assert.throws(() => f.dns({ uid: 1000 }, user(1001)), (e: unknown) => e instanceof AppError && e.kind === 'PermissionDenied');
  assert.equal((f.http({}, user(0, true))).requests.length, 3);
  assert.deepEqual((f.http({ uid: 1001 }, user(0, true))).requests.map((r) => r.path), ['/b']);
});

test('filters: host glob, status class or exact, tls, pid, name glob, limit; newest first', async () => {
  const f = fixture();
  const root = user(0, true);
  assert.deepEqual((f.http({ host: '*.example.test', status: '5xx' }, root)).requests.map((r) => r.path), ['/b']);
  assert.deepEqual((f.http({ status: '404' }, root)).requests.map((r) => r.path), ['/c']);
  assert.deepEqual((f.http({ tls: true }, root)).requests.map((r) => r.path), ['/c']);
  assert.deepEqual((f.http({ host: 'API.example.*' }, root)).requests.map((r) => r.path), ['/c']);
  const lim = f.http({ pid: 10, limit: 1 }, root);
  assert.deepEqual([lim.requests.map((r) => r.path), lim.matched, lim.total], [['/c'], 2, 3]);
  assert.deepEqual((f.dns({ name: 'b.*' }, root)).queries.map((q) => q.name), ['b.example.test']);
});

test('bad params are refused with the field named', () => {
  const f = fixture();
  for (const [params, field] of [[{ status: '6xx' }, 'params.status'], [{ status: 'abc' }, 'params.status'], [{ limit: 0 }, 'params.limit'],
    [{ host: 'a b' }, 'params.host'], [{ tls: 'yes' }, 'params.tls'], [{ method: 'get' }, 'params.method'], [{ nope: 1 }, 'params.nope']] as const) {
    assert.throws(() => f.http(params, user(0, true)), (e: unknown) => e instanceof AppError && e.kind === 'InvalidParams' && JSON.stringify(e.data).includes(field), JSON.stringify(params));
  }
  assert.throws(() => f.dns({ name: 'a;b' }, user(0, true)), (e: unknown) => e instanceof AppError && e.kind === 'InvalidParams');
});

test('the store is bounded: the oldest requests go first', async () => {
  const f = fixture();
  for (let i = 0; i < 3; i++) f.store.addHttp({ pid: 12, uid: 1002, method: 'GET', path: `/n${i}`, requestBytes: 1, responseBytes: 1, requestStartNs: 2e9, requestEndNs: 2e9, tls: false, flags: [] });
  const all = f.http({}, user(0, true));
  assert.deepEqual([all.total, all.requests.map((r) => r.path)], [4, ['/n2', '/n1', '/n0', '/c']]);
});
