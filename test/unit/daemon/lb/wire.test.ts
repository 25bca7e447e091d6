// SPDX-License-Identifier: Apache-2.0
// wire.ts must mirror bpf/lb.h: the #defines and enums against lb.h's own text, and the map
// names against the kernel's limit. (Struct layouts and the maps' key and value types are
// checked against lb.bpf.o's BTF with the monitor's, in test/unit/layout.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as D from '../../../../daemon/src/lb/wire.js';
import { LB_COUNTERS, LB_DROP_REASONS } from '../../../../daemon/src/contract/lb.js';
import { makeConfig } from '../../../../daemon/src/config/schema.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const header = fs.readFileSync(path.resolve(here, '../../../../../../bpf/lb.h'), 'utf8');


function define(name: string): number {
  const m = new RegExp(`^#define ${name}\\s+(.+?)\\s*(/\\*.*)?$`, 'm').exec(header);
  assert.ok(m, `#define ${name} not in lb.h`);
  const expr = m[1]!.replace(/\(1U << (\d+)\)/g, (_, s) => String(1 << Number(s))).replace(/U?L*$/g, '').replace(/U\b/g, '');
  return Number(expr);
}

function enumerators(name: string): string[] {
  const m = new RegExp(`enum ${name} \\{([^}]*)\\}`, 'm').exec(header);
  assert.ok(m, `enum ${name} not in lb.h`);
  return m[1]!.split('\n').map((l) => /^\s*(EMON_LB_\w+)/.exec(l)?.[1]).filter((x): x is string => !!x);
}

test('#defines match', () => {
  assert.equal(define('EMON_LB_LAYOUT_VERSION'), D.LB_LAYOUT_VERSION);
  assert.equal(define('EMON_LB_RING_SIZE'), D.RING_SIZE);
  assert.equal(define('EMON_LB_MAX_VIPS'), D.LB_DEFAULT_SIZES.maxVips);
  assert.equal(define('EMON_LB_MAX_BACKENDS'), D.LB_DEFAULT_SIZES.maxBackends);
  assert.equal(define('EMON_LB_MAX_CONNS'), D.LB_DEFAULT_SIZES.maxConns);
  assert.equal(define('EMON_LB_MAX_LONG'), D.LB_DEFAULT_SIZES.maxLong);
  assert.equal(define('EMON_LB_MAX_NAT'), D.LB_DEFAULT_SIZES.maxNat);
  assert.equal(define('EMON_LB_MAX_RULES'), D.LB_DEFAULT_SIZES.maxRules);
  assert.equal(define('EMON_LB_MAX_IFADDRS'), D.LB_DEFAULT_SIZES.maxIfaddrs);
  // The configurable tables default to the object's own sizes.
  const cfg = makeConfig().getProperties().lb.maps;
  assert.deepEqual([cfg.conns, cfg.long, cfg.nat], [D.LB_DEFAULT_SIZES.maxConns, D.LB_DEFAULT_SIZES.maxLong, D.LB_DEFAULT_SIZES.maxNat]);
  assert.equal(define('EMON_LB_FLOW_SEED'), D.FLOW_SEED);
  assert.equal(define('EMON_LB_NAT_SEED'), D.NAT_SEED);
  assert.equal(BigInt(define('EMON_LB_TOUCH_NS')), D.TOUCH_NS);
  assert.equal(define('EMON_LB_NAT_TRIES'), D.NAT_TRIES);
  assert.equal(define('EMON_LB_BE_IN_USE'), D.BE.inUse);
  assert.equal(define('EMON_LB_BE_DRAINING'), D.BE.draining);
  assert.equal(define('EMON_LB_BE_DOWN'), D.BE.down);
  assert.equal(define('EMON_LB_CONN_LONG'), D.CONN_LONG);
  assert.equal(define('EMON_LB_CONN_DSR'), D.CONN_DSR);
  assert.equal(define('EMON_LB_NAT_REPLIED'), D.NAT_REPLIED);
  assert.equal(define('EMON_LB_NH_ONLINK'), D.NH_FLAGS.onlink);
  assert.equal(define('EMON_LB_NH_LADDR'), D.NH_FLAGS.laddr);
  assert.equal(BigInt(define('EMON_LB_NH_TTL_NS')), D.NH_TTL_NS);
  assert.equal(define('EMON_LB_CFG_DROP4'), D.CFG.drop4);
  assert.equal(define('EMON_LB_CFG_DROP6'), D.CFG.drop6);
  assert.equal(define('EMON_LB_CFG_DP_TCP'), D.CFG.dpTcp);
  assert.equal(define('EMON_LB_CFG_DP_UDP'), D.CFG.dpUdp);
  assert.equal(define('EMON_LB_CFG_DP_ICMP'), D.CFG.dpIcmp);
  assert.equal(define('EMON_LB_CFG_DP_OTHER'), D.CFG.dpOther);
  assert.equal(define('EMON_LB_PK_ANY'), D.PK.any);
  assert.equal(define('EMON_LB_PK_PORT'), D.PK.port);
  assert.equal(define('EMON_LB_PK_TYPE'), D.PK.type);
  assert.equal(define('EMON_LB_HC_NONE'), D.HC.none);
  assert.equal(define('EMON_LB_HC_TCP'), D.HC.tcp);
  assert.equal(define('EMON_LB_HC_HTTP'), D.HC.http);
});

test('enums match (order is the map index)', () => {
  const stats = enumerators('emon_lb_stat');
  assert.equal(stats.at(-1), 'EMON_LB_STAT_MAX');
  assert.equal(stats.length - 1, LB_COUNTERS.length, `stats: ${stats.join(', ')}`);
  const drops = enumerators('emon_lb_drop');
  assert.equal(drops.at(-1), 'EMON_LB_DROP_MAX');
  assert.equal(drops.length - 1, LB_DROP_REASONS.length, `drops: ${drops.join(', ')}`);
  // Names line up: EMON_LB_DROP_NO_BACKEND <-> noBackend, etc.
  const camel = (s: string, prefix: string) => s.slice(prefix.length).toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  stats.slice(0, -1).forEach((s, i) => {
    const c = camel(s, 'EMON_LB_STAT_');
    assert.equal(c, LB_COUNTERS[i], s);
  });
  drops.slice(0, -1).forEach((s, i) => {
    const c = camel(s, 'EMON_LB_DROP_');
    assert.equal(c, LB_DROP_REASONS[i], s);
  });
  assert.deepEqual(enumerators('emon_lb_mode'), ['EMON_LB_MODE_NAT', 'EMON_LB_MODE_DSR']);
  assert.deepEqual(enumerators('emon_lb_how'), ['EMON_LB_HOW_MAGLEV', 'EMON_LB_HOW_RESTORED', 'EMON_LB_HOW_RESCHED']);
  assert.ok(LB_COUNTERS.length <= D.STAT_MAX && LB_DROP_REASONS.length <= D.DROP_MAX);
});
