// SPDX-License-Identifier: Apache-2.0
// client -> VIP -> backend -> process: the balancer's flows joined with a backend's flow records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalEndpoint, joinBackendFlows } from '../../../../daemon/src/lb/join.js';
import type { LbFlow } from '../../../../daemon/src/contract/index.js';

const flow = (client: string, backend: string, onBackend: { local: string; remote: string }, nat: string | null): LbFlow => ({
  protocol: 'tcp', client, vip: '198.19.10.10:80/tcp', backend, backendId: 1, mode: nat ? 'nat' : 'dsr', how: 'maglev',
  tableGeneration: 1, ageMs: 1, idleMs: 0, longLived: false, nat: nat ? { balancer: nat } : null, onBackend,
});

test('canonical endpoints: IPv4-mapped IPv6 as IPv4, IPv6 compressed', () => {
  assert.equal(canonicalEndpoint('[::ffff:198.18.2.2]:8080'), '198.18.2.2:8080');
  assert.equal(canonicalEndpoint('[FD00:198:0::2:2]:80'), '[fd00:198::2:2]:80');
  assert.equal(canonicalEndpoint('198.18.2.2:80'), '198.18.2.2:80');
});

test('nat and dsr flows find their serving process; unknown ones stay null', () => {
  const flows = [
    flow('198.18.1.1:40000', '198.18.2.2:8080', { local: '198.18.2.2:8080', remote: '198.18.2.1:61000' }, '198.18.2.1:61000'),
    flow('198.18.1.1:40001', '198.18.3.2:8080', { local: '198.18.3.2:8080', remote: '198.18.1.1:40001' }, null),
    flow('198.18.1.1:40002', '198.18.3.2:8080', { local: '198.18.3.2:8080', remote: '198.18.1.1:40002' }, null),
  ];
  const chains = joinBackendFlows(flows, [
    { protocol: 'tcp', local: '[::ffff:198.18.2.2]:8080', remote: '[::ffff:198.18.2.1]:61000', pid: 42, comm: 'nginx' },
    { protocol: 'tcp', local: '198.18.3.2:8080', remote: '198.18.1.1:40001', pid: 7, comm: 'node' },
    { protocol: 'udp', local: '198.18.3.2:8080', remote: '198.18.1.1:40002', pid: 9, comm: 'other' },
  ]);
  assert.deepEqual(chains.map((c) => c.process), [{ pid: 42, comm: 'nginx' }, { pid: 7, comm: 'node' }, null]);
  assert.equal(chains[0]!.balancer, '198.18.2.1:61000');
});
