// SPDX-License-Identifier: Apache-2.0
// The application layer against real servers and clients, in lab namespaces. The daemon is
// not wired yet: test/integration/l7-driver.ts loads the L7 classifier prototype, the L7
// object, the socket-owner and exec hooks and the OpenSSL uprobes in the client's
// namespace, and prints what the L7 service reports (contract shapes); it serves
// dns.list/http.list on a Unix socket with the caller known by SO_PEERCRED.
// Truths: nginx's own access log; dnsmasq's configured records; the pids the test spawned
// and the users it created; what curl, openssl s_client and the resolver themselves
// printed; /proc/<pid>/maps of the processes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab, jsonLines, sh, type Host, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';
import type { DnsQuery, HttpRequest, L7Status } from '../../daemon/src/contract/l7.js';

const DRIVER = path.join(ROOT, 'build/js/test/integration/l7-driver.js');
type Line = Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));
const output = (c: ChildProcess) => {
  let s = '';
  c.stdout?.setEncoding('utf8').on('data', (d: string) => (s += d));
  return () => s;
};

describe('L7: DNS names, HTTP requests and decrypted HTTPS from real servers', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let client: Host;
  let server: Host;
  let link: LinkInfo;
  let dir: string;
  let driver: ReturnType<typeof jsonLines>;
  let driverProc: ChildProcess;
  let apiSock: string;
  const port = 8080;
  const tlsPort = 8443;
  const stallPort = 8444;
  const sni = 'secure.l7.test';

  before(async () => {
    requireTool('nginx', 'dnsmasq', 'curl', 'ethtool', 'openssl', 'wget', 'setpriv');
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
      await sleep(100);
    }
    // dnsmasq: fixed A, AAAA and CNAME records.
    server.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', `--listen-address=${link.b.ip4}`, '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--host-record=web.l7.test,${link.b.ip4},${link.b.ip6}`, '--cname=alias.l7.test,web.l7.test',
      `--host-record=alice.l7.test,${link.b.ip4}`, `--host-record=bob.l7.test,${link.b.ip4}`, '--log-facility=-']);
    // A stub on the client's loopback that forwards to it (as systemd-resolved or a local dnsmasq would).
    client.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--server=${link.b.ip4}`, '--cache-size=0', '--log-facility=-']);
    // TLS: openssl s_server serving files (-WWW), and one that never answers (a client stays connected).
    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    fs.writeFileSync(path.join(www, 'page.txt'), 'a page served over TLS\n');
    await sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-days', '1', '-subj', `/CN=${sni}`, '-addext', `subjectAltName=DNS:${sni}`]);
    const tlsArgs = ['-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem'), '-quiet'];
    server.spawn('openssl', ['s_server', '-WWW', '-accept', `${link.b.ip4}:${tlsPort}`, ...tlsArgs], { cwd: www });
    server.spawn('openssl', ['s_server', '-accept', `${link.b.ip4}:${stallPort}`, ...tlsArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
    // Segments as the wire carries them (no GSO super-packets), so reassembly is exercised.
    await client.exec('ethtool', ['-K', link.a.ifname, 'tso', 'off', 'gso', 'off']);
    apiSock = path.join(dir, 'l7.sock');
    driverProc = client.spawn(process.execPath, [DRIVER, link.a.ifname, '--api', apiSock], { stdio: ['pipe', 'pipe', 'pipe'] });
    driver = jsonLines(driverProc);
    await driver.next((o) => o.type === 'ready', 60_000);
    for (let i = 0; ; i++) {
      if ((await client.exec('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://${link.b.ip4}:${tlsPort}/page.txt`], { allowFail: true })).stdout === '200') break;
      assert.ok(i < 50, 's_server did not start');
      await sleep(100);
    }
  });
  after(async () => {
    if (driverProc?.pid && driverProc.exitCode === null) {
      driverProc.kill('SIGTERM');
      await exited(driverProc);
    }
    await lab?.destroy();
  });

  const accessLog = () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8').trim().split('\n').filter((l) => !l.includes('/ready'));
  const events = <T>(type: string, pred: (o: T) => boolean) => driver.lines.filter((o) => o.type === type && pred(o as T)) as T[];
  async function waitFor<T>(type: string, pred: (o: T) => boolean, n: number, ms = 10_000): Promise<T[]> {
    for (let t = 0; t < ms && events(type, pred).length < n; t += 100) await sleep(100);
    return events(type, pred);
  }
  async function ask<T extends Line>(cmd: string, type: string): Promise<T> {
    const seen = driver.lines.length;
    driverProc.stdin!.write(`${JSON.stringify({ cmd })}\n`);
    return (await driver.next((o) => o.type === type && driver.lines.indexOf(o) >= seen)) as T;
  }
  const status = async () => (await ask<{ l7: L7Status }>('status', 'status')).l7;
  const flows = async () => (await ask<{ flows: Array<Line> }>('flows', 'flows')).flows;
  /** One API call through the socket, as `user` (root when absent). */
  async function call(user: TestUser | null, method: string, params: unknown): Promise<{ result?: Line; error?: { name: string; message: string } }> {
    const script = `const s=require('net').connect(${JSON.stringify(apiSock)});let b='';s.on('data',d=>b+=d);s.on('end',()=>{process.stdout.write(b)});s.write(${JSON.stringify(JSON.stringify({ method, params }) + '\n')});`;
    const argv = user ? ['setpriv', '--reuid', String(user.uid), '--regid', String(user.gid), '--clear-groups', process.execPath, '-e', script] : [process.execPath, '-e', script];
    const r = await sh(argv[0]!, argv.slice(1));
    return JSON.parse(r.stdout) as { result?: Line; error?: { name: string; message: string } };
  }

  test('100 keep-alive requests from curl: 100 records whose paths and statuses equal nginx\'s access log, attributed to curl', async () => {
    const before = accessLog().length;
    const urls = Array.from({ length: 100 }, (_, i) => `http://${link.b.ip4}:${port}/${i % 10 === 3 ? 'missing' : 'ka'}/${i}?q=${i}`);
    const c = client.spawn('curl', ['-s', '-o', '/dev/null', ...urls]);
    assert.equal(await exited(c), 0);
    const log = accessLog().slice(before).filter((l) => l.includes('/ka/') || l.includes('/missing/'));
    assert.equal(log.length, 100);
    const got = await waitFor<HttpRequest>('http', (o) => /^\/(ka|missing)\//.test(String(o.path)), 100);
    // nginx logs the query string ($request_uri); the records drop it (l7.keepQuery off).
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status}`), log.map((l) => l.replace(/\?\S*/, '')));
    assert.ok(got.every((o) => o.pid === c.pid), JSON.stringify(got[0]));
    assert.ok(got.every((o) => o.host === `${link.b.ip4}:${port}` && !o.tls && o.timeToFirstByteMs !== null && o.remotePort === port), JSON.stringify(got[0]));
  });

  test('a 3 KiB URL over a route with a 500-byte MSS is reassembled whole', async () => {
    await server.exec('ip', ['route', 'replace', `${link.a.ip4}/32`, 'dev', link.b.ifname, 'advmss', '500']);
    const long = `/long/${'x'.repeat(3072)}`;
    const c = client.spawn('curl', ['-s', '-o', '/dev/null', `http://${link.b.ip4}:${port}${long}`]);
    await exited(c);
    assert.ok(accessLog().some((l) => l === `GET ${long} 200`), 'nginx got it');
    const got = await waitFor<HttpRequest>('http', (o) => String(o.path).startsWith('/long/'), 1);
    assert.equal(got[0]?.path, long);
    assert.equal(got[0]?.status, 200);
    assert.equal(got[0]?.pid, c.pid);
  });

  test('a pipelined batch (5 requests in one write) is paired in order', async () => {
    const reqs = ['/pipe/1', '/missing/pipe2', '/pipe/3', '/chunked/4', '/pipe/5'].map((p) => `GET ${p} HTTP/1.1\r\nHost: p\r\n\r\n`).join('');
    const script = `const s=require('net').connect(${port},'${link.b.ip4}',()=>s.write(${JSON.stringify(reqs)}));let n=0;s.on('data',d=>{n+=(d.toString().match(/HTTP\\/1\\.1 /g)||[]).length;if(n>=5)s.end()});`;
    const c = client.spawn(process.execPath, ['-e', script]);
    await exited(c);
    const log = accessLog().filter((l) => l.includes('pipe') || l.includes('/chunked/4'));
    assert.equal(log.length, 5);
    const got = await waitFor<HttpRequest>('http', (o) => String(o.path).includes('pipe') || o.path === '/chunked/4', 5);
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status}`), log);
  });

  for (const via of ['direct', 'stub on loopback'] as const) {
    test(`DNS ${via}: the query is listed with dnsmasq's answers, and the flow to the address carries the name the client asked`, async () => {
      const serverIp = via === 'direct' ? link.b.ip4 : '127.0.0.1';
      const name = 'alias.l7.test';
      // Resolves, then connects to the first address from a port it reports (the flow to find).
      const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${serverIp}']);` +
        `d.resolve4('${name}').then(a=>d.resolve6('${name}').then(b=>{` +
        `const s=require('net').connect(${port},a[0],()=>{console.log(JSON.stringify({a,b,localPort:s.localPort}));s.end('GET /named HTTP/1.0\\r\\n\\r\\n')});s.on('close',()=>setTimeout(()=>process.exit(0),1500))}))`;
      const c = client.spawn(process.execPath, ['-e', script]);
      const out = jsonLines(c);
      const ans = await out.next((o) => Array.isArray(o.a), 10_000) as { a: string[]; b: string[]; localPort: number };
      assert.deepEqual(ans.a, [link.b.ip4]);
      const recs = await waitFor<DnsQuery>('dns', (o) => o.pid === c.pid && o.name === name, 2);
      const a = recs.find((r) => r.recordType === 'A');
      const aaaa = recs.find((r) => r.recordType === 'AAAA');
      assert.ok(a && aaaa, `queries recorded for pid ${c.pid}: ${JSON.stringify(events('dns', () => true))}`);
      assert.equal(a.rcode, 'NOERROR');
      assert.equal(a.server, `${serverIp}:53`);
      assert.deepEqual(a.answers.map((x) => [x.recordType, x.data]), [['CNAME', 'web.l7.test'], ['A', link.b.ip4]]);
      assert.deepEqual(aaaa.answers.filter((x) => x.recordType === 'AAAA').map((x) => x.data), ans.b);
      if (via === 'stub on loopback') assert.ok(a.via && a.via.comm === 'dnsmasq' && a.via.pid !== c.pid, `the stub is named: ${JSON.stringify(a.via)}`);
      else assert.equal(a.via, null);
      // The flow the process opened to the answered address carries the name it asked for.
      const fl = (await flows()).find((f) => f.protocol === 'tcp' && f.localPort === ans.localPort && f.remotePort === port);
      assert.ok(fl, `the flow from port ${ans.localPort}`);
      assert.equal(fl.pid, c.pid);
      assert.equal(fl.remoteName, name);
      await exited(c);
    });
  }

  test(`HTTPS with curl (OpenSSL): serverName is the name curl sent, and the decrypted path and status are curl's, tls: true`, async () => {
    const c = client.spawn('curl', ['-skv', '--http1.1', '--resolve', `${sni}:${tlsPort}:${link.b.ip4}`, '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{local_port}\\n', `https://${sni}:${tlsPort}/page.txt`, `https://${sni}:${tlsPort}/nothing-here.txt`]);
    const curlOut = output(c);
    let curlErr = '';
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (curlErr += d));
    assert.equal(await exited(c), 0);
    const lines = curlOut().trim().split('\n').map((l) => l.split(' ').map(Number));
    const [code1, code2] = lines.map((l) => l[0]!);
    const localPort = lines[1]![1]!;
    assert.equal(code1, 200);
    const got = await waitFor<HttpRequest>('http', (o) => o.pid === c.pid && o.tls, 2);
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status} ${o.host}`), [`GET /page.txt ${code1} ${sni}:${tlsPort}`, `GET /nothing-here.txt ${code2} ${sni}:${tlsPort}`]);
    assert.ok(got.every((o) => o.comm === 'curl' && o.remoteAddr === link.b.ip4 && o.remotePort === tlsPort), JSON.stringify(got[0]));
    // The ClientHello's server name, on curl's flow (and as the hello was parsed).
    const hello = events<{ pid: number; serverName?: string; flow: { localPort: number } }>('tls', (o) => o.pid === c.pid);
    assert.ok(hello.some((h) => h.serverName === sni));
    const fl = (await flows()).find((f) => f.localPort === localPort && f.remotePort === tlsPort);
    assert.ok(fl, `curl's last flow (port ${localPort})`);
    assert.equal(fl.serverName, sni);
    assert.equal(fl.tlsVersion, /SSL connection using TLSv(\d\.\d)/.exec(curlErr)?.[1], 'the version curl negotiated');
    // status lists the libssl curl maps, hooked.
    const st = await status();
    const system = st.tlsLibraries.find((l) => fs.realpathSync(l.path) === fs.realpathSync('/usr/lib/x86_64-linux-gnu/libssl.so.3'));
    assert.ok(system, JSON.stringify(st.tlsLibraries));
    assert.deepEqual(system.functions, ['SSL_write', 'SSL_read', 'SSL_write_ex', 'SSL_read_ex']);
    assert.ok(st.counters.sslCalls >= 4);
    assert.equal(st.loss.helloErrors, 0, 'every hello seen was read');
  });

  test('a process that starts after the hooks, with its own copy of libssl, is found at exec and decrypted (openssl s_client over loopback, where no ClientHello is seen)', async () => {
    const libdir = path.join(dir, 'lib');
    fs.mkdirSync(libdir);
    fs.copyFileSync('/usr/lib/x86_64-linux-gnu/libssl.so.3', path.join(libdir, 'libssl.so.3'));
    // A server on the client's own loopback: the classifier is not on `lo`, so no TLS flow
    // points at the process; only the exec-time scan of its maps can find the copy.
    const www = path.join(dir, 'www');
    const lo = client.spawn('openssl', ['s_server', '-WWW', '-accept', `127.0.0.1:${tlsPort}`, '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem'), '-quiet'], { cwd: www });
    for (let i = 0; (await client.exec('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${tlsPort}/page.txt`], { allowFail: true })).stdout !== '200'; i++) {
      assert.ok(i < 50, 'loopback s_server did not start');
      await sleep(100);
    }
    const c = client.spawn('openssl', ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-servername', sni, '-quiet', '-ign_eof'],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LD_LIBRARY_PATH: libdir } });
    const got = output(c);
    // The copy is mapped (the truth), and status lists it as hooked for this pid.
    const copy = path.join(libdir, 'libssl.so.3');
    let st: L7Status | undefined;
    for (let i = 0; i < 100; i++) {
      st = await status();
      if (st.tlsLibraries.some((l) => l.path === copy && l.pids.includes(c.pid!))) break;
      await sleep(100);
    }
    assert.ok(fs.readFileSync(`/proc/${c.pid}/maps`, 'utf8').includes(copy), 'the process maps the copy');
    const lib = st!.tlsLibraries.find((l) => l.path === copy);
    assert.ok(lib && lib.pids.includes(c.pid!), JSON.stringify(st!.tlsLibraries));
    c.stdin!.end('GET /page.txt HTTP/1.0\r\n\r\n');
    await exited(c);
    assert.match(got(), /^HTTP\/1\.0 200 ok/);
    const rec = await waitFor<HttpRequest>('http', (o) => o.pid === c.pid, 1);
    assert.equal(rec.length, 1);
    assert.deepEqual([rec[0]!.method, rec[0]!.path, rec[0]!.status, rec[0]!.tls, rec[0]!.comm, rec[0]!.remoteAddr], ['GET', '/page.txt', 200, true, 'openssl', '127.0.0.1']);
    assert.equal(events('tls', (o: { pid: number }) => o.pid === c.pid).length, 0, 'no ClientHello of it was seen');
    lo.kill();
  });

  test('status names a process using GnuTLS (wget) as not hooked, with the library, and decrypts nothing of it', async () => {
    const w = client.spawn('wget', ['-q', '-O', '/dev/null', '--no-check-certificate', '--tries=1', '--timeout=60', `https://${link.b.ip4}:${stallPort}/x`]);
    let entry: L7Status['tlsNotHooked'][number] | undefined;
    for (let i = 0; i < 100 && !entry; i++) {
      await sleep(100);
      entry = (await status()).tlsNotHooked.find((e) => e.pid === w.pid);
    }
    const maps = fs.readFileSync(`/proc/${w.pid}/maps`, 'utf8');
    w.kill('SIGKILL');
    assert.ok(/libgnutls\.so/.test(maps), 'wget maps GnuTLS');
    assert.ok(entry, 'wget listed as not hooked');
    assert.equal(entry.stack, 'gnutls');
    assert.match(entry.reason, /libgnutls\.so/);
    assert.equal(events<HttpRequest>('http', (o) => o.pid === w.pid).length, 0);
  });

  test('a user cannot read another user\'s paths or names; root (or the group) reads both', async () => {
    const alice = await lab.user('al');
    const bob = await lab.user('bo');
    const as = (u: TestUser, cmd: string, args: string[]) => client.spawn('setpriv', ['--reuid', String(u.uid), '--regid', String(u.gid), '--clear-groups', cmd, ...args]);
    const visit = async (u: TestUser, tag: string) => {
      const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${link.b.ip4}']);d.resolve4('${tag}.l7.test').then(a=>console.log(a[0]))`;
      const r = as(u, process.execPath, ['-e', script]);
      assert.equal(await exited(r), 0);
      const c = as(u, 'curl', ['-s', '-o', '/dev/null', `http://${link.b.ip4}:${port}/private/${tag}`]);
      assert.equal(await exited(c), 0);
    };
    await visit(alice, 'alice');
    await visit(bob, 'bob');
    assert.ok(accessLog().includes('GET /private/alice 200') && accessLog().includes('GET /private/bob 200'), 'nginx served both');
    await waitFor<HttpRequest>('http', (o) => String(o.path).startsWith('/private/'), 2);
    await waitFor<DnsQuery>('dns', (o) => /^(alice|bob)\.l7\.test$/.test(o.name), 2);

    const paths = (r: { result?: Line }) => ((r.result?.requests ?? []) as HttpRequest[]).map((x) => x.path).filter((p) => p?.startsWith('/private/'));
    const names = (r: { result?: Line }) => ((r.result?.queries ?? []) as DnsQuery[]).map((x) => x.name).filter((n) => n.endsWith('.l7.test'));
    const aHttp = await call(alice, 'http.list', {});
    assert.deepEqual(paths(aHttp), ['/private/alice']);
    assert.ok(((aHttp.result!.requests as HttpRequest[]).every((x) => x.uid === alice.uid)));
    assert.deepEqual(names(await call(alice, 'dns.list', {})), ['alice.l7.test']);
    assert.deepEqual(paths(await call(bob, 'http.list', {})), ['/private/bob']);
    assert.deepEqual(names(await call(bob, 'dns.list', { name: '*.l7.test' })), ['bob.l7.test']);
    const denied = await call(alice, 'http.list', { uid: bob.uid });
    assert.equal(denied.error?.name, 'PermissionDenied');
    assert.equal((await call(alice, 'dns.list', { uid: bob.uid })).error?.name, 'PermissionDenied');
    const bad = await call(alice, 'http.list', { status: '6xx' });
    assert.equal(bad.error?.name, 'InvalidParams');
    assert.match(bad.error!.message, /params\.status/);
    const rootView = await call(null, 'http.list', { host: `${link.b.ip4}:*` });
    assert.deepEqual(paths(rootView).sort(), ['/private/alice', '/private/bob']);
    assert.deepEqual(names(await call(null, 'dns.list', { name: '*.l7.test' })).filter((n) => n !== 'alias.l7.test').sort(), ['alice.l7.test', 'bob.l7.test']);
  });
});
