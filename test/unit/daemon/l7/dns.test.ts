// SPDX-License-Identifier: Apache-2.0
// DNS parser, TCP framing, resolver cache and query tracker. Messages are built here by a
// small encoder written from RFC 1035 (names compressed against earlier names, as servers
// do); the integration test checks the same code against dnsmasq's real answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DNS_TYPE, MAX_RECORDS, parseDnsMessage, resolvedAddresses } from '../../../../daemon/src/l7/dns/message.js';
import { DnsTcpFramer } from '../../../../daemon/src/l7/dns/tcp.js';
import { ResolverCache } from '../../../../daemon/src/l7/dns/cache.js';
import { DnsTracker, newDnsCounters, type DnsQueryRecord } from '../../../../daemon/src/l7/dns/tracker.js';
import { randBytes, randInt, rng } from '../../../helpers/rand.js';

interface Rr { name: string; type: number; ttl: number; data: string }

/** Encodes a DNS message, compressing names against suffixes written earlier. */
export function encodeDns(o: { id: number; response: boolean; rcode?: number; tc?: boolean; q: { name: string; type: number }; answers?: Rr[] }): Buffer {
  const out: number[] = [];
  const seen = new Map<string, number>();
  const u16 = (v: number) => out.push(v >> 8, v & 0xff);
  const name = (n: string) => {
    const labels = n.split('.');
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.');
      const at = seen.get(suffix);
      if (at !== undefined) {
        u16(0xc000 | at);
        return;
      }
      if (out.length < 0x3fff) seen.set(suffix, out.length);
      out.push(labels[i]!.length, ...Buffer.from(labels[i]!));
    }
    out.push(0);
  };
  u16(o.id);
  u16((o.response ? 0x8000 : 0) | 0x0100 | (o.response ? 0x0080 : 0) | (o.tc ? 0x0200 : 0) | (o.rcode ?? 0));
  u16(1);
  u16(o.answers?.length ?? 0);
  u16(0);
  u16(0);
  name(o.q.name);
  u16(o.q.type);
  u16(1);
  for (const a of o.answers ?? []) {
    name(a.name);
    u16(a.type);
    u16(1);
    out.push((a.ttl >>> 24) & 0xff, (a.ttl >>> 16) & 0xff, (a.ttl >>> 8) & 0xff, a.ttl & 0xff);
    const lenAt = out.length;
    u16(0);
    if (a.type === DNS_TYPE.A) out.push(...a.data.split('.').map(Number));
    else if (a.type === DNS_TYPE.AAAA) {
      const full = a.data.split('::');
      const head = full[0] ? full[0].split(':') : [];
      const tail = full[1] ? full[1].split(':') : [];
      const words = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
      for (const w of words) u16(parseInt(w, 16));
    } else name(a.data);
    const len = out.length - lenAt - 2;
    out[lenAt] = len >> 8;
    out[lenAt + 1] = len & 0xff;
  }
  return Buffer.from(out);
}

const chainAnswer = () => encodeDns({
  id: 0x1234, response: true, q: { name: 'www.example.test', type: DNS_TYPE.A },
  answers: [
    { name: 'www.example.test', type: DNS_TYPE.CNAME, ttl: 300, data: 'edge.cdn.test' },
    { name: 'edge.cdn.test', type: DNS_TYPE.CNAME, ttl: 60, data: 'node7.cdn.test' },
    { name: 'node7.cdn.test', type: DNS_TYPE.A, ttl: 120, data: '198.18.7.7' },
    { name: 'node7.cdn.test', type: DNS_TYPE.A, ttl: 30, data: '198.18.7.8' },
    { name: 'unrelated.test', type: DNS_TYPE.A, ttl: 999, data: '198.18.9.9' },
  ],
});

