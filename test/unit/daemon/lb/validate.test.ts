// SPDX-License-Identifier: Apache-2.0
// Input validation, without a kernel: every bad input is InvalidParams naming its field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../../../daemon/src/errors.js';
import { parseBackend, parseDropRule, parseHealth, parseIfname, parseMode, parseVip, parseWeight } from '../../../../daemon/src/lb/validate.js';

function rejects(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof AppError, `not an AppError: ${err}`);
    assert.equal(err.kind, 'InvalidParams');
    assert.equal(err.data?.field, field);
    assert.ok(err.message.startsWith(`${field}: expected`), err.message);
    return true;
  });
}

test('VIPs: canonical forms', () => {
  assert.equal(parseVip('params.vip', '198.19.10.10:80/tcp').text, '198.19.10.10:80/tcp');
  assert.equal(parseVip('params.vip', '198.19.10.10:53/UDP').text, '198.19.10.10:53/udp');
  assert.equal(parseVip('params.vip', '[FD00:198::FF:10]:443/tcp').text, '[fd00:198::ff:10]:443/tcp');
});

test('VIPs: bad ones name params.vip', () => {
  for (const bad of [
    undefined, '', 42, 'nonsense', '198.19.10.10/tcp', '198.19.10.10:80', '198.19.10.10:0/tcp', '198.19.10.10:65536/tcp',
    '198.19.10.10:80/sctp', '0.0.0.0:80/tcp', '224.0.0.1:80/tcp', '255.255.255.255:80/tcp', '127.0.0.1:80/tcp', '[::1]:80/tcp',
    'fd00:198::ff:10:80/tcp', '[fe80::1]:80/tcp', '198.19.10:80/tcp', '[::]:80/tcp', '198.19.10.10:8x/tcp',
  ]) rejects(() => parseVip('params.vip', bad), 'params.vip');
});

test('backends: port defaults to the VIP\'s, family must match', () => {
  const vip = parseVip('params.vip', '198.19.10.10:80/tcp');
  assert.equal(parseBackend('params.backend', '198.18.2.2', vip).text, '198.18.2.2:80');
  assert.equal(parseBackend('params.backend', '198.18.2.2:8080', vip).text, '198.18.2.2:8080');
  rejects(() => parseBackend('params.backend', 'fd00:198::2:2', vip), 'params.backend');
  rejects(() => parseBackend('params.backend', '[fd00:198::2:2]:80', vip), 'params.backend');
  rejects(() => parseBackend('params.backend', 'backend-1', vip), 'params.backend');
  rejects(() => parseBackend('params.backend', '198.18.2.2:70000', vip), 'params.backend');
  const vip6 = parseVip('params.vip', '[fd00:198::ff:10]:80/tcp');
  assert.equal(parseBackend('params.backend', 'fd00:198::2:2', vip6).text, '[fd00:198::2:2]:80');
  assert.equal(parseBackend('params.backend', '[fd00:198::2:2]:81', vip6).text, '[fd00:198::2:2]:81');
});

test('weights 1..1000, integers only', () => {
  assert.equal(parseWeight('params.weight', undefined), 1);
  assert.equal(parseWeight('params.weight', 1000), 1000);
  assert.equal(parseWeight('params.weight', '7'), 7);
  for (const bad of [0, -1, 1001, 1.5, 'x', Number.NaN, {}]) rejects(() => parseWeight('params.weight', bad), 'params.weight');
});

test('mode, interface, health', () => {
  assert.equal(parseMode('params.mode', undefined), 'nat');
  assert.equal(parseMode('params.mode', 'dsr'), 'dsr');
  rejects(() => parseMode('params.mode', 'tunnel'), 'params.mode');
  assert.equal(parseIfname('params.interface', 'eth0.100'), 'eth0.100');
  rejects(() => parseIfname('params.interface', 'a'.repeat(16)), 'params.interface');
  rejects(() => parseIfname('params.interface', 'bad/name'), 'params.interface');
  assert.deepEqual(parseHealth('params.health', { type: 'http', path: '/healthz' }), { type: 'http', port: 0, path: '/healthz', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 });
  rejects(() => parseHealth('params.health', { type: 'icmp' }), 'params.health.type');
  rejects(() => parseHealth('params.health', { type: 'tcp', path: '/x' }), 'params.health.path');
  rejects(() => parseHealth('params.health', { type: 'tcp', intervalMs: 10 }), 'params.health.intervalMs');
  rejects(() => parseHealth('params.health', { type: 'tcp', intervalMs: 500, timeoutMs: 900 }), 'params.health.timeoutMs');
  rejects(() => parseHealth('params.health', { type: 'tcp', rise: 0 }), 'params.health.rise');
  rejects(() => parseHealth('params.health', { type: 'tcp', speed: 1 }), 'params.health.speed');
  rejects(() => parseHealth('params.health', 'tcp'), 'params.health');
});

test('drop rules: canonical forms', () => {
  const t = (s: string) => parseDropRule('params.rule', s).text;
  assert.equal(t('198.18.5.7'), '198.18.5.7/32');
  assert.equal(t('198.18.5.0/24'), '198.18.5.0/24');
  assert.equal(t('FD00:198::5:0/112'), 'fd00:198::5:0/112');
  assert.equal(t('icmp:echo-request'), 'icmp:echo-request');
  assert.equal(t('icmp echo'), 'icmp:echo-request');
  assert.equal(t('icmp:8'), 'icmp:echo-request');
  assert.equal(t('icmpv6:128'), 'icmpv6:echo-request');
  assert.equal(t('udp:53'), 'udp:53');
  assert.equal(t('proto:6'), 'tcp');
  assert.equal(t('proto:47'), 'proto:47');
  const r = parseDropRule('params.rule', 'tcp:22');
  assert.ok(r.kind === 'proto' && r.families.length === 2);
});

test('drop rules: bad ones name params.rule', () => {
  for (const bad of ['', 'foo', '198.18.1.1/33', '198.18.1.1/24', 'fd00::1/129', 'tcp:0', 'udp:99999', 'icmp:bogus', 'proto:256', 'tcp:1:2'])
    rejects(() => parseDropRule('params.rule', bad), 'params.rule');
});
