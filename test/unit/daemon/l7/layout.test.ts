// SPDX-License-Identifier: Apache-2.0
// The L7 records' TypeScript mirrors (daemon/src/l7/wire.ts) against the BTF of the built
// objects, and the counter names (contract/l7.ts L7_COUNTERS) against enum emon_l7_stat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { L7_REC, SSL_REC } from '../../../../daemon/src/l7/wire.js';
import { L7_COUNTERS } from '../../../../daemon/src/contract/l7.js';
import { testStructLayouts } from '../../../helpers/layout.js';
import { ROOT } from '../../../helpers/cc.js';

testStructLayouts([L7_REC, SSL_REC]);

test('L7_COUNTERS are enum emon_l7_stat\'s enumerators, in order, after EMON_L7_STAT_, in camelCase', () => {
  const h = fs.readFileSync(path.join(ROOT, 'bpf/l7.h'), 'utf8');
  const body = /enum emon_l7_stat \{([^}]*)\}/.exec(h)?.[1];
  assert.ok(body, 'enum emon_l7_stat in bpf/l7.h');
  const names = [...body.matchAll(/EMON_L7_STAT_([A-Z_]+)/g)].map((m) => m[1]!).filter((n) => n !== 'MAX');
  const camel = names.map((n) => n.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
  assert.deepEqual(camel, [...L7_COUNTERS]);
  assert.equal(Number(/EMON_L7_STAT_MAX = (\d+)/.exec(body)?.[1]) >= L7_COUNTERS.length, true);
});
