// SPDX-License-Identifier: Apache-2.0
// The HTTP/1.x exchange parser, fed TCP-like pieces built here from conversations whose
// requests and responses the test wrote itself (the truth it compares with). The
// integration test checks the same parser against nginx's access log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpFlowParser, MAX_LINE, MAX_PENDING, newHttpCounters, type HttpExchange } from '../../../../daemon/src/l7/http/parser.js';
import type { Piece } from '../../../../daemon/src/l7/stream.js';
import { randBytes, randInt, rng } from '../../../helpers/rand.js';

interface Ex { req: Buffer; res: Buffer; method: string; path: string; status: number; host?: string }

function ex(method: string, target: string, status: number, opts: { body?: number; reqBody?: number; chunked?: number[]; host?: string; noLength?: boolean } = {}): Ex {
  const reqBody = Buffer.alloc(opts.reqBody ?? 0, 0x61);
  const req = Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: ${opts.host ?? 'api.example.test'}\r\nUser-Agent: t\r\n${reqBody.length ? `Content-Length: ${reqBody.length}\r\n` : ''}\r\n`);
  let res: Buffer;
  if (opts.chunked) {
    const parts = opts.chunked.map((n) => Buffer.concat([Buffer.from(`${n.toString(16)};x=y\r\n`), Buffer.alloc(n, 0x62), Buffer.from('\r\n')]));
    res = Buffer.concat([Buffer.from(`HTTP/1.1 ${status} OK\r\nTransfer-Encoding: chunked\r\n\r\n`), ...parts, Buffer.from('0\r\nX-Trailer: 1\r\n\r\n')]);
  } else if (opts.noLength) {
    res = Buffer.concat([Buffer.from(`HTTP/1.1 ${status} OK\r\nConnection: close\r\n\r\n`), Buffer.alloc(opts.body ?? 0, 0x63)]);
  } else {
    const body = method === 'HEAD' || status === 204 || status === 304 ? Buffer.alloc(0) : Buffer.alloc(opts.body ?? 10, 0x63);
    res = Buffer.concat([Buffer.from(`HTTP/1.1 ${status} X\r\nContent-Length: ${method === 'HEAD' ? 999 : body.length}\r\n\r\n`), body]);
  }
  const path = target.replace(/\?.*$/, '');
  return { req: Buffer.concat([req, reqBody]), res, method, path, status, ...(opts.host ? { host: opts.host } : {}) };
}

/** TCP-like pieces of a conversation: [dir, piece] in wire order. */
function conversation(exs: Ex[], o: { mss?: number; pipelined?: boolean; capture?: number } = {}): Array<[0 | 1, Piece]> {
  const mss = o.mss ?? 1460;
  const out: Array<[0 | 1, Piece]> = [];
  let cseq = 0xfffff000; // wraps mid-conversation
  let sseq = 0x7ffff000;
  let t = 1000;
  const send = (dir: 0 | 1, bytes: Buffer) => {
    for (let i = 0; i < bytes.length; i += mss) {
      const part = bytes.subarray(i, i + mss);
      const seq = dir === 0 ? cseq : sseq;
      const ack = dir === 0 ? sseq : cseq;
      out.push([dir, { seq, len: part.length, data: o.capture !== undefined ? part.subarray(0, o.capture) : part, tsNs: (t += 10), ack }]);
      if (dir === 0) cseq = (cseq + part.length) >>> 0;
      else sseq = (sseq + part.length) >>> 0;
    }
  };
  if (o.pipelined) {
    send(0, Buffer.concat(exs.map((e) => e.req)));
    send(1, Buffer.concat(exs.map((e) => e.res)));
  } else {
    for (const e of exs) {
      send(0, e.req);
      send(1, e.res);
    }
  }
  return out;
}

function run(pieces: Array<[0 | 1, Piece]>, opts: { keepQuery?: boolean; tls?: boolean; swapDirs?: boolean } = {}) {
  const got: HttpExchange[] = [];
  const counters = newHttpCounters();
  const p = new HttpFlowParser({ onExchange: (e) => got.push(e), counters, keepQuery: opts.keepQuery, tls: opts.tls });
  for (const [d, piece] of pieces) p.piece((opts.swapDirs ? 1 - d : d) as 0 | 1, piece);
  p.end(1e12);
  return { got, counters, parser: p };
}

const summary = (e: HttpExchange) => [e.method, e.path, e.status];

test('100 keep-alive exchanges, any segment size, either direction first: all paired, sizes exact', () => {
  const exs = Array.from({ length: 100 }, (_, i) => ex(i % 7 === 0 ? 'POST' : 'GET', `/items/${i}?page=${i}`, i % 13 === 0 ? 404 : 200, { body: (i * 37) % 3000, reqBody: i % 7 === 0 ? 100 + i : 0 }));
  for (const mss of [1, 7, 100, 1460, 65536]) {
    for (const swapDirs of [false, true]) {
      const { got, counters } = run(conversation(exs, { mss }), { swapDirs });
      assert.deepEqual(got.map(summary), exs.map((e) => [e.method, e.path, e.status]), `mss ${mss}`);
      assert.deepEqual(got.map((e) => [e.requestBytes, e.responseBytes]), exs.map((e) => [e.req.length, e.res.length]));
      assert.ok(got.every((e) => e.host === 'api.example.test' && e.flags.length === 0 && e.ttfbNs! >= 0 && e.tls === false));
      assert.equal(counters.desyncs, 0);
    }
  }
});

test('the query string is dropped unless keepQuery; absolute-form targets give the host', () => {
  const exs = [ex('GET', '/a?token=secret', 200), ex('GET', 'http://Other.Test:8080/b?x=1#frag', 200)];
  assert.deepEqual(run(conversation(exs)).got.map((e) => [e.path, e.host]), [['/a', 'api.example.test'], ['/b', 'other.test:8080']]);
  assert.deepEqual(run(conversation(exs), { keepQuery: true }).got.map((e) => e.path), ['/a?token=secret', '/b?x=1']);
});

test('pipelined requests in one segment and coalesced responses are paired in order', () => {
  const exs = [ex('GET', '/1', 200, { body: 5 }), ex('HEAD', '/2', 200), ex('GET', '/3', 304), ex('DELETE', '/4', 204), ex('GET', '/5', 500, { chunked: [3, 4000, 1] }), ex('POST', '/6', 201, { reqBody: 50 })];
  for (const mss of [3, 1460, 100000]) {
    const { got } = run(conversation(exs, { pipelined: true, mss }));
    assert.deepEqual(got.map(summary), exs.map((e) => [e.method, e.path, e.status]), `mss ${mss}`);
    assert.deepEqual(got.map((e) => e.responseBytes), exs.map((e) => e.res.length));
  }
});

test('chunked bodies split at every byte position are skipped exactly', () => {
  const e = ex('GET', '/c', 200, { chunked: [1, 17, 300] });
  const next = ex('GET', '/after', 200);
  const all = conversation([e, next], { mss: 1e6 });
  const res = all[1]![1];
  for (let cut = 1; cut < res.len; cut++) {
    const a: Piece = { ...res, len: cut, data: res.data.subarray(0, cut) };
    const b: Piece = { ...res, seq: (res.seq + cut) >>> 0, len: res.len - cut, data: res.data.subarray(cut) };
    const { got, counters } = run([all[0]!, [1, a], [1, b], all[2]!, all[3]!]);
    assert.deepEqual(got.map(summary), [['GET', '/c', 200], ['GET', '/after', 200]], `cut ${cut}`);
    assert.equal(got[0]!.responseBytes, e.res.length);
    assert.equal(counters.desyncs, 0);
  }
});

test('a 3 KiB URL over 536-byte segments is reassembled whole; a request line over 8 KiB is counted, not kept', () => {
  const long = `/search/${'x'.repeat(3072)}`;
  const { got } = run(conversation([ex('GET', long, 200)], { mss: 536 }));
  assert.equal(got[0]!.path, long);
  const huge = `/${'y'.repeat(MAX_LINE + 10)}`;
  const r = run(conversation([ex('GET', huge, 414), ex('GET', '/ok', 200)], { mss: 536 }));
  assert.deepEqual(r.got.map((e) => [e.method, e.path, e.status, e.flags]), [['GET', undefined, 414, ['request-line-too-long']], ['GET', '/ok', 200, []]]);
  assert.equal(r.counters.linesTooLong, 1);
  assert.ok(r.parser.heldBytes === 0);
});

test('reordered segments are put back in order; retransmissions are not counted twice', () => {
  const exs = Array.from({ length: 20 }, (_, i) => ex('GET', `/r/${i}`, 200, { body: 2000 }));
  const pieces = conversation(exs, { mss: 300 });
  const r = rng(7);
  const shuffled = [...pieces];
  // Within a direction only: the capture is causal across directions (a response is
  // captured after its request left), the network reorders inside one.
  for (let i = 0; i + 2 < shuffled.length; i += 3) if (r() < 0.5 && shuffled[i]![0] === shuffled[i + 1]![0]) [shuffled[i], shuffled[i + 1]] = [shuffled[i + 1]!, shuffled[i]!];
  const dup = shuffled.flatMap((p, i) => (i % 5 === 0 ? [p, p] : [p]));
  const { got, counters } = run(dup);
  assert.deepEqual(got.map(summary), exs.map((e) => [e.method, e.path, e.status]));
  assert.deepEqual(got.map((e) => e.responseBytes), exs.map((e) => e.res.length));
  assert.ok(counters.reordered > 0 && counters.duplicates > 0);
});

test('a lost response head costs that exchange only: later ones pair by acknowledgment', () => {
  const exs = Array.from({ length: 6 }, (_, i) => ex('GET', `/l/${i}`, 200 + i, { body: 100 }));
  const pieces = conversation(exs, { mss: 1460 });
  // Drop the whole response of exchange 2 (piece index 5) and the request of exchange 4 (index 8).
  const kept = pieces.filter((_, i) => i !== 5 && i !== 8);
  const { got, counters } = run(kept);
  const byPath = Object.fromEntries(got.map((e) => [e.path, e]));
  for (const i of [0, 1, 3, 5]) assert.equal(byPath[`/l/${i}`]?.status, 200 + i, `exchange ${i}`);
  assert.deepEqual(byPath['/l/2']?.flags, ['unanswered']);
  assert.equal(byPath['/l/4'], undefined, 'the lost request is not invented');
  assert.equal(counters.orphanResponses, 1, 'its response has no request');
});

test('bodies the kernel did not copy (captured prefixes) are counted, not needed', () => {
  const exs = Array.from({ length: 10 }, (_, i) => ex('GET', `/big/${i}`, 200, { body: 50_000 }));
  const { got, counters } = run(conversation(exs, { mss: 65536, capture: 2048 }));
  assert.deepEqual(got.map(summary), exs.map((e) => [e.method, e.path, e.status]));
  assert.deepEqual(got.map((e) => e.responseBytes), exs.map((e) => e.res.length));
  assert.ok(counters.bytesUncaptured > 400_000);
});

test('100-continue, a body that runs to the close, and TLS marking', () => {
  const req = Buffer.from('PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
  const pieces: Array<[0 | 1, Piece]> = [
    [0, { seq: 0, len: req.length, data: req, tsNs: 1 }],
    [1, { seq: 0, len: 25, data: Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'), tsNs: 2 }],
    [0, { seq: req.length, len: 4, data: Buffer.from('abcd'), tsNs: 3 }],
    [1, { seq: 25, len: 47, data: Buffer.from('HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil-the-close'), tsNs: 4 }],
  ];
  const { got, counters } = run(pieces, { tls: true });
  assert.deepEqual(got.map((e) => [e.method, e.path, e.status, e.requestBytes, e.responseBytes, e.tls]), [['PUT', '/up', 200, req.length + 4, 72, true]]);
  assert.equal(counters.interim, 1);
});

test('property: garbage, cut and mutated conversations never throw, and state stays bounded (seeded)', () => {
  const base = conversation([ex('GET', '/a', 200, { chunked: [5, 10] }), ex('POST', '/b', 201, { reqBody: 30 }), ex('GET', '/c', 200)], { mss: 40 });
  for (let seed = 1; seed <= 1500; seed++) {
    const r = rng(seed);
    const counters = newHttpCounters();
    const p = new HttpFlowParser({ onExchange: () => {}, counters });
    const n = randInt(r, 1, 200);
    try {
      for (let i = 0; i < n; i++) {
        const dir = (r() < 0.5 ? 0 : 1) as 0 | 1;
        let piece: Piece;
        if (seed % 2 === 0) {
          const data = randBytes(r, randInt(r, 0, 3000));
          if (r() < 0.3) data.write(['GET / HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'Content-Length: 99999999\r\n', 'Transfer-Encoding: chunked\r\n\r\n'][randInt(r, 0, 3)]!, randInt(r, 0, Math.max(0, data.length - 40)));
          piece = { seq: randInt(r, 0, 2 ** 32 - 1), len: data.length + randInt(r, 0, 5000), data, tsNs: i, ack: randInt(r, 0, 2 ** 32 - 1) };
        } else {
          const [, b] = base[randInt(r, 0, base.length - 1)]!;
          const data = Buffer.from(b.data);
          if (r() < 0.5) data[randInt(r, 0, data.length - 1)] = randInt(r, 0, 255);
          piece = { ...b, data: data.subarray(0, randInt(r, 0, data.length)), tsNs: i };
        }
        p.piece(dir, piece);
        assert.ok(p.pendingCount <= MAX_PENDING, `seed ${seed}: pending bounded`);
        assert.ok(p.heldBytes <= 2 * (64 * 1024 + 3000), `seed ${seed}: held bytes bounded (two directions)`);
      }
      p.end(1e9);
    } catch (err) {
      assert.fail(`seed ${seed} threw: ${(err as Error).stack}`);
    }
  }
});
