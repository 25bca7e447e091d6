// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globToRegExp, isGlob } from '../../../../daemon/src/util/glob.js';

test('interface globs', () => {
  const m = (g: string, s: string) => globToRegExp(g).test(s);
  assert.ok(m('veth*', 'veth1234') && !m('veth*', 'eth0'));
  assert.ok(m('eth?', 'eth0') && !m('eth?', 'eth10'));
  assert.ok(m('en[ps]*', 'enp3s0') && m('en[ps]*', 'ens1') && !m('en[ps]*', 'eno1'));
  assert.ok(m('en[!p]*', 'ens1') && !m('en[!p]*', 'enp3s0'));
  assert.ok(m('a.b', 'a.b') && !m('a.b', 'axb'), 'dots are literal');
  assert.ok(m('*', 'anything'));
  assert.ok(isGlob('veth*') && !isGlob('eth0'));
});
