// SPDX-License-Identifier: Apache-2.0
// The L7 records' TypeScript mirrors (daemon/src/l7/wire.ts) against the BTF of the built
// objects, and the counter names (contract/l7.ts L7_COUNTERS) against enum emon_l7_stat's BTF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { L7_REC, SSL_REC } from '../../../../daemon/src/l7/wire.js';
import { L7_COUNTERS } from '../../../../daemon/src/contract/l7.js';
import { testStructLayouts } from '../../../helpers/layout.js';
import { Btf } from '../../../../daemon/src/bpf/btf.js';
import { ROOT } from '../../../helpers/cc.js';

testStructLayouts([L7_REC, SSL_REC]);

test('L7_COUNTERS are enum emon_l7_stat\'s enumerators, in order, after EMON_L7_STAT_, in camelCase (BTF of l7.bpf.o)', () => {
  const btf = Btf.fromObject(path.join(ROOT, 'build/bpf/l7.bpf.o'));
  try {
    const e = btf.enum('emon_l7_stat');
    assert.ok(e, 'enum emon_l7_stat is in l7.bpf.o BTF');
    const camel = (n: string) => n.slice('EMON_L7_STAT_'.length).toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    const named = e.filter((x) => x.name !== 'EMON_L7_STAT_MAX');
    assert.deepEqual(named.map((x) => [camel(x.name), x.value]), L7_COUNTERS.map((n, i) => [n, i]));
    assert.ok(e.find((x) => x.name === 'EMON_L7_STAT_MAX')!.value >= L7_COUNTERS.length);
  } finally {
    btf.close();
  }
});
