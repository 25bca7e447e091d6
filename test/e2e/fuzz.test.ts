// SPDX-License-Identifier: Apache-2.0
// Fuzzing the JSON-RPC socket of a real daemon (monitor and load balancer configured):
// at least 10,000 generated inputs per run - broken framing, envelopes JSON-RPC 2.0 does
// not allow, and every method of the contract with generated params (plausible keys with
// hostile values, unknown keys, wrong shapes). Seeded (EBPFMON_FUZZ_SEED replays a run) and
// bounded in count and time. Every input must get well-formed answers - a result or an
// error from the contract's table, never Internal - or, for an oversized line, the
// documented error and a closed connection; the daemon keeps serving; and its RSS comes
// back to within 20% of where it was after warm-up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { type Lab, type Host } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { destroyMonitorLab, monitorLab, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import { METHODS } from '../../daemon/src/contract/methods.js';
import { rng as prng } from '../helpers/rand.js';

const SEED = Number(process.env.EBPFMON_FUZZ_SEED ?? 0x5eed18);
const INPUTS = 10_000;
const MAX_MESSAGE = 65536;
const CODES = new Set<number>(Object.values(ERRORS).map((e) => e.code));

const rnd = prng(SEED);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

// Keys the contract's params use, so generated objects reach the validators' deeper paths.
const KEYS = [
  'pid', 'uid', 'comm', 'limit', 'sort', 'protocol', 'remoteAddr', 'localAddr', 'port', 'interface', 'includeClosed',
  'types', 'subscription', 'vip', 'backend', 'weight', 'mode', 'health', 'rule', 'type', 'path', 'intervalMs', 'timeoutMs',
  'rise', 'fall', 'since', 'by', '__proto__', 'constructor', 'toString',
] as const;
const STRINGS = [
  '', 'tcp', 'udp', 'icmp', 'nat', 'dsr', 'bytes', 'packets', 'age', 'recent', 'exec', 'connect,close', 'lo', '*', 'eth0', 'x'.repeat(300),
  '198.18.0.1', '198.19.7.7:80/tcp', '[fd00:198::7]:53/udp', '198.18.0.0/15', '0.0.0.0/0', '::/0', '10.0.0.0/33', '256.1.1.1',
  '198.18.1.2:8080', 'icmp:echo-request', 'tcp:dport:22', '198.18.9.0/24', '../../etc/passwd', 'é漢字🙂', '\u0000', 'null', '1e309',
];
const NUMBERS = [0, 1, -1, 2, 80, 65535, 65536, 0x7fffffff, 0x80000000, 2 ** 53, -(2 ** 53), 1.5, -0.0, 1e308, Number.MAX_VALUE];

function value(depth = 0): unknown {
  switch (int(depth > 2 ? 4 : 7)) {
    case 0: return null;
    case 1: return rnd() < 0.5;
    case 2: return pick(NUMBERS);
    case 3: return pick(STRINGS);
    case 4: return Array.from({ length: int(4) }, () => value(depth + 1));
    case 5: return params(depth + 1);
    default: return int(1000);
  }
}

function params(depth = 0): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = int(4); i > 0; i--) {
    const k = rnd() < 0.85 ? pick(KEYS) : `k${int(100)}`;
    // defineProperty: a "__proto__" key must be an own key of the JSON, as a client would send it
    Object.defineProperty(o, k, { value: value(depth), enumerable: true, writable: true, configurable: true });
  }
  return o;
}

const METHOD_NAMES = Object.values(METHODS);

/** One generated line (without its newline), and whether the daemon must close the connection. */
function input(id: number): { line: string; closes: boolean } {
  const request = () => {
    const r: Record<string, unknown> = { jsonrpc: '2.0', method: rnd() < 0.9 ? pick(METHOD_NAMES) : pick(['', 'x.y', 'status ', 'Status', 'rpc.discover']) };
    if (rnd() < 0.9) r.id = rnd() < 0.8 ? id : pick([null, 'str', {}, [1], 1.5, true, -1]);
    if (rnd() < 0.85) r.params = rnd() < 0.9 ? params() : value();
    if (rnd() < 0.05) r.jsonrpc = pick(['1.0', 2, null]);
    if (rnd() < 0.03) r.extra = value();
    return r;
  };
  switch (int(12)) {
    case 0: { // broken JSON
      const s = JSON.stringify(request());
      return { line: s.slice(0, 1 + int(s.length - 1)), closes: false };
    }
    case 1: // a scalar or an empty structure
      return { line: JSON.stringify(pick([null, 0, 'status', [], {}, true, [null], [[]], [{}]])), closes: false };
    case 2: // a batch, sometimes over the limit, sometimes with junk items
      return { line: JSON.stringify(Array.from({ length: 1 + int(rnd() < 0.1 ? 80 : 8) }, () => (rnd() < 0.8 ? request() : value()))), closes: false };
    case 3: // deep nesting inside the size limit
      return { line: `{"jsonrpc":"2.0","id":${id},"method":"flows.list","params":{"pid":${'['.repeat(2000 + int(5000))}${']'.repeat(2000)}}}`, closes: false };
    case 4: // an oversized line: the error, then the connection is closed
      if (rnd() < 0.1) return { line: `{"jsonrpc":"2.0","id":${id},"method":"status","params":{"pad":"${'x'.repeat(MAX_MESSAGE)}"}}`, closes: true };
      return { line: JSON.stringify(request()), closes: false };
    case 5: // bytes that are not UTF-8 text
      return { line: Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)).filter((b) => b !== 10)).toString('latin1'), closes: false };
    default:
      return { line: JSON.stringify(request()), closes: false };
  }
}