test('a response with a CNAME chain: every record read, compressed names expanded', () => {
  const b = chainAnswer();
  const r = parseDnsMessage(b);
  assert.equal(r.error, undefined);
  const m = r.message!;
  assert.equal(m.id, 0x1234);
  assert.ok(m.response);
  assert.deepEqual(m.questions, [{ name: 'www.example.test', type: 1, class: 1 }]);
  assert.deepEqual(m.answers.map((a) => [a.name, a.type, a.ttl, a.data]), [
    ['www.example.test', 5, 300, 'edge.cdn.test'],
    ['edge.cdn.test', 5, 60, 'node7.cdn.test'],
    ['node7.cdn.test', 1, 120, '198.18.7.7'],
    ['node7.cdn.test', 1, 30, '198.18.7.8'],
    ['unrelated.test', 1, 999, '198.18.9.9'],
  ]);
  assert.ok(b.includes(Buffer.from([0xc0])), 'the encoder compressed names');
});

test('resolvedAddresses follows the chain from the question, takes the smallest TTL, ignores unrelated records', () => {
  const got = resolvedAddresses(parseDnsMessage(chainAnswer()).message!);
  assert.deepEqual(got, [
    { address: '198.18.7.7', family: 'ipv4', name: 'www.example.test', chain: ['edge.cdn.test', 'node7.cdn.test'], ttl: 60 },
    { address: '198.18.7.8', family: 'ipv4', name: 'www.example.test', chain: ['edge.cdn.test', 'node7.cdn.test'], ttl: 30 },
  ]);
  const v6 = encodeDns({ id: 1, response: true, q: { name: 'six.test', type: DNS_TYPE.AAAA }, answers: [{ name: 'six.test', type: DNS_TYPE.AAAA, ttl: 5, data: 'fd00:198::7:1' }] });
  assert.deepEqual(resolvedAddresses(parseDnsMessage(v6).message!).map((a) => [a.address, a.family]), [['fd00:198::7:1', 'ipv6']]);
  const nx = encodeDns({ id: 2, response: true, rcode: 3, q: { name: 'nx.test', type: 1 } });
  assert.equal(parseDnsMessage(nx).message!.rcode, 3);
  assert.deepEqual(resolvedAddresses(parseDnsMessage(nx).message!), []);
});

test('a message cut at every length: never throws, keeps the records before the cut', () => {
  const b = chainAnswer();
  const full = parseDnsMessage(b).message!;
  for (let n = 0; n < b.length; n++) {
    const r = parseDnsMessage(b.subarray(0, n));
    assert.ok(r.error, `cut at ${n} is reported`);
    if (n < 12) {
      assert.equal(r.error, 'short-header');
      continue;
    }
    assert.ok(['truncated', 'bad-name'].includes(r.error!), `cut at ${n}: ${r.error}`);
    const m = r.message!;
    assert.ok(m.answers.length < full.answers.length);
    assert.deepEqual(m.answers, full.answers.slice(0, m.answers.length), 'records before the cut are intact');
  }
});

test('compression loops and bad labels are reported, not followed forever', () => {
  const loop = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  assert.equal(parseDnsMessage(loop).error, 'pointer-loop');
  const fwd = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 200, 0, 1, 0, 1]);
  assert.equal(parseDnsMessage(fwd).error, 'bad-name');
  const ext = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1]);
  assert.equal(parseDnsMessage(ext).error, 'bad-name');
  const badA = encodeDns({ id: 3, response: true, q: { name: 'a.test', type: 1 }, answers: [{ name: 'a.test', type: 1, ttl: 1, data: '1.2.3.4' }] });
  badA.writeUInt16BE(5, badA.length - 6); // rdlength 5 for an A record
  assert.ok(['bad-rdata', 'truncated'].includes(parseDnsMessage(badA).error!));
});

