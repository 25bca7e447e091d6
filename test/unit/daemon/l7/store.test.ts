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
  assert.deepEqual(store.flowFields(flow(42, 40000), 6000), { remoteName: 'api.example.test', serverName: 'api.example.test', tlsVersion: '1.3', http: null });
});

test('http: a flow counts its requests, 4xx/5xx and unanswered, and keeps the last one\'s line and status', () => {
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache() });
  const key = { protocol: 'tcp', family: 'ipv4' as const, localAddr: '198.18.5.1', localPort: 40000, remoteAddr: '198.18.5.5', remotePort: 80 };
  const other = { ...key, localPort: 40001 };
  const sent: Array<[string, number | undefined, typeof key]> = [['/a', 200, key], ['/b', 404, key], ['/c', 503, other], ['/d', undefined, key], ['/e', 200, key]];
  sent.forEach(([path, status, flow], i) => store.addHttp({
    pid: 42, uid: 1000, method: i === 4 ? 'POST' : 'GET', host: 'www.l7.test', path, status, version: '1.1',
    requestBytes: 100, responseBytes: status ? 1000 : 0, requestStartNs: (i + 1) * 1e9, requestEndNs: (i + 1) * 1e9 + 1,
    tls: false, flags: status ? [] : ['unanswered'], flow,
  }));
  const f = store.flowFields({ ...key, pid: 42 }, 0).http;
  assert.deepEqual(f, {
    requests: 4, clientErrors: 1, serverErrors: 0, unanswered: 1, requestBytes: 400, responseBytes: 3000,
    lastMethod: 'POST', lastHost: 'www.l7.test', lastPath: '/e', lastStatus: 200, lastAt: new Date(5000).toISOString(), tls: false,
  });
  assert.equal(store.flowFields({ ...other, pid: 42 }, 0).http?.serverErrors, 1, 'the other flow has its own');
  assert.equal(store.flowFields({ ...key, localPort: 40002, pid: 42 }, 0).http, null, 'no request, no summary');
  // The copy handed out is not changed by later requests.
  store.addHttp({ pid: 42, uid: 1000, method: 'GET', path: '/f', status: 200, requestBytes: 1, responseBytes: 1, requestStartNs: 6e9, requestEndNs: 6e9, tls: false, flags: [], flow: key });
  assert.equal(f!.requests, 4);
  assert.equal(store.flowFields({ ...key, pid: 42 }, 0).http!.lastPath, '/f');
  store.forgetFlow({ ...key });
  assert.equal(store.flowFields({ ...key, pid: 42 }, 0).http, null, 'forgotten with the flow');
});

test('the port-pair index and the list of flows with an HTTP summary: counted per flow, dropped when forgotten or evicted', () => {
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache(), maxHttpRequests: 1 }); // 4 flow entries
  const flow = (localAddr: string, localPort: number) => ({ protocol: 'tcp', family: 'ipv4' as const, localAddr, localPort, remoteAddr: '198.18.5.5', remotePort: 80 });
  const req = (f: ReturnType<typeof flow>) => store.addHttp({ pid: 42, uid: 0, method: 'GET', path: '/', status: 200, requestBytes: 1, responseBytes: 1, requestStartNs: 1, requestEndNs: 1, tls: false, flags: [], flow: f });
  const a = flow('198.18.5.1', 40000);
  const b = flow('198.18.5.2', 40000); // same ports, another address
  assert.equal(store.mayHaveHttp(40000, 80), false);
  req(a);
  req(a);
  req(b);
  assert.equal(store.mayHaveHttp(40000, 80), true);
  assert.equal(store.mayHaveHttp(80, 40000), false, 'local port first');
  assert.equal(store.httpOf(a)?.requests, 2);
  assert.equal(store.httpOf(flow('198.18.5.3', 40000)), null, 'the port pair matches, the flow has none');
  const listed = () => {
    const out: string[] = [];
    store.forEachHttpFlow((f, h) => out.push(`${f.protocol} ${f.localAddr}:${f.localPort} ${f.remoteAddr}:${f.remotePort} ${h.requests}`));
    return out.sort();
  };
  assert.deepEqual(listed(), ['tcp 198.18.5.1:40000 198.18.5.5:80 2', 'tcp 198.18.5.2:40000 198.18.5.5:80 1'], 'the flows with a summary, each once');
  store.forgetFlow(a);
  assert.deepEqual(listed(), ['tcp 198.18.5.2:40000 198.18.5.5:80 1'], 'a forgotten flow leaves the list');
  assert.equal(store.mayHaveHttp(40000, 80), true, 'b still has one');
  store.forgetFlow(b);
  assert.equal(store.mayHaveHttp(40000, 80), false);
  // The flow entries are bounded: an evicted entry leaves the index too.
  for (let p = 1; p <= 5; p++) req(flow('198.18.5.1', p));
  assert.deepEqual([1, 2, 3, 4, 5].map((p) => store.mayHaveHttp(p, 80)), [false, true, true, true, true]);
  assert.deepEqual(listed().map((l) => l.split(' ')[1]), ['198.18.5.1:2', '198.18.5.1:3', '198.18.5.1:4', '198.18.5.1:5'], 'an evicted entry leaves the list');
});
