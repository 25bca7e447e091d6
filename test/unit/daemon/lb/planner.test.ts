// SPDX-License-Identifier: Apache-2.0
// The declared-configuration planner, without a kernel: declarations are validated with
// the entry named, and each declared VIP is added, left alone, updated (backends added and
// re-weighted in declaration order) or reported as a conflict (mode, interface).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../../../daemon/src/errors.js';
import { decide, parseDeclarations } from '../../../../daemon/src/lb/planner.js';
import type { VipState } from '../../../../daemon/src/lb/state.js';
import { parseBackend, parseVip } from '../../../../daemon/src/lb/validate.js';
import type { DeclaredVip } from '../../../../daemon/src/contract/lb.js';

const VIP = '198.19.10.10:80/tcp';

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, String(err));
    return String(err.data?.field);
  }
  assert.fail('expected InvalidParams');
}

/** A running VIP as restore or addVip would leave it. */
function running(hash: bigint, backends: Array<[string, number]>, over: Partial<VipState> = {}): VipState {
  const spec = parseVip('v', VIP);
  return {
    spec, slot: 0, mode: 'nat', gen: 1, ring: 0, ifname: '', health: null, declHash: hash, createdNs: 0n, table: null,
    backends: new Map(backends.map(([b, weight], i) => {
      const s = parseBackend('b', b, spec);
      return [s.text, { id: i + 1, spec: s, weight, flags: 1, egress: 0 }];
    })),
    ...over,
  };
}

test('declarations: normalized, hashed (same text, same hash; never 0), errors name the entry', () => {
  const [p] = parseDeclarations([{ vip: '198.19.10.10:80/TCP', backends: [{ backend: '198.18.2.2:8080', weight: 3 }, { backend: '198.18.3.2' }] }]);
  assert.equal(p!.spec.text, VIP);
  assert.deepEqual(p!.backends.map((b) => [b.spec.text, b.weight]), [['198.18.2.2:8080', 3], ['198.18.3.2:80', 1]]);
  assert.equal(p!.mode, 'nat');
  assert.notEqual(p!.hash, 0n);
  const again = parseDeclarations([{ vip: VIP, backends: [{ backend: '198.18.2.2:8080', weight: 3 }, { backend: '198.18.3.2:80', weight: 1 }] }])[0]!;
  assert.equal(again.hash, p!.hash, 'the same declaration written differently');
  const heavier = parseDeclarations([{ vip: VIP, backends: [{ backend: '198.18.2.2:8080', weight: 4 }, { backend: '198.18.3.2' }] }])[0]!;
  assert.notEqual(heavier.hash, p!.hash);

  assert.equal(fieldOf(() => parseDeclarations({} as unknown as DeclaredVip[])), 'lb.vips');
  assert.equal(fieldOf(() => parseDeclarations([{ vip: VIP }, { vip: VIP, backends: [{ backend: '198.18.2.2', weight: 0 }] }])), 'lb.vips[1].backends[0].weight');
  assert.equal(fieldOf(() => parseDeclarations([{ vip: VIP }, { vip: '198.19.10.10:80/tcp' }])), 'lb.vips[1].vip');
  assert.equal(fieldOf(() => parseDeclarations([{ vip: VIP, backends: [{ backend: '198.18.2.2' }, { backend: '198.18.2.2:80' }] }])), 'lb.vips[0].backends[1].backend');
  assert.equal(fieldOf(() => parseDeclarations([{ vip: VIP, backends: 'x' as never }])), 'lb.vips[0].backends');
  assert.equal(fieldOf(() => parseDeclarations([{ vip: VIP, mode: 'tunnel' as never }])), 'lb.vips[0].mode');
});

test('decisions: add, unchanged, conflict (mode, interface), update in declaration order', () => {
  const [p] = parseDeclarations([{ vip: VIP, backends: [{ backend: '198.18.2.9' }, { backend: '198.18.2.2', weight: 5 }, { backend: '198.18.2.8' }] }]);
  assert.deepEqual(decide(undefined, p!), { action: 'add' });
  assert.deepEqual(decide(running(p!.hash, []), p!), { action: 'unchanged' }, 'applied before: live changes are kept');
  assert.deepEqual(decide(running(1n, [['198.18.2.2', 1]], { mode: 'dsr' }), p!), {
    action: 'conflict', detail: 'mode is dsr, declared nat: remove the VIP to apply the declaration',
  });
  assert.deepEqual(decide(running(1n, [], { ifname: 'front' }), p!), {
    action: 'conflict', detail: 'interface is front, declared (defaults): remove the VIP to apply the declaration',
  });
  const live = running(0n, [['198.18.2.2', 1]]);
  const d = decide(live, p!);
  assert.equal(d.action, 'update');
  if (d.action !== 'update') return;
  assert.equal(d.vip, live);
  assert.deepEqual(d.changes.map((c) => [c.kind, typeof c.backend === 'string' ? c.backend : c.backend.spec.text, c.weight]), [
    ['add', '198.18.2.9:80', 1],
    ['weight', '198.18.2.2:80', 5],
    ['add', '198.18.2.8:80', 1],
  ]);
  assert.equal(d.changes[1]!.backend, live.backends.get('198.18.2.2:80'), 'the running backend itself is re-weighted');
});