/** A connection that sends one line, then a sentinel, and collects what came back in between. */
class Conn {
  private buf = '';
  private replies: Array<Record<string, unknown>> = [];
  private waiter: (() => void) | null = null;
  closed = false;
  private constructor(private readonly s: net.Socket) {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const m = JSON.parse(line) as Record<string, unknown>;
        if (typeof m.method === 'string') continue; // an event notification of a subscription
        this.replies.push(m);
      }
      this.waiter?.();
    });
    s.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    s.on('error', () => undefined);
  }
  static open(path: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }
  async exchange(line: string, sentinel: number): Promise<Array<Record<string, unknown>>> {
    this.replies = [];
    // The sentinel is the cheapest full round trip (an unknown method: MethodNotFound), so the
    // run measures the fuzzed line, not 10,000 status walks.
    this.s.write(`${line}\n{"jsonrpc":"2.0","id":"sentinel-${sentinel}","method":"fuzz.sentinel"}\n`);
    const t0 = Date.now();
    while (!this.closed && !this.replies.some((r) => r.id === `sentinel-${sentinel}`)) {
      if (Date.now() - t0 > 30_000) throw new Error(`no answer to ${line.slice(0, 200)}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 200);
      });
    }
    return this.replies.filter((r) => r.id !== `sentinel-${sentinel}`);
  }
  close(): void {
    this.s.destroy();
  }
}

function wellFormed(r: unknown, line: string): void {
  const items = Array.isArray(r) ? r : [r];
  for (const m of items as Array<Record<string, unknown>>) {
    assert.equal(m.jsonrpc, '2.0', `${JSON.stringify(m)} for ${line.slice(0, 200)}`);
    assert.ok(m.id === null || typeof m.id === 'string' || Number.isInteger(m.id), `id ${JSON.stringify(m.id)}`);
    if ('error' in m) {
      const e = m.error as { code: number; message: string };
      assert.ok(CODES.has(e.code), `code ${e.code} is in the contract's table: ${JSON.stringify(m)}`);
      assert.notEqual(e.code, ERRORS.Internal.code, `Internal for ${line.slice(0, 300)}: ${e.message}`);
      assert.ok(typeof e.message === 'string' && e.message.length > 0);
    } else assert.ok('result' in m, `result or error: ${JSON.stringify(m)}`);
  }
}

const rssKb = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

describe(`JSON-RPC fuzz (seed ${SEED}; EBPFMON_FUZZ_SEED=${SEED} replays it)`, privileged({ timeout: 600_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let daemon: TestDaemon;

  before(async () => {
    let link;
    ({ lab, mon, link } = await monitorLab());
    daemon = await startDaemon(mon, {
      config: { interfaces: [link.a.ifname], rpc: { maxMessageBytes: MAX_MESSAGE, maxSubscriptionsPerClient: 4, subscriberQueue: 1000 }, lb: { interfaces: [link.a.ifname], xdpMode: 'generic', healthChecks: false },
        // The application layer on, so dns.list/http.list run (not only answer NotAvailable).
        l7: { dns: true, http: true } },
    });
  });
  after(() => destroyMonitorLab(daemon, lab));

  test(`${INPUTS} generated inputs: every answer well formed, never Internal; the daemon keeps serving; RSS back within 20%`, async () => {
    let conn = await Conn.open(daemon.socketPath);
    let baseline = 0;
    let closes = 0;
    const deadline = Date.now() + 8 * 60_000;
    for (let i = 0; i < INPUTS; i++) {
      if (Date.now() > deadline) assert.fail(`bounded in time: only ${i} inputs in 8 minutes`);
      if (i === 500) baseline = rssKb(daemon.pid); // after warm-up
      const { line, closes: mustClose } = input(i);
      const replies = await conn.exchange(line, i);
      if (mustClose) {
        assert.ok(conn.closed, 'an oversized line closes the connection');
        assert.equal((replies[0]?.error as { code?: number } | undefined)?.code, ERRORS.MessageTooLarge.code);
        closes++;
      } else assert.ok(!conn.closed, `the connection stays open after ${line.slice(0, 200)}`);
      for (const r of replies) wellFormed(r, line);
      if (conn.closed || i % 250 === 249) {
        conn.close();
        conn = await Conn.open(daemon.socketPath);
      }
    }
    conn.close();
    assert.ok(closes > 0, 'the generator exercised oversized lines');
    assert.ok((await daemon.call('status')).version, 'still serving');
    // Memory comes back: poll while the garbage collector catches up.
    let final = rssKb(daemon.pid);
    for (let t = 0; t < 30 && final > baseline * 1.2; t++) {
      await new Promise((r) => setTimeout(r, 500));
      final = rssKb(daemon.pid);
    }
    assert.ok(final <= baseline * 1.2, `RSS ${final} kB vs ${baseline} kB after warm-up`);
  });
});
