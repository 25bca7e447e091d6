// SPDX-License-Identifier: Apache-2.0
// The L7 building blocks against real servers, in lab namespaces. The daemon is not wired
// yet: test/integration/l7-driver.ts loads the L7 classifier prototype, the L7 object and
// the socket-owner hooks in the client's namespace and prints what the pipeline reports.
// Truths: nginx's own access log; dnsmasq's configured records and the pid the test spawned.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, jsonLines, sh, type Host, type LinkInfo } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';

const DRIVER = path.join(ROOT, 'build/js/test/integration/l7-driver.js');
type Line = Record<string, unknown>;

describe('L7: DNS names and HTTP requests from real servers', privileged({ timeout: 180_000 }), () => {
  let lab: Lab;
  let client: Host;
  let server: Host;
  let link: LinkInfo;
  let dir: string;
  let driver: ReturnType<typeof jsonLines>;
  let driverProc: ReturnType<Host['spawn']>;
  const port = 8080;

  before(async () => {
    requireTool('nginx', 'dnsmasq', 'curl', 'ethtool');
    lab = await Lab.create();
    client = await lab.host('cli');
    server = await lab.host('srv');
    link = await lab.link(client, server);
    dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755);
    // nginx: its access log is the truth for paths and statuses.
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  log_format l7 '$request_method $request_uri $status';
  access_log ${dir}/access.log l7;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  keepalive_requests 10000; large_client_header_buffers 4 16k;
  server {
    listen ${link.b.ip4}:${port};
    location /missing { return 404; }
    location /chunked { chunked_transfer_encoding on; return 200 "chunky"; }
    location / { return 200 "hello from nginx\\n"; }
  }
}`);
    const ng = server.spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir]);
    let ngErr = '';
    ng.stderr!.on('data', (d) => (ngErr += d));
    for (let i = 0; ; i++) {
      if ((await client.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${link.b.ip4}:${port}/ready`], { allowFail: true })).stdout === '200') break;
      assert.ok(i < 50, `nginx did not start: ${ngErr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // dnsmasq: fixed A, AAAA and CNAME records.
    server.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', `--listen-address=${link.b.ip4}`, '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--host-record=web.l7.test,${link.b.ip4},${link.b.ip6}`, '--cname=alias.l7.test,web.l7.test', '--log-facility=-']);
    // A stub on the client's loopback that forwards to it (as systemd-resolved or a local dnsmasq would).
    client.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--server=${link.b.ip4}`, '--cache-size=0', '--log-facility=-']);
    // Segments as the wire carries them (no GSO super-packets), so reassembly is exercised.
    await client.exec('ethtool', ['-K', link.a.ifname, 'tso', 'off', 'gso', 'off']);
    driverProc = client.spawn(process.execPath, [DRIVER, link.a.ifname]);
    driver = jsonLines(driverProc);
    await driver.next((o) => o.event === 'ready', 30_000);
    await new Promise((r) => setTimeout(r, 300)); // dnsmasq up
  });
  after(async () => {
    if (driverProc?.pid && driverProc.exitCode === null) {
      driverProc.kill('SIGTERM');
      await new Promise((r) => driverProc.once('exit', r));
    }
    await lab?.destroy();
  });

  const accessLog = () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8').trim().split('\n').filter((l) => !l.includes('/ready'));
  const httpLines = (pred: (o: Line) => boolean) => driver.lines.filter((o) => o.event === 'http' && pred(o));
  async function waitHttp(pred: (o: Line) => boolean, n: number): Promise<Line[]> {
    for (let i = 0; i < 100 && httpLines(pred).length < n; i++) await new Promise((r) => setTimeout(r, 100));
    return httpLines(pred);
  }

  test('100 keep-alive requests from curl: 100 records whose paths and statuses equal nginx\'s access log, attributed to curl', async () => {
    const before = accessLog().length;
    const urls = Array.from({ length: 100 }, (_, i) => `http://${link.b.ip4}:${port}/${i % 10 === 3 ? 'missing' : 'ka'}/${i}?q=${i}`);
    const c = client.spawn('curl', ['-s', '-o', '/dev/null', ...urls]);
    const code = await new Promise((r) => c.once('exit', r));
    assert.equal(code, 0);
    const log = accessLog().slice(before).filter((l) => l.includes('/ka/') || l.includes('/missing/'));
    assert.equal(log.length, 100);
    const got = await waitHttp((o) => /^\/(ka|missing)\//.test(String(o.path)), 100);
    // nginx logs the query string ($request_uri); the records drop it (l7.keepQuery off).
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status}`), log.map((l) => l.replace(/\?\S*/, '')));
    assert.ok(got.every((o) => o.pid === c.pid && o.host === `${link.b.ip4}:${port}` && (o.ttfbNs as number) >= 0), JSON.stringify(got[0]));
  });

  test('a 3 KiB URL over a route with a 500-byte MSS is reassembled whole', async () => {
    await server.exec('ip', ['route', 'replace', `${link.a.ip4}/32`, 'dev', link.b.ifname, 'advmss', '500']);
    const long = `/long/${'x'.repeat(3072)}`;
    const c = client.spawn('curl', ['-s', '-o', '/dev/null', `http://${link.b.ip4}:${port}${long}`]);
    await new Promise((r) => c.once('exit', r));
    assert.ok(accessLog().some((l) => l === `GET ${long} 200`), 'nginx got it');
    const got = await waitHttp((o) => String(o.path).startsWith('/long/'), 1);
    assert.equal(got[0]?.path, long);
    assert.equal(got[0]?.status, 200);
    const stats = driver.lines.length;
    void stats;
  });

  test('a pipelined batch (5 requests in one write) is paired in order', async () => {
    const reqs = ['/pipe/1', '/missing/pipe2', '/pipe/3', '/chunked/4', '/pipe/5'].map((p) => `GET ${p} HTTP/1.1\r\nHost: p\r\n\r\n`).join('');
    const script = `const s=require('net').connect(${port},'${link.b.ip4}',()=>s.write(${JSON.stringify(reqs)}));let n=0;s.on('data',d=>{n+=(d.toString().match(/HTTP\\/1\\.1 /g)||[]).length;if(n>=5)s.end()});`;
    const c = client.spawn(process.execPath, ['-e', script]);
    await new Promise((r) => c.once('exit', r));
    const log = accessLog().filter((l) => l.includes('pipe') || l.includes('/chunked/4'));
    assert.equal(log.length, 5);
    const got = await waitHttp((o) => String(o.path).includes('pipe') || o.path === '/chunked/4', 5);
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status}`), log);
  });

  for (const via of ['direct', 'stub on loopback'] as const) {
    test(`DNS ${via}: the query is listed with dnsmasq's answers, and the address maps to the name the client asked`, async () => {
      const serverIp = via === 'direct' ? link.b.ip4 : '127.0.0.1';
      const name = 'alias.l7.test';
      const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${serverIp}']);` +
        `d.resolve4('${name}').then(a=>d.resolve6('${name}').then(b=>{console.log(JSON.stringify({a,b}));` +
        `const s=require('net').connect(${port},a[0],()=>{s.end('GET /named HTTP/1.0\\r\\n\\r\\n')});s.on('close',()=>process.exit(0))}))`;
      const c = client.spawn(process.execPath, ['-e', script]);
      const out = jsonLines(c);
      const ans = await out.next((o) => Array.isArray(o.a), 10_000) as { a: string[]; b: string[] };
      await new Promise((r) => c.once('exit', r));
      assert.deepEqual(ans.a, [link.b.ip4]);
      const recs = await (async () => {
        for (let i = 0; i < 50; i++) {
          const r = driver.lines.filter((o) => o.event === 'dns' && o.pid === c.pid && o.name === name);
          if (r.length >= 2) return r;
          await new Promise((res) => setTimeout(res, 100));
        }
        return driver.lines.filter((o) => o.event === 'dns' && o.name === name);
      })();
      const a = recs.find((r) => r.type === 'A');
      const aaaa = recs.find((r) => r.type === 'AAAA');
      assert.ok(a && aaaa, `queries recorded for pid ${c.pid}: ${JSON.stringify(recs)}`);
      assert.equal(a.pid, c.pid);
      assert.equal(a.rcode, 'NOERROR');
      assert.equal(a.server, `${serverIp}:53`);
      const answers = a.answers as Array<{ type: string; data: string }>;
      assert.deepEqual(answers.map((x) => [x.type, x.data]), [['CNAME', 'web.l7.test'], ['A', link.b.ip4]]);
      assert.deepEqual((aaaa.answers as Array<{ type: string; data: string }>).filter((x) => x.type === 'AAAA').map((x) => x.data), ans.b);
      if (via === 'stub on loopback') assert.equal((a.via as { comm?: string; pid: number } | undefined)?.pid !== undefined, true, 'the stub is named');
      void sh;
    });
  }
});
