// SPDX-License-Identifier: Apache-2.0
// The LB component's names: map names within the kernel's limit and with the prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LB_MAP, LB_PROG } from '../../../../daemon/src/lb/components.js';

test('map names fit the kernel limit and carry the prefix', () => {
  for (const n of Object.values(LB_MAP)) {
    assert.ok(n.length <= 15, `${n} is longer than 15 characters`);
    assert.ok(n.startsWith('emon_lb_'), n);
  }
  assert.equal(LB_PROG.xdp, 'xdp_lb');
});
