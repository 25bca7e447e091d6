// SPDX-License-Identifier: Apache-2.0
// Flow names: a flow takes the name its process asked for while the answer is fresh and
// keeps it after the TTL; another process, or a flow first seen after expiry, gets none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResolverCache } from '../../../../daemon/src/l7/dns/cache.js';
import { L7Store } from '../../../../daemon/src/l7/store.js';

test('remoteName: the asking process\'s name, kept on the flow after the TTL', () => {
  const cache = new ResolverCache({ minTtlMs: 1000 });
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache });
  cache.add(42, [{ address: '198.18.5.5', name: 'api.example.test', chain: ['edge.example.test'], ttl: 1 }], 0);
  const flow = (pid: number, lport: number) => ({ protocol: 'tcp', localAddr: '198.18.5.1', localPort: lport, remoteAddr: '198.18.5.5', remotePort: 443, pid });
  assert.equal(store.flowFields(flow(42, 40000), 500).remoteName, 'api.example.test');
  assert.equal(store.flowFields(flow(43, 40001), 500).remoteName, null, 'another process did not ask');
  assert.equal(store.flowFields(flow(42, 40000), 5000).remoteName, 'api.example.test', 'kept after the TTL');
  assert.equal(store.flowFields(flow(42, 40002), 5000).remoteName, null, 'a new flow after expiry');
  store.addTls({ pid: 42, uid: 0, serverName: 'api.example.test', version: 0x0304, offeredVersions: [], alpn: [], flow: { protocol: 'tcp', family: 'ipv4', localAddr: '198.18.5.1', localPort: 40000, remoteAddr: '198.18.5.5', remotePort: 443 } });
  assert.deepEqual(store.flowFields(flow(42, 40000), 6000), { remoteName: 'api.example.test', serverName: 'api.example.test', tlsVersion: '1.3' });
});
