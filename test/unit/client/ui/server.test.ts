// SPDX-License-Identifier: Apache-2.0
// The server of `ebpfmonctl ui` over real sockets (HTTP and WebSocket clients, not
// fastify's injection): listening on 127.0.0.1 and ::1 only, 403 without this run's token
// or with a foreign Host, a WebSocket refused from another origin, and a page that gets
// the hello, then snapshots built from what the model was given.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { LiveModel } from '../../../../client/src/ui/model.js';
import { startUiServer, type UiServer } from '../../../../client/src/ui/server.js';
import type { ServerMessage, Snapshot } from '../../../../client/src/ui/protocol.js';
import { flow } from '../../../helpers/fake-monitor.js';

/** A raw HTTP/1.1 GET (so the Host header is whatever the test says). */
function rawGet(host: string, port: number, pathQ: string, hostHeader: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => s.write(`GET ${pathQ} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`));
    let out = '';
    s.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(out)?.[1] ?? 0))).on('error', reject);
  });
}

function openWs(url: string, origin?: string): Promise<{ ws: WebSocket; messages: ServerMessage[] } | { status: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, origin ? { origin } : {});
    const messages: ServerMessage[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d)) as ServerMessage));
    ws.on('open', () => resolve({ ws, messages }));
    ws.on('unexpected-response', (req, res) => {
      req.destroy(); // with this listener, ws leaves aborting the refused handshake to us
      resolve({ status: res.statusCode ?? 0 });
    });
    ws.on('error', () => resolve({ status: -1 }));
  });
}

describe('ui server', () => {
  let server: UiServer;
  let model: LiveModel;
  before(async () => {
    model = new LiveModel();
    server = await startUiServer({
      model,
      hello: { version: 'test', user: { uid: 1000, name: 'alice' }, home: { lat: 1, lon: 2, name: 'Home' }, attributions: [], databases: [], geoOff: null },
    });
  });
  after(() => server.close());

  test('listens on 127.0.0.1 and ::1 only, on one port, with a 256-bit token in the URL', () => {
    assert.deepEqual(server.urls, [`http://127.0.0.1:${server.port}/?token=${server.token}`, `http://[::1]:${server.port}/?token=${server.token}`]);
    assert.equal(Buffer.from(server.token, 'base64url').length, 32);
    const addrs = [server.app.server.address()] as Array<net.AddressInfo | string | null>;
    assert.equal((addrs[0] as net.AddressInfo).address, '127.0.0.1');
  });

  test('the page, its files and its socket need the token: 403 without it, with a wrong one, or for another Host', async () => {
    const base = `http://127.0.0.1:${server.port}`;
    for (const [u, want] of [[`/`, 403], [`/?token=`, 403], [`/?token=${server.token.slice(1)}x`, 403], [`/app.js`, 403], [`/?token=${server.token}`, 200], [`/app.js?token=${server.token}`, 200], [`/nothing.js?token=${server.token}`, 404]] as const) {
      const r = await fetch(`${base}${u}`);
      assert.equal(r.status, want, u);
      if (want === 403) assert.match(await r.text(), /^403 Forbidden: (missing|wrong) token/);
    }
    const page = await (await fetch(`${base}/?token=${server.token}`)).text();
    assert.ok(page.includes(`app.js?token=${server.token}`) && !page.includes('__EBPFMON_TOKEN__'), 'asset URLs carry the token');
    assert.equal(await rawGet('::1', server.port, `/?token=${server.token}`, `[::1]:${server.port}`), 200);
    assert.equal(await rawGet('127.0.0.1', server.port, `/?token=${server.token}`, `attacker.example:${server.port}`), 403, 'DNS rebinding');
    const ws = await openWs(`ws://127.0.0.1:${server.port}/ws?token=wrong`);
    assert.deepEqual(ws, { status: 403 });
  });

  test('a WebSocket from another origin is refused; from the page it gets hello, status and snapshots', async () => {
    const url = `ws://127.0.0.1:${server.port}/ws?token=${server.token}`;
    assert.deepEqual(await openWs(url, 'http://evil.example'), { status: 403 });
    const r = await openWs(url, `http://127.0.0.1:${server.port}`);
    assert.ok('ws' in r);
    const waitFor = async (pred: (m: ServerMessage) => boolean) => {
      for (let i = 0; i < 100 && !r.messages.some(pred); i++) await new Promise((res) => setTimeout(res, 20));
      return r.messages.find(pred);
    };
    assert.deepEqual((await waitFor((m) => m.type === 'hello')) && r.messages[0], { type: 'hello', version: 'test', user: { uid: 1000, name: 'alice' }, home: { lat: 1, lon: 2, name: 'Home' }, attributions: [], databases: [], geoOff: null });
    assert.equal(server.pages(), 1);
    // The model's state reaches the page as a snapshot of it.
    model.update([], [flow({ protocol: 'udp', localPort: 5000, remotePort: 53, pid: 42, tid: 42, comm: 'dig', txBytes: 77, rxBytes: 99, remoteGeo: { country: 'IS', city: 'Reykjavík', lat: 64.15, lon: -21.94, asn: 64512, org: 'lab', label: null } })], 1, Date.now());
    const snap = (await waitFor((m) => m.type === 'snapshot')) as Snapshot | undefined;
    assert.ok(snap);
    assert.deepEqual(snap.flows.rows.map((f) => [f.pid, f.comm, f.txBytes, f.rxBytes, f.where, f.asn]), [[42, 'dig', 77, 99, 'Reykjavík, IS', 64512]]);
    // A filter from the page changes what it is sent.
    r.ws.send(JSON.stringify({ type: 'filter', filter: { pid: 7, text: '', port: null, protocol: null, closed: true } }));
    const filtered = (await waitFor((m) => m.type === 'snapshot' && m.flows.matched === 0)) as Snapshot | undefined;
    assert.ok(filtered, 'a snapshot for pid 7 only (none)');
    r.ws.close();
  });
});
