// SPDX-License-Identifier: Apache-2.0
// The load balancer through the real daemon and ebpfmonctl, as real users: an admin adds
// a VIP and backends, a client's requests reach both backends (which backend answered is
// the truth, and the balancer's counters must agree with it), `lb list|stats|flows` show
// it, drains emit events, non-admins are refused, bad input is refused with the field
// named and nothing changed, and the monitor on the same daemon keeps working.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Lab, jsonLines, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool, scaled } from '../helpers/privileged.js';
import { CTL_MAIN, ctl, daemonOnce, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildTopo, startServer, type LbTopo } from '../helpers/lb/lab.js';
import type { LbFlow, LbList, LbStats } from '../../daemon/src/contract/index.js';
import type { StatusResult } from '../../daemon/src/contract/index.js';

const VIP = '198.19.10.10:8080/tcp';

describe('load balancer through the daemon', privileged({ timeout: 240_000 }), () => {
  let lab: Lab;
  let topo: LbTopo;
  let daemon: TestDaemon;
  let admin: TestUser;
  let user: TestUser;
  const as = (u: TestUser) => ({ uid: u.uid, gid: u.gid });

  before(async () => {
    requireTool('curl', 'ethtool');
    lab = await Lab.create();
    topo = await buildTopo(lab, 2);
    await startServer(topo.backends[0]!, 'b1');
    await startServer(topo.backends[1]!, 'b2');
    const group = await lab.group('see');
    const adminGroup = await lab.group('adm');
    admin = await lab.user('admin', [adminGroup]);
    user = await lab.user('user');
    daemon = await startDaemon(topo.lb, { config: { access: { group, adminGroup }, lb: { interfaces: [topo.front.b.ifname] } } });
  });
  after(async () => {
    await daemon?.stop('SIGKILL');
    if (daemon) await daemonOnce(topo.lb, daemon.configPath, ['--teardown']);
    await lab?.destroy();
  });

  const lbctl = (u: TestUser, args: string[]) => ctl(['lb', ...args], { socket: daemon.socketPath, user: as(u) });

  test('an admin configures a VIP; requests reach every backend and the counters agree', async () => {
    let r = await lbctl(admin, ['vip', 'add', VIP]);
    assert.equal(r.code, 0, r.stderr);
    for (const l of topo.back) {
      r = await lbctl(admin, ['backend', 'add', VIP, l.b.ip4]);
      assert.equal(r.code, 0, r.stderr);
    }
    const answered: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const c = await topo.client.exec('curl', ['-s', '--max-time', '5', 'http://198.19.10.10:8080/']);
      answered[c.stdout.trim()] = (answered[c.stdout.trim()] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(answered).sort(), ['b1', 'b2'], `every backend answered: ${JSON.stringify(answered)}`);
    assert.equal(answered.b1! + answered.b2!, 40);

    const stats = JSON.parse((await lbctl(user, ['stats', '--json'])).stdout) as LbStats;
    const v = stats.vips.find((x) => x.vip === VIP)!;
    const byBackend = Object.fromEntries(v.backends.map((b) => [b.backend.split(':')[0], b.flows]));
    assert.equal(byBackend[topo.back[0]!.b.ip4], answered.b1, 'new flows counted per backend = who answered');
    assert.equal(byBackend[topo.back[1]!.b.ip4], answered.b2);

    const list = JSON.parse((await lbctl(user, ['list', '--json'])).stdout) as LbList;
    assert.deepEqual(list.vips.map((x) => [x.vip, x.backends.length]), [[VIP, 2]]);
    const flows = JSON.parse((await lbctl(user, ['flows', '--vip', VIP, '--json'])).stdout) as LbFlow[];
    assert.ok(flows.length > 0 && flows.every((f) => f.vip === VIP && f.client.startsWith(topo.front.a.ip4)));
    const human = await lbctl(user, ['list']);
    assert.match(human.stdout, new RegExp(`${VIP.replace(/[./]/g, '\\$&')}\\s+nat on ${topo.front.b.ifname}`));

    const st = await ctl(['status', '--json'], { socket: daemon.socketPath, user: as(user) });
    const s = JSON.parse(st.stdout) as StatusResult & { lb: { vips: number; backends: number } };
    assert.deepEqual([s.lb.vips, s.lb.backends], [1, 2]);
  });

  test('a drain emits an lb event and the drained backend gets no new flows', async () => {
    const ev = spawn('setpriv', [`--reuid=${admin.uid}`, `--regid=${admin.gid}`, '--init-groups', process.execPath, CTL_MAIN, '--socket', daemon.socketPath, 'events', '--json', '--type', 'lb'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EBPFMONCTL_ANNOUNCE: '1' } });
    lab.track(ev);
    let err = '';
    ev.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const lines = jsonLines(ev);
    const t0 = Date.now();
    while (!err.includes('subscribed') && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    const r = await lbctl(admin, ['backend', 'drain', VIP, topo.back[0]!.b.ip4]);
    assert.equal(r.code, 0, r.stderr);
    const e = await lines.next((o) => o.type === 'lb' && o.name === 'lb.backend.drained');
    assert.equal((e.detail as { vip: string }).vip, VIP);
    process.kill(ev.pid!, 'SIGINT');
    for (let i = 0; i < 10; i++) {
      const c = await topo.client.exec('curl', ['-s', '--max-time', '5', 'http://198.19.10.10:8080/']);
      assert.equal(c.stdout.trim(), 'b2', 'new flows avoid the drained backend');
    }
  });

  test('changes need root or the admin group; reads do not', async () => {
    const r = await lbctl(user, ['vip', 'add', '198.19.10.11:80/tcp']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /may not change the load balancer/);
    assert.equal((await lbctl(user, ['list'])).code, 0);
  });

  test('bad input is refused, naming the field, and changes nothing', async () => {
    const before1 = (await lbctl(user, ['list', '--json'])).stdout;
    const cases: Array<[string[], RegExp]> = [
      [['vip', 'add', 'not-a-vip'], /params\.vip/],
      [['vip', 'add', VIP], /already exists/i],
      [['backend', 'add', '198.19.10.99:80/tcp', '198.18.1.2'], /no such VIP|UnknownVip|198\.19\.10\.99/i],
      [['backend', 'add', VIP, topo.back[1]!.b.ip4], /already/i],
      [['backend', 'remove', VIP, '203.0.113.7'], /no such backend|203\.0\.113\.7/i],
      [['drop', 'add', 'nonsense'], /params\.rule/],
    ];
    for (const [args, re] of cases) {
      const r = await lbctl(admin, args);
      assert.notEqual(r.code, 0, `${args.join(' ')} should fail`);
      assert.match(r.stderr, re, args.join(' '));
    }
    const weight = await lbctl(admin, ['backend', 'add', VIP, '198.18.9.9', '--weight', '0']);
    assert.equal(weight.code, 1, 'a bad option value is a usage error');
    assert.equal((await lbctl(user, ['list', '--json'])).stdout, before1, 'the configuration is unchanged');
  });

  test('the drop list drops what it names, counted', async () => {
    assert.equal((await lbctl(admin, ['drop', 'add', 'icmp:echo-request'])).code, 0);
    const ping = await topo.client.exec('ping', ['-c', '3', '-W', '1', '-i', '0.2', topo.front.b.ip4], { allowFail: true });
    assert.match(ping.stdout, /0 received/);
    const rules = JSON.parse((await lbctl(user, ['drop', 'list', '--json'])).stdout) as Array<{ rule: string; packets: number }>;
    assert.equal(rules.find((x) => x.rule === 'icmp:echo-request')?.packets, 3);
    assert.equal((await lbctl(admin, ['drop', 'remove', 'icmp:echo-request'])).code, 0);
    const ping2 = await topo.client.exec('ping', ['-c', '1', '-W', '2', topo.front.b.ip4], { allowFail: true });
    assert.match(ping2.stdout, /1 received/);
  });
  test('a VIP on a host that does not forward: added with a warning naming the sysctl; list and status say it until forwarding is on', async () => {
    const vip2 = '198.19.10.11:8080/tcp';
    const fwd = async (on: 0 | 1) => topo.lb.exec('sysctl', ['-qw', `net.ipv4.ip_forward=${on}`]);
    await fwd(0);
    try {
      const added = await lbctl(admin, ['vip', 'add', vip2]);
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /^added 198\.19\.10\.11:8080\/tcp/);
      assert.match(added.stderr, new RegExp(`warning: ${vip2.replace(/[./]/g, '\\$&')}: IPv4 forwarding is off on ${topo.front.b.ifname} \\(net\\.ipv4\\.conf\\.${topo.front.b.ifname}\\.forwarding = 0\\).*every client connection times out.*sysctl -w net\\.ipv4\\.ip_forward=1`));
      // The kernel agrees: a client's connection to the VIP gets nowhere.
      await lbctl(admin, ['backend', 'add', vip2, topo.back[0]!.b.ip4]);
      const c = await topo.client.exec('curl', ['-s', '--max-time', '2', 'http://198.19.10.11:8080/'], { allowFail: true });
      assert.notEqual(c.code, 0, 'no answer while forwarding is off');

      const list = JSON.parse((await lbctl(user, ['list', '--json'])).stdout) as LbList;
      assert.match(list.vips.find((v) => v.vip === vip2)!.warnings.join('\n'), /forwarding is off/);
      assert.deepEqual(list.vips.find((v) => v.vip === VIP)!.warnings.filter((w) => !/forwarding is off/.test(w)), []);
      assert.match((await lbctl(user, ['list'])).stdout, /WARNING: IPv4 forwarding is off/);
      const st = await ctl(['status'], { socket: daemon.socketPath, user: as(user) });
      assert.match(st.stdout, /LOAD BALANCER WARNINGS\n( {2}.*\n)* {2}198\.19\.10\.11:8080\/tcp: IPv4 forwarding is off/);
    } finally {
      await fwd(1);
    }
    const after = JSON.parse((await lbctl(user, ['list', '--json'])).stdout) as LbList;
    assert.deepEqual(after.vips.map((v) => v.warnings), [[], []], 'the warnings go once forwarding is on');
    const c = await topo.client.exec('curl', ['-s', '--max-time', '5', 'http://198.19.10.11:8080/']);
    assert.equal(c.stdout.trim(), 'b1');
    assert.equal((await lbctl(admin, ['vip', 'remove', vip2])).code, 0);
  });

  test('the XDP program follows its interface through deletion and recreation, within 2 s', async () => {
    const ifname = topo.front.b.ifname;
    const xdpOf = async () => {
      const j = JSON.parse((await topo.lb.exec('ip', ['-j', '-d', 'link', 'show', 'dev', ifname])).stdout) as Array<{ ifindex: number; xdp?: { prog?: { id: number } } }>;
      return { ifindex: j[0]!.ifindex, prog: j[0]!.xdp?.prog?.id ?? null };
    };
    const before0 = await xdpOf();
    assert.ok(before0.prog, 'xdp_lb is on the VIP interface');
    await lab.relink(topo.front);
    const t0 = Date.now();
    // The interface is new (another ifindex) and bare until the daemon notices it.
    let now = await xdpOf();
    assert.notEqual(now.ifindex, before0.ifindex);
    while (now.prog === null && Date.now() - t0 < scaled(2000)) {
      await new Promise((r) => setTimeout(r, 50));
      now = await xdpOf();
    }
    assert.equal(now.prog, before0.prog, `the same xdp_lb program is back on ${ifname} (after ${Date.now() - t0} ms)`);
    const list = JSON.parse((await lbctl(user, ['list', '--json'])).stdout) as LbList;
    assert.deepEqual(list.interfaces.filter((i) => i.name === ifname).map((i) => i.ifindex), [now.ifindex], 'lb list shows the new ifindex');
    assert.ok(!list.interfaces.some((i) => i.ifindex === before0.ifindex), 'and forgets the old one');
    // Traffic flows through it again (the client's route went with the old link).
    await topo.client.exec('ip', ['route', 'replace', '198.19.10.0/24', 'via', topo.front.b.ip4]);
    await topo.lb.exec('sysctl', ['-qw', `net.ipv4.conf.${ifname}.rp_filter=0`]);
    await topo.client.exec('ethtool', ['-K', topo.front.a.ifname, 'tx', 'off', 'gro', 'on']);
    const c = await topo.client.exec('curl', ['-s', '--max-time', '5', 'http://198.19.10.10:8080/']);
    assert.equal(c.stdout.trim(), 'b2', 'the VIP answers (b1 is drained)');
  });
});