test('property: random and mutated messages never throw and stay bounded (seeded)', () => {
  const base = chainAnswer();
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed);
    let b: Buffer;
    if (seed % 3 === 0) b = randBytes(r, randInt(r, 0, 600));
    else {
      b = Buffer.from(base);
      for (let k = randInt(r, 1, 8); k > 0; k--) b[randInt(r, 0, b.length - 1)] = randInt(r, 0, 255);
      if (seed % 3 === 2) b = b.subarray(0, randInt(r, 0, b.length));
    }
    let res;
    try {
      res = parseDnsMessage(b);
    } catch (err) {
      assert.fail(`seed ${seed} threw: ${(err as Error).message}`);
    }
    const m = res.message;
    if (m) {
      assert.ok(m.answers.length <= MAX_RECORDS, `seed ${seed}`);
      for (const a of [...m.answers.map((x) => x.name), ...m.questions.map((q) => q.name)]) assert.ok(a.length <= 255 * 4, `seed ${seed}: name bounded`);
      resolvedAddresses(m);
    }
  }
});

test('DNS over TCP: messages cut from the stream wherever the segments split them', () => {
  const msgs = [chainAnswer(), encodeDns({ id: 9, response: true, q: { name: 'b.test', type: 1 }, answers: [{ name: 'b.test', type: 1, ttl: 9, data: '198.18.1.1' }] })];
  const stream = Buffer.concat(msgs.flatMap((m) => [Buffer.from([m.length >> 8, m.length & 0xff]), m]));
  for (let cut = 1; cut < stream.length; cut++) {
    const got: Buffer[] = [];
    const c = { messages: 0, lostMessages: 0, framingLost: 0 };
    const f = new DnsTcpFramer((m) => got.push(Buffer.from(m)), c);
    f.data(stream.subarray(0, cut), 0, 1, undefined);
    f.data(stream.subarray(cut), cut, 2, undefined);
    assert.deepEqual(got, msgs, `cut at ${cut}`);
  }
  // A hole inside the first message loses it, not the second.
  const got: Buffer[] = [];
  const c = { messages: 0, lostMessages: 0, framingLost: 0 };
  const f = new DnsTcpFramer((m) => got.push(Buffer.from(m)), c);
  f.data(stream.subarray(0, 10), 0, 1, undefined);
  f.hole(20, 'lost', 10, 1);
  f.data(stream.subarray(30), 30, 2, undefined);
  assert.deepEqual(got, [msgs[1]]);
  assert.equal(c.lostMessages, 1);
});

test('resolver cache: per process, aged out by TTL (with a floor), bounded in all and per process', () => {
  const c = new ResolverCache({ maxEntries: 10, maxPerProcess: 4, minTtlMs: 1000 });
  c.add(100, [{ address: '198.18.0.1', name: 'a.test', chain: [], ttl: 60 }, { address: '198.18.0.2', name: 'b.test', chain: ['x.test'], ttl: 0 }], 0);
  assert.equal(c.lookup(100, '198.18.0.1', 59_999)?.name, 'a.test');
  assert.equal(c.lookup(200, '198.18.0.1', 1), undefined, 'another process does not see it');
  assert.equal(c.lookup(100, '198.18.0.2', 999)?.chain[0], 'x.test', 'a TTL of 0 still lasts the floor');
  assert.equal(c.lookup(100, '198.18.0.2', 1000), undefined);
  assert.equal(c.lookup(100, '198.18.0.1', 60_000), undefined, 'expired at its TTL');
  for (let i = 0; i < 6; i++) c.add(300, [{ address: `198.18.1.${i}`, name: `n${i}.test`, chain: [], ttl: 60 }], 0);
  assert.equal(c.stats().entries, 4, 'per-process bound');
  assert.equal(c.lookup(300, '198.18.1.0', 1), undefined, 'oldest of the process evicted');
  assert.equal(c.lookup(300, '198.18.1.5', 1)?.name, 'n5.test');
  for (let p = 0; p < 20; p++) c.add(1000 + p, [{ address: '198.18.2.1', name: `p${p}.test`, chain: [], ttl: 60 }], 0);
  assert.equal(c.stats().entries, 10, 'global bound');
  assert.equal(c.lookup(1019, '198.18.2.1', 1)?.name, 'p19.test');
  assert.equal(c.lookup(1000, '198.18.2.1', 1), undefined);
  assert.equal(c.sweep(120_000), 10);
  assert.equal(c.stats().entries, 0);
  assert.equal(c.stats().processes, 0);
});

