// SPDX-License-Identifier: Apache-2.0
// The balancer host's settings that break a VIP, read from sysctls (faked here; the
// daemon test flips the real ones).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lbHostWarnings } from '../../../../daemon/src/lb/host.js';

const host = (s: Record<string, string>) => (name: string): string | null => s[name] ?? null;

test('a host that forwards with a loose reverse-path filter gets no warning', () => {
  assert.deepEqual(lbHostWarnings('ipv4', ['front'], host({ 'net.ipv4.conf.front.forwarding': '1', 'net.ipv4.conf.all.rp_filter': '2', 'net.ipv4.conf.front.rp_filter': '0' })), []);
  assert.deepEqual(lbHostWarnings('ipv6', ['front'], host({ 'net.ipv6.conf.all.forwarding': '1' })), []);
});

test('forwarding off on a VIP interface: the sysctl, what breaks, and the fix', () => {
  const w = lbHostWarnings('ipv4', ['front', 'side'], host({ 'net.ipv4.conf.front.forwarding': '0', 'net.ipv4.conf.side.forwarding': '1' }));
  assert.equal(w.length, 1);
  assert.match(w[0]!, /^IPv4 forwarding is off on front \(net\.ipv4\.conf\.front\.forwarding = 0\): .*times out; enable it with `sysctl -w net\.ipv4\.ip_forward=1`$/);
  assert.match(lbHostWarnings('ipv6', ['front'], host({ 'net.ipv6.conf.all.forwarding': '0' }))[0]!, /net\.ipv6\.conf\.all\.forwarding = 0/);
});

test('strict rp_filter, set on the interface or for all of them (the kernel uses the higher)', () => {
  const onIf = lbHostWarnings('ipv4', ['front'], host({ 'net.ipv4.conf.front.forwarding': '1', 'net.ipv4.conf.front.rp_filter': '1' }));
  assert.match(onIf.join(), /strict reverse-path filtering on front \(rp_filter = 1\)/);
  const all = lbHostWarnings('ipv4', ['front'], host({ 'net.ipv4.conf.front.forwarding': '1', 'net.ipv4.conf.all.rp_filter': '1', 'net.ipv4.conf.front.rp_filter': '0' }));
  assert.equal(all.length, 1);
  const loose = lbHostWarnings('ipv4', ['front'], host({ 'net.ipv4.conf.front.forwarding': '1', 'net.ipv4.conf.all.rp_filter': '2', 'net.ipv4.conf.front.rp_filter': '1' }));
  assert.deepEqual(loose, [], 'max(2, 1) = 2: loose');
});
