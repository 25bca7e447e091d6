// SPDX-License-Identifier: Apache-2.0
// ClientHello/ServerHello parsing against real handshakes: Node's own TLS (OpenSSL) client
// and server, through a TCP relay in this process that records the bytes each way. Truth:
// the servername and ALPN the client was given, the version both ends report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { handshakeMessage, newTlsCounters, parseClientHello, TlsHelloParser, tlsVersionName, type TlsInfo } from '../../../../daemon/src/l7/tls/hello.js';
import { Stream, newStreamCounters } from '../../../../daemon/src/l7/stream.js';
import { randBytes, randInt, rng } from '../../../helpers/rand.js';

function selfSigned(): { key: string; cert: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=l7.test',
      '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem')], { stdio: 'ignore' });
    return { key: fs.readFileSync(path.join(dir, 'k.pem'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'c.pem'), 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One handshake through a recording relay; returns the bytes each way and what the ends saw. */
async function handshake(opts: { servername?: string; maxVersion?: tls.SecureVersion; alpn?: string[] }): Promise<{ c2s: Buffer; s2c: Buffer; protocol: string | null; alpn: string | false | null }> {
  const { key, cert } = selfSigned();
  const server = tls.createServer({ key, cert, ALPNProtocols: ['http/1.1', 'h2'] }, (s) => s.end('bye'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const relay = net.createServer((inbound) => {
    const up = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    inbound.on('data', (d) => { c2s.push(d); up.write(d); });
    up.on('data', (d) => { s2c.push(d); inbound.write(d); });
    inbound.on('end', () => up.end());
    up.on('end', () => inbound.end());
    inbound.on('error', () => up.destroy());
    up.on('error', () => inbound.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  try {
    return await new Promise((resolve, reject) => {
      const c = tls.connect({
        port: (relay.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false,
        ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
        ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
      }, () => {
        const protocol = c.getProtocol();
        const alpn = c.alpnProtocol;
        c.on('data', () => {});
        c.on('end', () => resolve({ c2s: Buffer.concat(c2s), s2c: Buffer.concat(s2c), protocol, alpn }));
      });
      c.on('error', reject);
    });
  } finally {
    relay.close();
    server.close();
  }
}

const VERSION_OF: Record<string, number> = { 'TLSv1.2': 0x0303, 'TLSv1.3': 0x0304 };

function parseBoth(c2s: Buffer, s2c: Buffer, cut: number): { info: TlsInfo; calls: string[]; counters: ReturnType<typeof newTlsCounters> } {
  const counters = newTlsCounters();
  const calls: string[] = [];
  const p = new TlsHelloParser(counters, (_i, which) => calls.push(which));
  const sc = newStreamCounters();
  const cs = new Stream(p.client, sc);
  const ss = new Stream(p.server, sc);
  cs.push({ seq: 100, len: cut, data: c2s.subarray(0, cut), tsNs: 1 });
  cs.push({ seq: 100 + cut, len: c2s.length - cut, data: c2s.subarray(cut), tsNs: 2 });
  ss.push({ seq: 5, len: s2c.length, data: s2c, tsNs: 3 });
  return { info: p.info, calls, counters };
}

for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
  test(`a real ${v} handshake: SNI, offered versions, ALPN and the negotiated version, wherever the ClientHello is split`, async () => {
    const h = await handshake({ servername: 'api.l7.test', maxVersion: v, alpn: ['http/1.1'] });
    assert.equal(h.protocol, v);
    const first = handshakeMessage(h.c2s);
    assert.ok(first.ok && first.type === 1);
    for (let cut = 1; cut < Math.min(h.c2s.length, 600); cut += 1) {
      const { info, calls, counters } = parseBoth(h.c2s, h.s2c, cut);
      assert.equal(info.serverName, 'api.l7.test', `cut ${cut}`);
      assert.equal(info.version, VERSION_OF[v]);
      assert.equal(tlsVersionName(info.version!), v.replace('TLSv', 'TLS '));
      assert.ok(info.offeredVersions.includes(VERSION_OF[v]!));
      assert.deepEqual(info.alpn, ['http/1.1']);
      if (v === 'TLSv1.2') assert.equal(info.alpnSelected, h.alpn);
      assert.deepEqual(calls.sort(), ['client', 'server']);
      assert.equal(counters.malformed, 0);
    }
  });
}

test('no SNI when the client sends none (an address as the host)', async () => {
  const h = await handshake({});
  const { info } = parseBoth(h.c2s, h.s2c, 10);
  assert.equal(info.serverName, undefined);
  assert.ok(info.version);
});

test('property: garbage and mutated hellos never throw (seeded)', async () => {
  const h = await handshake({ servername: 'fuzz.test' });
  const m = handshakeMessage(h.c2s);
  assert.ok(m.ok);
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed);
    const body = Buffer.from(m.body);
    for (let k = randInt(r, 1, 6); k > 0; k--) body[randInt(r, 0, body.length - 1)] = randInt(r, 0, 255);
    try {
      parseClientHello(seed % 2 ? body.subarray(0, randInt(r, 0, body.length)) : body);
      handshakeMessage(randBytes(r, randInt(r, 0, 100)));
      const g = randBytes(r, randInt(r, 5, 400));
      g[0] = 22; g[1] = 3; g[2] = 1;
      handshakeMessage(g);
    } catch (err) {
      assert.fail(`seed ${seed} threw: ${(err as Error).message}`);
    }
  }
});
