// SPDX-License-Identifier: Apache-2.0
// monitor/rowcache.ts: a kept row is handed out again only when every input it shows is
// the same (each input changed alone must make it rebuild), per query shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProcessRowCache, type RowInputs } from '../../../../daemon/src/monitor/rowcache.js';
import type { ProcessTraffic } from '../../../../daemon/src/monitor/flows.js';
import type { OwnerIdentity } from '../../../../daemon/src/contract/identity.js';

const inputs = (): RowInputs => ({
  pid: 7, comm: 'curl', uid: 1000, exe: '/usr/bin/curl', cgroupId: '42', flows: 3, openFlows: 2, txBytes: 100, rxBytes: 200, txPackets: 4, rxPackets: 5,
  http: { requests: 1, clientErrors: 0, serverErrors: 0, requestBytes: 10, responseBytes: 20 },
});
const ident = (): OwnerIdentity => ({ cgroupPath: '/system.slice/x.service', unit: 'x.service', userUnit: null, slice: 'system.slice', container: null, app: null });
const remotes = () => [{ addr: '198.18.0.1', flows: 2, txBytes: 60, rxBytes: 100 }, { addr: '198.18.0.2', flows: 1, txBytes: 40, rxBytes: 100 }];
const MS = 1_764_000_000_000;

function row(t: RowInputs, id: OwnerIdentity, ms: number | null, rem: ReturnType<typeof remotes> | null): ProcessTraffic {
  return { ...t, lastSeenAt: ms === null ? null : new Date(ms).toISOString(), places: [], ...id, ...(rem ? { remotes: rem } : {}) };
}

test('a row is handed out again only while every input is the same', () => {
  for (const withRemotes of [false, true]) {
    const c = new ProcessRowCache<ProcessTraffic>();
    const m = c.shape(undefined, withRemotes);
    const r = row(inputs(), ident(), MS, withRemotes ? remotes() : null);
    c.keep(m, 7, r, MS);
    assert.equal(c.reuse(m, 7, inputs(), MS, ident(), withRemotes ? remotes() : null), r, 'same inputs: the same object');
    assert.equal(c.reuse(m, 8, inputs(), MS, ident(), withRemotes ? remotes() : null), null, 'another owner');
    assert.equal(c.reuse(m, 7, inputs(), MS + 1, ident(), withRemotes ? remotes() : null), null, 'lastSeenAt 1 ms later');
    assert.equal(c.reuse(m, 7, inputs(), null, ident(), withRemotes ? remotes() : null), null, 'no lastSeenAt');
    const changes: Array<[string, Partial<RowInputs>]> = [
      ['pid', { pid: 8 }], ['comm', { comm: 'wget' }], ['uid', { uid: 0 }], ['exe', { exe: null }], ['cgroupId', { cgroupId: '43' }], ['flows', { flows: 4 }],
      ['openFlows', { openFlows: 1 }], ['txBytes', { txBytes: 101 }], ['rxBytes', { rxBytes: 201 }], ['txPackets', { txPackets: 5 }], ['rxPackets', { rxPackets: 6 }],
      ['http null', { http: null }], ['http requests', { http: { ...inputs().http!, requests: 2 } }], ['http 4xx', { http: { ...inputs().http!, clientErrors: 1 } }],
      ['http 5xx', { http: { ...inputs().http!, serverErrors: 1 } }], ['http request bytes', { http: { ...inputs().http!, requestBytes: 11 } }],
      ['http response bytes', { http: { ...inputs().http!, responseBytes: 21 } }],
    ];
    for (const [what, over] of changes) assert.equal(c.reuse(m, 7, { ...inputs(), ...over }, MS, ident(), withRemotes ? remotes() : null), null, what);
    for (const k of Object.keys(ident()) as Array<keyof OwnerIdentity>) {
      assert.equal(c.reuse(m, 7, inputs(), MS, { ...ident(), [k]: 'other' }, withRemotes ? remotes() : null), null, `identity ${k}`);
    }
    if (withRemotes) {
      for (const [what, rem] of [['one remote fewer', remotes().slice(0, 1)], ['one more', [...remotes(), { addr: '198.18.0.3', flows: 1, txBytes: 0, rxBytes: 0 }]],
        ['bytes', [{ ...remotes()[0]!, rxBytes: 1 }, remotes()[1]!]], ['flows', [{ ...remotes()[0]!, flows: 1 }, remotes()[1]!]], ['addr', [{ ...remotes()[0]!, addr: '198.18.0.9' }, remotes()[1]!]]] as const) {
        assert.equal(c.reuse(m, 7, inputs(), MS, ident(), rem), null, `remotes: ${what}`);
      }
    } else assert.equal(c.reuse(m, 7, inputs(), MS, ident(), []), null, 'a row without remotes does not answer a query with them');
    assert.equal(c.stats.reused, 1);
  }
});

test('shapes are apart; owners gone are pruned', () => {
  const c = new ProcessRowCache<ProcessTraffic>();
  const a = c.shape(undefined, false);
  const b = c.shape(1000, false);
  assert.notEqual(a, b);
  assert.equal(c.shape(undefined, false), a);
  c.keep(a, 7, row(inputs(), ident(), MS, null), MS);
  c.keep(a, 8, row(inputs(), ident(), MS, null), MS);
  c.prune(a, new Map([[7, 1]]));
  assert.deepEqual([...a.keys()], [7]);
});