test('tracker: through a loopback stub the answer belongs to the process that asked, the stub is named as via', () => {
  const cache = new ResolverCache();
  const records: DnsQueryRecord[] = [];
  const t = new DnsTracker({ cache, counters: newDnsCounters(), onQuery: (r) => records.push(r) });
  const q = encodeDns({ id: 0x1234, response: false, q: { name: 'www.example.test', type: DNS_TYPE.A } });
  const base = { transport: 'udp' as const, wallMs: 5000 };
  // curl (pid 42) asks the stub on 127.0.0.53 (loopback tap sees it leave curl's socket)
  t.message({ ...base, tsNs: 1e9, dir: 'egress', localAddr: '127.0.0.1', localPort: 40000, remoteAddr: '127.0.0.53', remotePort: 53, owner: { pid: 42, uid: 1000, comm: 'curl' } }, q);
  // the stub (pid 7) asks upstream on its own account
  t.message({ ...base, tsNs: 1.1e9, dir: 'egress', localAddr: '198.18.0.1', localPort: 5555, remoteAddr: '198.18.0.2', remotePort: 53, owner: { pid: 7, uid: 0, comm: 'dnsmasq' } }, q);
  t.message({ ...base, tsNs: 1.2e9, dir: 'ingress', localAddr: '198.18.0.1', localPort: 5555, remoteAddr: '198.18.0.2', remotePort: 53, owner: { pid: 7, uid: 0, comm: 'dnsmasq' } }, chainAnswer());
  // and answers curl: on loopback the answer leaves the stub's socket
  t.message({ ...base, tsNs: 1.3e9, dir: 'egress', localAddr: '127.0.0.53', localPort: 53, remoteAddr: '127.0.0.1', remotePort: 40000, owner: { pid: 7, uid: 0, comm: 'dnsmasq' } }, chainAnswer());
  assert.equal(records.length, 2);
  const [stub, curl] = records;
  assert.deepEqual([stub!.pid, stub!.server, stub!.via], [7, '198.18.0.2:53', undefined]);
  assert.deepEqual([curl!.pid, curl!.comm, curl!.name, curl!.rcode, curl!.server, curl!.via?.comm], [42, 'curl', 'www.example.test', 'NOERROR', '127.0.0.53:53', 'dnsmasq']);
  assert.equal(curl!.latencyNs, 0.3e9);
  assert.equal(cache.lookup(42, '198.18.7.7', 5001)?.name, 'www.example.test', "curl's flows to the address carry the name curl asked");
  assert.equal(cache.lookup(7, '198.18.7.8', 5001)?.name, 'www.example.test');
  assert.equal(t.pendingCount, 0);
});

test('tracker: an unanswered query is reported after the timeout; the pending table is bounded', () => {
  const records: DnsQueryRecord[] = [];
  const counters = newDnsCounters();
  const t = new DnsTracker({ cache: new ResolverCache(), counters, onQuery: (r) => records.push(r), maxPending: 3, timeoutNs: 1e9 });
  for (let i = 0; i < 5; i++) {
    t.message({ tsNs: i * 1e6, wallMs: 0, transport: 'udp', dir: 'egress', localAddr: '198.18.0.1', localPort: 1000 + i, remoteAddr: '198.18.0.2', remotePort: 53, owner: { pid: 1, uid: 0 } },
      encodeDns({ id: i, response: false, q: { name: `q${i}.test`, type: 1 } }));
  }
  assert.equal(counters.pendingOverflow, 2);
  assert.equal(t.pendingCount, 3);
  t.expire(2e9);
  assert.equal(t.pendingCount, 0);
  assert.deepEqual(records.map((r) => [r.name, r.rcode]), [['q0.test', undefined], ['q1.test', undefined], ['q2.test', undefined], ['q3.test', undefined], ['q4.test', undefined]]);
});
