// SPDX-License-Identifier: Apache-2.0
// The application layer end to end: the real daemon (l7.dns, l7.http, l7.tls on) in a lab
// host, the real ebpfmonctl, real servers in the peer host. Truths: dnsmasq's own query log
// and its configured records, nginx's access log, what curl printed, a tshark capture of the
// ClientHello, the pids the test spawned and the users it created.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { type Lab, jsonLines, sh, type Host, type LinkInfo, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, CTL_MAIN, destroyMonitorLab, monitorLab, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import type { Flow, ProcessTotals } from '../../daemon/src/contract/flows.js';
import { Capture } from '../helpers/pcap.js';
import { REPO, startPrivateBus, type PrivateBus } from '../helpers/dbus.js';
import type { DnsEvent, DnsQuery, HttpEvent, HttpRequest, L7Status } from '../../daemon/src/contract/l7.js';
import type { StatusResult } from '../../daemon/src/contract/status.js';
import { MAX_PENDING } from '../../daemon/src/l7/http/parser.js';
import { TestCgroups } from '../helpers/cgroups.js';

const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));
const output = (c: ChildProcess) => {
  let s = '';
  c.stdout?.setEncoding('utf8').on('data', (d: string) => (s += d));
  return () => s;
};

describe('L7 through the daemon and ebpfmonctl: DNS names, HTTP requests, HTTPS through OpenSSL', privileged({ timeout: 240_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let daemon: TestDaemon;
  let dir: string;
  let events: ReturnType<typeof jsonLines>;
  let eventsProc: ChildProcess;
  let bus: PrivateBus;
  let cgs: TestCgroups;
  const port = 8080;
  const tlsPort = 8443;
  const sni = 'secure.l7.test';

  const json = async <T>(args: string[], user?: TestUser): Promise<T> => {
    const r = await ctl([...args, '--json'], { socket: daemon.socketPath, ...(user ? { user: { uid: user.uid, gid: user.gid } } : {}) });
    assert.equal(r.code, 0, `ebpfmonctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Events from `ebpfmonctl events --type dns,http --json` (started before the traffic). */
  const seen = <T>(type: 'dns' | 'http', pred: (e: T) => boolean) => events.lines.filter((e) => e.type === type && pred(e as T)) as T[];
  /** Waits (bounded) until `n` matching events have arrived on the subscription. */
  async function waitEvents<T>(type: 'dns' | 'http', pred: (e: T) => boolean, n: number, ms = 20_000): Promise<T[]> {
    for (const t0 = Date.now(); seen(type, pred).length < n && Date.now() - t0 < ms;) await new Promise((r) => setTimeout(r, 50));
    return seen(type, pred);
  }
  const accessLog = () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8').trim().split('\n').filter((l) => !l.includes('/ready'));

  before(async () => {
    requireTool('nginx', 'dnsmasq', 'curl', 'openssl', 'tshark', 'ethtool', 'wget', 'tcpdump', 'dbus-daemon', 'busctl');
    ({ lab, mon, peer, link } = await monitorLab());
    dir = lab.tmpdir();
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  log_format l7 '$request_method $request_uri $status';
  access_log ${dir}/access.log l7;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  keepalive_requests 10000;
  server {
    listen ${link.b.ip4}:${port};
    listen [${link.b.ip6}]:${port};
    location /missing { return 404; }
    location / { return 200 "hello from nginx\\n"; }
  }
}`);
    peer.spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir]);
    // dnsmasq logs every query it answers: the truth for what was asked and answered.
    peer.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', `--listen-address=${link.b.ip4}`, `--listen-address=${link.b.ip6}`, '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--host-record=web.l7.test,${link.b.ip4},${link.b.ip6}`, '--cname=alias.l7.test,web.l7.test',
      `--host-record=alice.l7.test,${link.b.ip4}`, `--host-record=bob.l7.test,${link.b.ip4}`, '--log-queries=extra', `--log-facility=${dir}/dnsmasq.log`]);
    // A stub on the monitored host's loopback forwarding to it (as systemd-resolved would).
    mon.spawn('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--port=53', `--server=${link.b.ip4}`, '--cache-size=0', `--log-facility=${dir}/stub.log`]);
    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    fs.writeFileSync(path.join(www, 'page.txt'), 'a page served over TLS\n');
    await sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-days', '1', '-subj', `/CN=${sni}`, '-addext', `subjectAltName=DNS:${sni}`]);
    peer.spawn('openssl', ['s_server', '-WWW', '-accept', `${link.b.ip4}:${tlsPort}`, '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem'), '-quiet'], { cwd: www });
    // Segments as the wire carries them (no GSO super-packets).
    await mon.exec('ethtool', ['-K', link.a.ifname, 'tso', 'off', 'gso', 'off']);
    // A private system-like bus with the packaged policy: the daemon serves D-Bus there too.
    bus = await startPrivateBus({ policies: [path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf')], lab });
    cgs = await TestCgroups.create();
    daemon = await startDaemon(mon, { config: { interfaces: [link.a.ifname], l7: { dns: true, http: true, tls: true }, dbus: { enabled: true, address: bus.address } } });
    for (const [url, what] of [[`http://${link.b.ip4}:${port}/ready`, 'nginx'], [`https://${link.b.ip4}:${tlsPort}/page.txt`, 's_server']] as const) {
      for (let i = 0; (await mon.exec('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', url], { allowFail: true })).stdout !== '200'; i++) {
        assert.ok(i < 50, `${what} did not start`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    eventsProc = mon.spawn(process.execPath, [CTL_MAIN, '--socket', daemon.socketPath, 'events', '--type', 'dns,http', '--json'], { env: { ...process.env, EBPFMONCTL_ANNOUNCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('events did not subscribe')), 15_000);
      eventsProc.stderr!.setEncoding('utf8').on('data', (d: string) => d.includes('subscribed') && (clearTimeout(t), resolve()));
    });
    events = jsonLines(eventsProc);
  });
  after(async () => {
    if (eventsProc?.exitCode === null) eventsProc.kill('SIGTERM');
    await destroyMonitorLab(daemon, lab);
    await cgs?.destroy();
  });

  test('status.l7 says what runs: the hook-chain stage on the monitored interface, the loopback tap, the OpenSSL uprobes on the system libssl', async () => {
    const st = await json<StatusResult>(['status']);
    const l7 = st.l7!;
    assert.equal(l7.state, 'running', JSON.stringify(l7));
    assert.deepEqual(l7.interfaces, [link.a.ifname]);
    assert.equal(l7.dnsTap, 'lo egress');
    for (const cap of ['l7-flows', 'l7-dns-tap', 'tls-plaintext']) assert.ok(l7.probes.find((p) => p.capability === cap)?.active, `${cap}: ${JSON.stringify(l7.probes)}`);
    const system = l7.tlsLibraries.find((l) => fs.realpathSync(l.path) === fs.realpathSync('/usr/lib/x86_64-linux-gnu/libssl.so.3'));
    assert.ok(system, JSON.stringify(l7.tlsLibraries));
    assert.deepEqual(system.functions, ['SSL_write', 'SSL_read', 'SSL_write_ex', 'SSL_read_ex']);
    for (const k of ['ringbufFull', 'connectionsEvicted', 'bytesLost', 'helloErrors'] as const) assert.equal(typeof l7.loss[k], 'number');
    const human = await ctl(['status'], { socket: daemon.socketPath });
    assert.match(human.stdout, /APPLICATION LAYER \(l7\)\n {2}running \(dns, http, tls\)/);
    assert.match(human.stdout, /TLS hooked: .*libssl\.so\.3/);
  });

  test('100 keep-alive requests from curl: `ebpfmonctl http --pid` lists 100 whose paths and statuses equal nginx\'s access log; --status 4xx picks the 404s', async () => {
    const before = accessLog().length;
    const urls = Array.from({ length: 100 }, (_, i) => `http://${link.b.ip4}:${port}/${i % 10 === 3 ? 'missing' : 'ka'}/${i}?token=${i}`);
    // curl runs in a cgroup of the test's own: its events must name that cgroup (its id is
    // the directory's inode).
    const cg = cgs.mkdir('curl-http');
    const c = mon.spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec curl "$@"', path.join(cgs.root, cg), '-s', '-o', '/dev/null', ...urls]);
    assert.equal(await exited(c), 0);
    const log = accessLog().slice(before);
    assert.equal(log.length, 100);
    const evs = await waitEvents<HttpEvent>('http', (e) => e.pid === c.pid, 100);
    assert.equal(evs.length, 100, 'http events');
    const cgId = fs.statSync(path.join(cgs.root, cg), { bigint: true }).ino.toString();
    assert.deepEqual([...new Set(evs.map((e) => `${e.cgroupId} ${e.cgroupPath}`))], [`${cgId} ${cg}`], 'http events name the cgroup curl ran in');
    const listed = (await json<HttpRequest[]>(['http', '--pid', String(c.pid), '--limit', '1000'])).reverse(); // newest first
    // nginx logs the query string; the daemon drops it (l7.keepQuery off).
    assert.deepEqual(listed.map((o) => `${o.method} ${o.path} ${o.status}`), log.map((l) => l.replace(/\?\S*/, '')));
    assert.ok(listed.every((o) => o.comm === 'curl' && o.host === `${link.b.ip4}:${port}` && !o.tls && o.remotePort === port && o.timeToFirstByteMs !== null), JSON.stringify(listed[0]));
    const notFound = await json<HttpRequest[]>(['http', '--pid', String(c.pid), '--status', '4xx']);
    assert.deepEqual(notFound.map((o) => o.path).sort(), log.filter((l) => l.endsWith(' 404')).map((l) => l.split(' ')[1]!.replace(/\?\S*/, '')).sort());
    // The flow carries the summary: curl kept one connection alive for the 100 (one flow).
    const flows = (await json<Flow[]>(['flows', '--pid', String(c.pid)])).filter((f) => f.protocol === 'tcp' && f.remotePort === port);
    assert.equal(flows.length, 1, JSON.stringify(flows));
    const [lastMethod, lastPath, lastStatus] = log.at(-1)!.replace(/\?\S*/, '').split(' ');
    const h = flows[0]!.http;
    assert.ok(h, 'flow.http');
    assert.deepEqual(
      [h.requests, h.clientErrors, h.serverErrors, h.unanswered, h.lastMethod, h.lastPath, h.lastStatus, h.lastHost, h.tls],
      [log.length, log.filter((l) => / 4\d\d$/.test(l)).length, log.filter((l) => / 5\d\d$/.test(l)).length, 0, lastMethod, lastPath, Number(lastStatus), `${link.b.ip4}:${port}`, false],
    );
    assert.equal(h.requestBytes, listed.reduce((n, o) => n + o.requestBytes, 0));
    const table = await ctl(['flows', '--pid', String(c.pid)], { socket: daemon.socketPath });
    assert.match(table.stdout, new RegExp(`${log.length} req, ${h.clientErrors} 4xx, last ${lastMethod} ${lastPath!.replace(/\//g, '\\/')} ${lastStatus}`));
    // Per process (processes.list, through `top`): curl's requests and 4xx as nginx logged them.
    const proc = (await json<ProcessTotals[]>(['top', '--count', '1'])).find((p) => p.pid === c.pid);
    assert.ok(proc?.http, `curl's process.http: ${JSON.stringify(proc)}`);
    assert.deepEqual(
      [proc.http.requests, proc.http.clientErrors, proc.http.serverErrors],
      [log.length, log.filter((l) => / 4\d\d$/.test(l)).length, log.filter((l) => / 5\d\d$/.test(l)).length],
    );
    const top = (await ctl(['top', '--count', '1'], { socket: daemon.socketPath })).stdout.split('\n');
    assert.match(top.find((l) => /\bPID\b/.test(l)) ?? '', /\bREQ\b/, top.join('\n'));
    assert.match(top.find((l) => new RegExp(`^\\s*${c.pid}\\s`).test(l)) ?? '', new RegExp(`\\s${log.length}\\s`), top.join('\n'));
  });

  test('a 3 KiB URL over a route with a 500-byte MSS is reassembled whole; a pipelined batch of 5 is paired in order (nginx\'s log)', async () => {
    await peer.exec('ip', ['route', 'replace', `${link.a.ip4}/32`, 'dev', link.b.ifname, 'advmss', '500']);
    const long = `/long/${'x'.repeat(3072)}`;
    const c = mon.spawn('curl', ['-s', '-o', '/dev/null', `http://${link.b.ip4}:${port}${long}`]);
    assert.equal(await exited(c), 0);
    assert.ok(accessLog().includes(`GET ${long} 200`), 'nginx got it');
    await waitEvents<HttpEvent>('http', (e) => e.pid === c.pid, 1);
    const got = await json<HttpRequest[]>(['http', '--pid', String(c.pid)]);
    assert.deepEqual(got.map((o) => [o.path, o.status]), [[long, 200]]);
    await peer.exec('ip', ['route', 'del', `${link.a.ip4}/32`, 'dev', link.b.ifname]);

    const reqs = ['/pipe/1', '/missing/pipe2', '/pipe/3', '/pipe/4', '/pipe/5'].map((p) => `GET ${p} HTTP/1.1\r\nHost: p\r\n\r\n`).join('');
    const script = `const s=require('net').connect(${port},'${link.b.ip4}',()=>s.write(${JSON.stringify(reqs)}));let n=0;s.on('data',d=>{n+=(d.toString().match(/HTTP\\/1\\.1 /g)||[]).length;if(n>=5)s.end()});`;
    const p = mon.spawn(process.execPath, ['-e', script]);
    assert.equal(await exited(p), 0);
    const log = accessLog().filter((l) => l.includes('pipe'));
    assert.equal(log.length, 5);
    await waitEvents<HttpEvent>('http', (e) => e.pid === p.pid, 5);
    const piped = (await json<HttpRequest[]>(['http', '--pid', String(p.pid)])).reverse();
    assert.deepEqual(piped.map((o) => `${o.method} ${o.path} ${o.status}`), log);
  });

  for (const via of ['direct', 'stub on loopback'] as const) {
    test(`DNS ${via}: \`ebpfmonctl dns --pid\` lists the query with dnsmasq's answers, and the process's flow to the address carries remoteName`, async () => {
      const serverIp = via === 'direct' ? link.b.ip4 : '127.0.0.1';
      const name = 'alias.l7.test';
      const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${serverIp}']);` +
        `d.resolve4('${name}').then(a=>{const s=require('net').connect(${port},a[0],()=>{console.log(JSON.stringify({a,localPort:s.localPort}));s.end('GET /named HTTP/1.0\\r\\n\\r\\n')});s.on('close',()=>setTimeout(()=>process.exit(0),3000))})`;
      const c = mon.spawn(process.execPath, ['-e', script]);
      const ans = await jsonLines(c).next((o) => Array.isArray(o.a), 10_000) as { a: string[]; localPort: number };
      assert.deepEqual(ans.a, [link.b.ip4]);
      // dnsmasq (the server in the peer) logged the query and what it answered.
      const dlog = fs.readFileSync(path.join(dir, 'dnsmasq.log'), 'utf8');
      assert.match(dlog, new RegExp(`query\\[A\\] ${name.replace(/\./g, '\\.')} from`));
      assert.match(dlog, new RegExp(`${name.replace(/\./g, '\\.')} is <CNAME>`));
      assert.match(dlog, new RegExp(`web\\.l7\\.test is ${link.b.ip4.replace(/\./g, '\\.')}`));
      const [ev] = await waitEvents<DnsEvent>('dns', (e) => e.pid === c.pid && e.name === name, 1);
      // The process that asked is the test's child, in the test's own cgroup.
      const own = /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))![1]!;
      assert.deepEqual([ev!.cgroupId, ev!.cgroupPath], [fs.statSync(path.join(cgs.root, own), { bigint: true }).ino.toString(), own], 'the dns event names the cgroup of the process that asked');
      const qs = await json<DnsQuery[]>(['dns', '--pid', String(c.pid), '--name', '*.l7.test']);
      const a = qs.find((q) => q.recordType === 'A' && q.name === name);
      assert.ok(a, `queries of pid ${c.pid}: ${JSON.stringify(qs)}`);
      assert.equal(a.rcode, 'NOERROR');
      assert.equal(a.server, `${serverIp}:53`);
      assert.deepEqual(a.answers.map((x) => [x.recordType, x.data]), [['CNAME', 'web.l7.test'], ['A', link.b.ip4]]);
      if (via === 'stub on loopback') assert.ok(a.via && a.via.comm === 'dnsmasq' && a.via.pid !== c.pid, `the stub is named: ${JSON.stringify(a.via)}`);
      else assert.equal(a.via, null);
      const flows = await json<Flow[]>(['flows', '--pid', String(c.pid)]);
      const fl = flows.find((f) => f.protocol === 'tcp' && f.localPort === ans.localPort && f.remotePort === port);
      assert.ok(fl, `the flow from port ${ans.localPort}: ${JSON.stringify(flows)}`);
      assert.equal(fl.remoteName, name);
      await exited(c);
    });
  }

  /** Runs `script` (node) in the monitored host: it resolves, connects to the answer on `port` and prints {a, localPort}. */
  async function resolveAndConnect(script: string): Promise<{ c: ChildProcess; ans: { a: string[]; localPort: number } }> {
    const c = mon.spawn(process.execPath, ['-e', script]);
    const ans = await jsonLines(c).next((o) => Array.isArray(o.a), 10_000) as { a: string[]; localPort: number };
    return { c, ans };
  }
  const connectTail = `const s=require('net').connect(${port},a[0],()=>{console.log(JSON.stringify({a,localPort:s.localPort}));s.end('GET /named HTTP/1.0\\r\\n\\r\\n')});s.on('close',()=>setTimeout(()=>process.exit(0),3000))`;
  const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  test('DNS over TCP (the test\'s own length-prefixed query to dnsmasq): `dns` lists it with transport tcp and dnsmasq\'s answer; the flow that follows carries remoteName', async () => {
    const name = 'web.l7.test';
    // A query for A over TCP, written by hand (node's resolver has no TCP switch): length, header, question.
    const script = `const net=require('net');const q=Buffer.concat([Buffer.from([0x4c,0x37,1,0,0,1,0,0,0,0,0,0]),...'${name}'.split('.').map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)])),Buffer.from([0,0,1,0,1])]);` +
      `const len=Buffer.alloc(2);len.writeUInt16BE(q.length);const d=net.connect(53,'${link.b.ip4}',()=>d.write(Buffer.concat([len,q])));let b=Buffer.alloc(0);` +
      `d.on('data',x=>{b=Buffer.concat([b,x]);if(b.length<2||b.length<2+b.readUInt16BE(0))return;d.end();const m=b.subarray(2,2+b.readUInt16BE(0));const a=[[...m.subarray(m.length-4)].join('.')];${connectTail}});`;
    const { c, ans } = await resolveAndConnect(script);
    assert.deepEqual(ans.a, [link.b.ip4]);
    const dlog = fs.readFileSync(path.join(dir, 'dnsmasq.log'), 'utf8');
    assert.match(dlog, new RegExp(`query\\[A\\] ${re(name)} from ${re(link.a.ip4)}`));
    assert.match(dlog, new RegExp(`${re(name)} is ${re(link.b.ip4)}`));
    await waitEvents<DnsEvent>('dns', (e) => e.pid === c.pid && e.name === name, 1);
    const qs = await json<DnsQuery[]>(['dns', '--pid', String(c.pid)]);
    assert.deepEqual(qs.map((q) => [q.name, q.recordType, q.transport, q.server, q.rcode, q.answers.map((x) => [x.recordType, x.data])]),
      [[name, 'A', 'tcp', `${link.b.ip4}:53`, 'NOERROR', [['A', link.b.ip4]]]]);
    const fl = (await json<Flow[]>(['flows', '--pid', String(c.pid)])).find((f) => f.localPort === ans.localPort && f.remotePort === port);
    assert.ok(fl, `the flow from port ${ans.localPort}`);
    assert.equal(fl.remoteName, name);
    await exited(c);
  });

  test('DNS over IPv6 (AAAA asked of dnsmasq at its fd00:198:: address): `dns` lists it with dnsmasq\'s answer; the IPv6 flow that follows carries remoteName', async () => {
    const name = 'web.l7.test';
    const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${link.b.ip6}']);d.resolve6('${name}').then(a=>{${connectTail}})`;
    const { c, ans } = await resolveAndConnect(script);
    assert.deepEqual(ans.a, [link.b.ip6]);
    const dlog = fs.readFileSync(path.join(dir, 'dnsmasq.log'), 'utf8');
    assert.match(dlog, new RegExp(`query\\[AAAA\\] ${re(name)} from ${re(link.a.ip6)}`));
    assert.match(dlog, new RegExp(`${re(name)} is ${re(link.b.ip6)}`));
    await waitEvents<DnsEvent>('dns', (e) => e.pid === c.pid && e.name === name, 1);
    const qs = await json<DnsQuery[]>(['dns', '--pid', String(c.pid)]);
    assert.deepEqual(qs.map((q) => [q.name, q.recordType, q.transport, q.server, q.rcode, q.answers.map((x) => [x.recordType, x.data])]),
      [[name, 'AAAA', 'udp', `[${link.b.ip6}]:53`, 'NOERROR', [['AAAA', link.b.ip6]]]]);
    const fl = (await json<Flow[]>(['flows', '--pid', String(c.pid)])).find((f) => f.family === 'ipv6' && f.localPort === ans.localPort && f.remotePort === port);
    assert.ok(fl, `the IPv6 flow from port ${ans.localPort}`);
    assert.equal(fl.remoteName, name);
    await exited(c);
  });

  test(`state full: ${MAX_PENDING + 4} pipelined requests a silent server never answers: the oldest 4 are given up at once, counted in status.l7.loss.httpStateFull`, async () => {
    const silentPort = 8090;
    const srv = peer.spawn(process.execPath, ['-e', `require('net').createServer(s=>{s.on('data',()=>{});s.on('error',()=>{})}).listen(${silentPort},'${link.b.ip4}',()=>console.log('{"ready":1}'))`]);
    await jsonLines(srv).next((o) => o.ready === 1, 10_000);
    const before = (await json<StatusResult>(['status'])).l7!.loss;
    const n = MAX_PENDING + 4;
    const reqs = Array.from({ length: n }, (_, i) => `GET /full/${i} HTTP/1.1\r\nHost: silent\r\n\r\n`).join('');
    // The client stays connected (killed below), so only the state limit can give requests up.
    const p = mon.spawn(process.execPath, ['-e', `const s=require('net').connect(${silentPort},'${link.b.ip4}',()=>s.write(${JSON.stringify(reqs)}));s.on('error',()=>{});setInterval(()=>{},1000)`]);
    const given = await waitEvents<HttpEvent>('http', (e) => e.pid === p.pid, n - MAX_PENDING);
    assert.deepEqual(given.map((e) => [e.path, e.status, e.flags.includes('unanswered')]), Array.from({ length: n - MAX_PENDING }, (_, i) => [`/full/${i}`, null, true]));
    const after = (await json<StatusResult>(['status'])).l7!.loss;
    assert.equal(after.httpStateFull - before.httpStateFull, n - MAX_PENDING);
    assert.ok(after.httpUnanswered - before.httpUnanswered >= n - MAX_PENDING);
    for (const k of ['undecodable', 'handlerErrors', 'programMisses', 'dnsStateFull', 'dnsTcpLost', 'httpLinesTooLong'] as const) assert.equal(typeof after[k], 'number', k);
    p.kill('SIGKILL');
    srv.kill('SIGKILL');
    await Promise.all([exited(p), exited(srv)]);
  });

  test('HTTPS with curl (OpenSSL): serverName equals the SNI tshark saw, the decrypted paths and statuses are curl\'s, tls: true', async () => {
    // tcpdump writes the capture (test/helpers/pcap.ts), tshark reads the ClientHello's SNI from it.
    const cap = await Capture.start(mon, link.a.ifname, path.join(dir, 'tls.pcap'), ['tcp', 'port', String(tlsPort)], 2048);
    const c = mon.spawn('curl', ['-sk', '--http1.1', '--resolve', `${sni}:${tlsPort}:${link.b.ip4}`, '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{local_port}\\n',
      `https://${sni}:${tlsPort}/page.txt`, `https://${sni}:${tlsPort}/nothing-here.txt`]);
    const curlOut = output(c);
    assert.equal(await exited(c), 0);
    await cap.stop();
    const lines = curlOut().trim().split('\n').map((l) => l.split(' ').map(Number));
    const localPort = lines[1]![1]!;
    const sniSeen = (await sh('tshark', ['-r', cap.file, '-Y', 'tls.handshake.type == 1', '-T', 'fields', '-e', 'tls.handshake.extensions_server_name'])).stdout.trim().split('\n');
    assert.ok(sniSeen.length >= 1 && sniSeen.every((s) => s === sni), `tshark: ${sniSeen.join(',')}`);
    const evs = await waitEvents<HttpEvent>('http', (e) => e.pid === c.pid && e.tls, 2);
    assert.equal(evs.length, 2);
    const got = (await json<HttpRequest[]>(['http', '--pid', String(c.pid), '--tls'])).reverse();
    assert.deepEqual(got.map((o) => `${o.method} ${o.path} ${o.status} ${o.host}`), [`GET /page.txt ${lines[0]![0]} ${sni}:${tlsPort}`, `GET /nothing-here.txt ${lines[1]![0]} ${sni}:${tlsPort}`]);
    // Kernels without sock:sock_send_length (before 6.3: the 6.1 guest) give the plaintext
    // without its socket, as status.l7.tlsSocketsUnavailable says.
    const noSocket = ((await json<StatusResult>(['status'])).l7 as L7Status).tlsSocketsUnavailable !== null;
    assert.ok(got.every((o) => o.comm === 'curl' && (noSocket ? o.remoteAddr === null && o.remotePort === null : o.remoteAddr === link.b.ip4 && o.remotePort === tlsPort)), JSON.stringify(got[0]));
    const fl = (await json<Flow[]>(['flows', '--pid', String(c.pid)])).find((f) => f.localPort === localPort && f.remotePort === tlsPort);
    assert.ok(fl, `curl's last flow (port ${localPort})`);
    assert.equal(fl.serverName, sniSeen[0]);
    const st = (await json<StatusResult>(['status'])).l7 as L7Status;
    assert.ok(st.counters.sslCalls >= 4, JSON.stringify(st.counters));
    assert.equal(st.loss.helloErrors, 0);
  });

  test('D-Bus GetDnsQueries and GetHttpRequests (busctl) answer what dns.list and http.list answer; a bad filter is InvalidArgs naming it', async () => {
    type Variant = { type: string; data: unknown };
    const busctl = async (member: string, ...filter: string[]) => {
      const r = await sh('busctl', [`--address=${bus.address}`, '--json=short', 'call', 'org.ebpfmon1', '/org/ebpfmon1', 'org.ebpfmon1.Manager', member, 'a{sv}', ...filter], { allowFail: true });
      if (r.code !== 0) return { error: r.stderr };
      const out = JSON.parse(r.stdout) as { data: [Array<Record<string, Variant>>] };
      return { items: out.data[0].map((d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.data]))) };
    };
    const dns = await busctl('GetDnsQueries', '2', 'name', 's', '*.l7.test', 'limit', 'u', '100');
    const viaRpc = await json<DnsQuery[]>(['dns', '--name', '*.l7.test', '--limit', '100']);
    assert.ok(viaRpc.length >= 2, JSON.stringify(viaRpc));
    assert.deepEqual(dns.items?.map((q) => [q.pid, q.name, q.recordType, q.rcode]), viaRpc.map((q) => [q.pid, q.name, q.recordType, q.rcode]));
    const http = await busctl('GetHttpRequests', '1', 'tls', 'b', 'true');
    const httpRpc = await json<HttpRequest[]>(['http', '--tls']);
    assert.ok(httpRpc.length >= 2);
    assert.deepEqual(http.items?.map((h) => [h.pid, h.path, h.status, h.tls]), httpRpc.map((h) => [h.pid, h.path, h.status, h.tls]));
    const bad = await busctl('GetHttpRequests', '1', 'status', 's', '6xx');
    assert.match(bad.error ?? '', /filter\.status/);
  });

  test('exec events hook a private libssl copy of a process started after the daemon, and its HTTPS is decrypted (openssl s_client over loopback, where no ClientHello is seen)', async () => {
    const libdir = path.join(dir, 'lib');
    fs.mkdirSync(libdir);
    const copy = path.join(libdir, 'libssl.so.3');
    fs.copyFileSync('/usr/lib/x86_64-linux-gnu/libssl.so.3', copy);
    const before = (await json<StatusResult>(['status'])).l7!.tlsLibraries;
    assert.ok(!before.some((l) => l.path === copy), 'not hooked before the process starts');
    // Over the monitored host's own loopback, where the classifier is not: no ClientHello
    // points at the process, so only the exec-time scan of its maps can find the copy.
    const lo = mon.spawn('openssl', ['s_server', '-WWW', '-accept', `127.0.0.1:${tlsPort}`, '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem'), '-quiet'], { cwd: path.join(dir, 'www') });
    for (let i = 0; (await mon.exec('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${tlsPort}/page.txt`], { allowFail: true })).stdout !== '200'; i++) {
      assert.ok(i < 50, 'loopback s_server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const c = mon.spawn('openssl', ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-servername', sni, '-quiet', '-ign_eof'],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LD_LIBRARY_PATH: libdir } });
    const got = output(c);
    let lib: L7Status['tlsLibraries'][number] | undefined;
    for (const t0 = Date.now(); !lib && Date.now() - t0 < 15_000;) {
      lib = (await json<StatusResult>(['status'])).l7!.tlsLibraries.find((l) => l.path === copy && l.pids.includes(c.pid!));
    }
    assert.ok(fs.readFileSync(`/proc/${c.pid}/maps`, 'utf8').includes(copy), 'the process maps the copy (the truth)');
    assert.ok(lib, 'status lists the copy as hooked for this pid');
    c.stdin!.end('GET /page.txt HTTP/1.0\r\n\r\n');
    await exited(c);
    assert.match(got(), /^HTTP\/1\.0 200 ok/);
    await waitEvents<HttpEvent>('http', (e) => e.pid === c.pid, 1);
    const rec = await json<HttpRequest[]>(['http', '--pid', String(c.pid)]);
    assert.deepEqual(rec.map((o) => [o.method, o.path, o.status, o.tls, o.comm]), [['GET', '/page.txt', 200, true, 'openssl']]);
    lo.kill('SIGKILL');
  });

  test('status names a process using GnuTLS (wget) as not hooked, with the library, and decrypts nothing of it', async () => {
    // A TLS server that never answers the request: wget stays connected while status is read.
    const stallPort = tlsPort + 1;
    const stall = peer.spawn('openssl', ['s_server', '-accept', `${link.b.ip4}:${stallPort}`, '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem'), '-quiet'], { stdio: ['pipe', 'pipe', 'pipe'] });
    // curl gives up after 1 s (28) once it connects; 7 means nothing listens yet.
    for (let i = 0; (await mon.exec('curl', ['-sk', '-m', '1', '-o', '/dev/null', `https://${link.b.ip4}:${stallPort}/`], { allowFail: true })).code === 7; i++) {
      assert.ok(i < 50, 'stalling s_server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const w = mon.spawn('wget', ['-q', '-O', '/dev/null', '--no-check-certificate', '--tries=1', '--timeout=60', `https://${link.b.ip4}:${stallPort}/x`]);
    let entry: L7Status['tlsNotHooked'][number] | undefined;
    for (const t0 = Date.now(); !entry && Date.now() - t0 < 15_000;) {
      entry = (await json<StatusResult>(['status'])).l7!.tlsNotHooked.find((e) => e.pid === w.pid);
    }
    const maps = fs.readFileSync(`/proc/${w.pid}/maps`, 'utf8'); // the truth: what wget maps
    w.kill('SIGKILL');
    stall.kill('SIGKILL');
    assert.match(maps, /libgnutls\.so/, 'wget maps GnuTLS');
    assert.ok(entry, 'wget listed as not hooked');
    assert.equal(entry.stack, 'gnutls');
    assert.match(entry.reason, /libgnutls\.so/);
    assert.deepEqual(await json<HttpRequest[]>(['http', '--pid', String(w.pid)]), []);
  });

  test('a user reads only their own names and paths; asking for another uid is refused', async () => {
    const alice = await lab.user('al');
    const bob = await lab.user('bo');
    const visit = async (u: TestUser, tag: string) => {
      const script = `const d=new (require('dns').promises.Resolver)();d.setServers(['${link.b.ip4}']);d.resolve4('${tag}.l7.test').then(a=>console.log(a[0]))`;
      for (const [cmd, args] of [[process.execPath, ['-e', script]], ['curl', ['-s', '-o', '/dev/null', `http://${link.b.ip4}:${port}/private/${tag}`]]] as const) {
        const p = mon.spawn('setpriv', ['--reuid', String(u.uid), '--regid', String(u.gid), '--clear-groups', cmd, ...args]);
        assert.equal(await exited(p), 0);
      }
    };
    await visit(alice, 'alice');
    await visit(bob, 'bob');
    await waitEvents<HttpEvent>('http', (e) => String(e.path).startsWith('/private/'), 2);
    await waitEvents<DnsEvent>('dns', (e) => /^(alice|bob)\.l7\.test$/.test(e.name), 2);
    const paths = (r: HttpRequest[]) => r.map((x) => x.path).filter((p) => p?.startsWith('/private/'));
    const names = (r: DnsQuery[]) => r.map((x) => x.name).filter((n) => /^(alice|bob)\./.test(n));
    assert.deepEqual(paths(await json<HttpRequest[]>(['http'], alice)), ['/private/alice']);
    assert.deepEqual(names(await json<DnsQuery[]>(['dns'], alice)), ['alice.l7.test']);
    assert.deepEqual(names(await json<DnsQuery[]>(['dns', '--name', '*.l7.test'], bob)), ['bob.l7.test']);
    // The flows' HTTP summaries are scoped with their flows; root sees both.
    const lastPaths = (f: Flow[]) => f.map((x) => x.http?.lastPath).filter((p) => p?.startsWith('/private/')).sort();
    assert.deepEqual(lastPaths(await json<Flow[]>(['flows'], alice)), ['/private/alice']);
    assert.deepEqual(lastPaths(await json<Flow[]>(['flows'], bob)), ['/private/bob']);
    assert.deepEqual(lastPaths(await json<Flow[]>(['flows'])), ['/private/alice', '/private/bob']);
    // Per process too (processes.list through `top`): alice sees her own curl's one request, no one else's process.
    const aliceTop = await json<ProcessTotals[]>(['top', '--count', '1'], alice);
    assert.ok(aliceTop.every((p) => p.uid === alice.uid), JSON.stringify(aliceTop.map((p) => [p.pid, p.uid])));
    assert.deepEqual(aliceTop.filter((p) => p.comm === 'curl').map((p) => p.http?.requests), [1]);
    const denied = await ctl(['http', '--uid', String(bob.uid)], { socket: daemon.socketPath, user: { uid: alice.uid, gid: alice.gid } });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /may only see its own/);
    const bad = await ctl(['dns', '--name', 'a b'], { socket: daemon.socketPath });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /params\.name/);
    assert.deepEqual(paths(await json<HttpRequest[]>(['http', '--host', `${link.b.ip4}:*`])).sort(), ['/private/alice', '/private/bob']);
  });

  test('a restart adopts what is pinned: the same uprobe links (by inode), the stage in its slot, and HTTPS is decrypted again', async () => {
    // Uprobe links are pinned per library file as ssl_<dev>_<ino>_<program>: the system
    // libssl's must survive the restart as they are (same pinned link inodes); the private
    // copy of the exec test, mapped by no process any more, is pruned.
    const idOf = (f: string) => {
      const st = fs.statSync(fs.realpathSync(f));
      return `ssl_${st.dev}_${st.ino}_`;
    };
    const system = idOf('/usr/lib/x86_64-linux-gnu/libssl.so.3');
    const copy = idOf(path.join(dir, 'lib', 'libssl.so.3'));
    const links = (prefix: string) => fs.readdirSync(path.join(daemon.pinPath, 'links')).filter((l) => l.startsWith(prefix))
      .map((l) => `${l}@${fs.statSync(path.join(daemon.pinPath, 'links', l)).ino}`).sort();
    const before = links(system);
    assert.equal(before.length, 8, `the system libssl's 4 functions x entry/return: ${before.join(' ')}`);
    assert.equal(links(copy).length, 8, 'the private copy is hooked too');
    assert.equal(await daemon.stop(), 0, 'SIGTERM with uprobes attached: a clean stop');
    daemon = await restartDaemon(daemon);
    assert.deepEqual(links(system), before, 'the system libssl: adopted, not attached again');
    assert.deepEqual(links(copy), [], 'the copy nobody maps any more: pruned');
    const l7 = (await json<StatusResult>(['status'])).l7!;
    assert.equal(l7.state, 'running');
    assert.ok(daemon.logs().some((l) => l.msg === 'adopted pinned programs' && l.componentName === 'l7'), 'l7 component adopted');
    const c = mon.spawn('curl', ['-sk', '--http1.1', '--resolve', `${sni}:${tlsPort}:${link.b.ip4}`, '-o', '/dev/null', '-w', '%{http_code}', `https://${sni}:${tlsPort}/page.txt`]);
    const out = output(c);
    assert.equal(await exited(c), 0);
    for (const t0 = Date.now(); Date.now() - t0 < 20_000;) {
      const got = await json<HttpRequest[]>(['http', '--pid', String(c.pid)]);
      if (got.length) {
        assert.deepEqual(got.map((o) => [o.path, o.status, o.tls]), [['/page.txt', Number(out()), true]]);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail('the request after the restart was not listed');
  });

  test('when the kernel refuses the L7 stage, the daemon starts anyway: the classifier counts alone and status.l7 says why', async () => {
    assert.equal(await daemon.stop(), 0, 'SIGTERM: a clean stop');
    const cfg = JSON.parse(fs.readFileSync(daemon.configPath, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(daemon.configPath, JSON.stringify({ ...cfg, probes: { disable: ['l7-flows/hook'] } }));
    daemon = await restartDaemon(daemon);
    const l7 = (await json<StatusResult>(['status'])).l7!;
    assert.equal(l7.state, 'unavailable');
    assert.match(l7.reason ?? '', /tc_l7_flow/);
    assert.deepEqual(l7.interfaces, []);
    assert.match((await ctl(['status'], { socket: daemon.socketPath })).stdout, /INACTIVE l7-flows/);
    const r = await ctl(['dns'], { socket: daemon.socketPath });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unavailable/);
    // The classifier still counts: a request's flow is listed, without L7 records.
    const c = mon.spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{local_port}', `http://${link.b.ip4}:${port}/alone`]);
    const out = output(c);
    assert.equal(await exited(c), 0);
    const flows = await json<Flow[]>(['flows', '--pid', String(c.pid)]);
    assert.ok(flows.some((f) => f.localPort === Number(out()) && f.txBytes > 0), JSON.stringify(flows));
  });
});
