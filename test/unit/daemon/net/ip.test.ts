// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { AF_INET, AF_INET6, formatIp, formatIpAt, inCidr, parseCidr, parseIp, splitHostPort } from '../../../../daemon/src/net/ip.js';

test('IPv6 text round-trips through bytes in RFC 5952 form', () => {
  for (const a of ['::', '::1', 'fd00:198::1:1', 'fe80::4065:3ff:fe79:230f', '2001:db8:0:1:0:0:0:1', '1:0:0:2:0:0:0:3', 'ff02::1:ff19:e2fb', '::ffff:198.18.0.1']) {
    const p = parseIp(a)!;
    assert.equal(p.family, 'ipv6');
    const back = formatIpAt(p.bytes, 0, AF_INET6);
    // Compare canonical forms via a second parse (the formatter compresses the longest zero run).
    assert.deepEqual(parseIp(back)!.bytes, p.bytes, `${a} -> ${back}`);
    assert.ok(net.isIPv6(back));
  }
  assert.equal(formatIpAt(parseIp('2001:db8:0:1:0:0:0:1')!.bytes, 0, AF_INET6), '2001:db8:0:1::1');
  assert.equal(formatIpAt(parseIp('1:0:0:2:0:0:0:3')!.bytes, 0, AF_INET6), '1:0:0:2::3');
});

test('IPv4 and CIDR matching', () => {
  const p = parseIp('198.18.3.4')!;
  assert.equal(formatIpAt(p.bytes, 0, AF_INET), '198.18.3.4');
  assert.ok(inCidr(AF_INET, p.bytes, 0, parseCidr('198.18.0.0/15')!));
  assert.ok(!inCidr(AF_INET, p.bytes, 0, parseCidr('198.20.0.0/15')!));
  assert.ok(inCidr(AF_INET, p.bytes, 0, parseCidr('198.18.3.4')!));
  assert.ok(!inCidr(AF_INET6, parseIp('fd00:198::1')!.bytes, 0, parseCidr('198.18.0.0/15')!), 'families never match');
  assert.ok(inCidr(AF_INET6, parseIp('fd00:198::1')!.bytes, 0, parseCidr('fd00:198::/64')!));
  for (const bad of ['1.2.3.4/33', 'fd00::/129', 'x', '1.2.3.4/', '1.2.3.4/-1', '']) assert.equal(parseCidr(bad), null, bad);
});

test('addresses: parse, canonical text, host:port splitting', () => {
  assert.equal(formatIp('ipv6', parseIp('FD00:0198:0000:0000:0000:0000:00ff:0010')!.bytes), 'fd00:198::ff:10');
  assert.equal(formatIp('ipv6', parseIp('::ffff:198.18.1.1')!.bytes), '::ffff:198.18.1.1');
  assert.equal(formatIp('ipv6', parseIp('1:0:0:1:0:0:0:1')!.bytes), '1:0:0:1::1');
  assert.equal(parseIp('198.18.1.256'), null);
  assert.equal(parseIp('01.2.3.4'), null);
  assert.equal(parseIp('fe80::1%eth0'), null);
  assert.deepEqual(splitHostPort('[fd00::1]:80'), { host: 'fd00::1', port: '80' });
  assert.deepEqual(splitHostPort('fd00::1'), { host: 'fd00::1', port: null });
  assert.deepEqual(splitHostPort('198.18.1.1:80'), { host: '198.18.1.1', port: '80' });
  assert.equal(splitHostPort('[fd00::1]x'), null);
});
