// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Manager on a private system-like bus (Debian's system.conf plus the real
// packaging/dbus/org.ebpfmon1.conf), called by real users from their own processes: the
// bus attributes each connection to its uid and groups, and the daemon must scope what
// each sees by that alone. Every method and property, bad arguments for each (typed
// errors, the service unharmed), the bus policy, introspection against docs/, busctl as
// a second client, and a caller flooding the service.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Lab, sh, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { flow } from '../helpers/fake-monitor.js';
import {
  startTestDbusService, Agent, BusFakeMonitor, asUser, errorOf, getAll, manager, memoryLogger, ok, parseIntrospection, plain, REPO, signatures, startPrivateBus, t, v,
  type PrivateBus, type Wire,
} from '../helpers/dbus.js';
import type { DbusService } from '../../daemon/src/dbus/service.js';
import { History } from '../../daemon/src/history/history.js';
import type { FlowObservation } from '../../daemon/src/history/types.js';
import { BUS_NAME, FDO_ERROR, LB_IFACE, LB_PATH, MANAGER_IFACE, MANAGER_PATH } from '../../daemon/src/contract/dbus.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';

const INVALID = ERRORS.InvalidParams.dbus;

// What the heap keeps, garbage collected first (the flag can be set at run time).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
function retainedHeap(): number {
  gc();
  gc();
  return v8.getHeapStatistics().used_heap_size;
}
const DENIED = ERRORS.PermissionDenied.dbus;
const POLICY = path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf');

describe('org.ebpfmon1.Manager on a private system bus', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let bus: PrivateBus;
  let service: DbusService;
  let monitor: BusFakeMonitor;
  let history: History | undefined;
  let log: ReturnType<typeof memoryLogger>;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let root: Agent;
  let a: Agent;
  let b: Agent;
  let c: Agent;

  const seedFlows = () => {
    monitor.flows = [
      flow({ pid: 100, uid: alice.uid, comm: 'curl', txBytes: 100, rxBytes: 1000 }),
      flow({ pid: 101, uid: alice.uid, comm: 'firefox', txBytes: 50, rxBytes: 5000, localPort: 40001 }),
      flow({ pid: 200, uid: bob.uid, comm: 'wget', txBytes: 7, rxBytes: 9, closedAt: '2026-11-22T00:00:02.000Z', state: 'closed' }),
      flow({ pid: 300, uid: 0, comm: 'sshd', txBytes: 3000, rxBytes: 3000, localPort: 22, remotePort: 50000, direction: 'inbound' }),
      flow({ pid: null, tid: null, uid: null, gid: null, comm: null, exe: null, attributedBy: 'none', txBytes: 1, rxBytes: 1 }),
    ];
  };

  before(async () => {
    requireTool('dbus-daemon', 'busctl', 'setpriv');
    lab = await Lab.create();
    const group = await lab.group('emg');
    const adminGroup = await lab.group('ema');
    alice = await lab.user('alice');
    bob = await lab.user('bob');
    carol = await lab.user('carol', [group]);
    bus = await startPrivateBus({ policies: [POLICY], lab });
    monitor = new BusFakeMonitor();
    seedFlows();
    log = memoryLogger();
    history = History.start({ dir: lab.tmpdir(), maxBytes: 1 << 30, retentionDays: 30 });
    service = await startTestDbusService({
      monitor, history, logger: log.logger, version: '9.9.9', groups: { group, adminGroup }, address: bus.address, limits: { cacheMs: 0 },
    });
    [root, a, b, c] = await Promise.all([Agent.start(lab, bus.address, null), Agent.start(lab, bus.address, alice), Agent.start(lab, bus.address, bob), Agent.start(lab, bus.address, carol)]);
  });

  after(async () => {
    await service?.stop();
    await history?.stop();
    await lab?.destroy();
  });

  const flowsOf = async (agent: Agent, filter: Record<string, unknown> = {}) => plain(ok(await agent.call(manager('GetFlows', 'a{sv}', [filter]))))[0] as Array<Record<string, any>>;

  test('the bus attributes each agent to its own user', async () => {
    for (const [agent, uid] of [[a, alice.uid], [b, bob.uid], [root, 0]] as const) {
      const r = ok(await agent.call({ dest: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', iface: 'org.freedesktop.DBus', member: 'GetConnectionUnixUser', sig: 's', body: [agent.name] }));
      assert.equal(r[0], uid);
    }
  });

  test('properties: per caller, typed, read-only', async () => {
    const all = async (agent: Agent) => plain(ok(await agent.call(getAll())))[0] as Record<string, any>;
    const pa = await all(a);
    assert.equal(pa.Version, '9.9.9');
    assert.equal(pa.SeesAllUsers, false);
    assert.equal(pa.TxBytes, 150, 'alice: her two processes');
    assert.equal(pa.RxBytes, 6000);
    assert.equal(pa.ProcessCount, 2);
    assert.equal(pa.FlowCount, 2);
    assert.ok(!Number.isNaN(Date.parse(pa.StartedAt)));
    const pc = await all(c);
    assert.equal(pc.SeesAllUsers, true, 'carol is in the group');
    assert.equal(pc.TxBytes, 100 + 50 + 7 + 3000 + 1, 'carol: everyone, unattributed traffic included');
    assert.equal(pc.ProcessCount, 4);
    assert.equal(pc.FlowCount, 4, 'bob\'s closed flow is not open');
    const pb = await all(b);
    assert.deepEqual([pb.TxBytes, pb.ProcessCount, pb.FlowCount], [7, 1, 0]);
    const types = signatures(ok(await root.call(getAll()))[0]);
    assert.deepEqual(types, {
      Version: 's', StartedAt: 's', Interfaces: 'as', SeesAllUsers: 'b', FlowCount: 't', ProcessCount: 'u', TxBytes: 't', RxBytes: 't',
      RingbufFull: 't', FlowsEvicted: 't', SignalsDropped: 't', TxBytesPerSec: 't', RxBytesPerSec: 't',
    });
    const get = await a.call({ dest: BUS_NAME, path: MANAGER_PATH, iface: 'org.freedesktop.DBus.Properties', member: 'Get', sig: 'ss', body: [MANAGER_IFACE, 'TxBytes'] });
    assert.deepEqual(ok(get)[0], v('t', t(150)));
    const prop = (member: string, sig: string, body: unknown[]) => ({ dest: BUS_NAME, path: MANAGER_PATH, iface: 'org.freedesktop.DBus.Properties', member, sig, body });
    assert.equal(errorOf(await a.call(prop('Get', 'ss', [MANAGER_IFACE, 'NoSuchThing']))), FDO_ERROR.UnknownProperty);
    assert.equal(errorOf(await a.call(prop('Get', 'ss', [MANAGER_IFACE, '__proto__']))), FDO_ERROR.UnknownProperty);
    assert.equal(errorOf(await a.call(prop('Get', 's', [MANAGER_IFACE]))), INVALID);
    assert.equal(errorOf(await a.call(prop('GetAll', 's', ['org.example.Nope']))), FDO_ERROR.UnknownInterface);
    assert.deepEqual(ok(await a.call(prop('GetAll', 's', ['org.freedesktop.DBus.Peer'])))[0], {});
    // Set: the policy refuses it to users; root reaches the daemon, which refuses it too.
    assert.equal(errorOf(await a.call(prop('Set', 'ssv', [MANAGER_IFACE, 'Version', v('s', 'x')]))), FDO_ERROR.AccessDenied);
    assert.equal(errorOf(await root.call(prop('Set', 'ssv', [MANAGER_IFACE, 'Version', v('s', 'x')]))), FDO_ERROR.PropertyReadOnly);
    assert.equal(plain(ok(await root.call(getAll(LB_IFACE, LB_PATH))))[0].Available, false);
  });

  test('GetFlows: a user sees only its own flows; the group and root see all', async () => {
    monitor.queries.length = 0;
    assert.deepEqual((await flowsOf(a)).map((f) => f.pid).sort(), [100, 101]);
    assert.equal(monitor.queries.at(-1)!.uid, alice.uid, 'the uid filter was forced');
    assert.deepEqual((await flowsOf(b)).map((f) => f.pid), [200]);
    assert.equal((await flowsOf(c)).length, 5);
    assert.equal((await flowsOf(root)).length, 5);
    assert.deepEqual((await flowsOf(a, { uid: v('u', alice.uid) })).length, 2);
    assert.equal(errorOf(await a.call(manager('GetFlows', 'a{sv}', [{ uid: v('u', bob.uid) }]))), DENIED);
    assert.deepEqual((await flowsOf(c, { uid: v('u', bob.uid) })).map((f) => f.pid), [200]);
    assert.deepEqual((await flowsOf(root, { pid: v('i', 300) })).map((f) => f.comm), ['sshd'], 'python-dbus style i works');
    const q = monitor.queries.length;
    await flowsOf(root, { pid: v('u', 100), remoteAddr: v('s', '198.18.0.0/15'), protocol: v('s', 'tcp'), sort: v('s', 'packets'), limit: v('u', 5), includeClosed: v('b', false) });
    const last = monitor.queries.at(-1)!;
    assert.equal(monitor.queries.length, q + 1);
    assert.deepEqual([last.pid, last.protocol, last.sort, last.limit, last.includeClosed, last.remoteAddr?.prefix], [100, 6, 'packets', 5, false, 15]);
    const f = ok(await root.call(manager('GetFlows', 'a{sv}', [{ pid: v('u', 300) }])))[0] as Array<Record<string, unknown>>;
    const sigs = signatures(f[0]);
    assert.equal(sigs.txBytes, 't');
    assert.equal(sigs.localPort, 'u');
    assert.equal(sigs.tcpFlagsTx, 'as');
    assert.deepEqual(plain(f[0]).tcpFlagsTx, ['SYN', 'ACK']);
    const unattributed = (await flowsOf(root)).find((x) => x.pid === undefined)!;
    assert.ok(unattributed && !('comm' in unattributed) && !('uid' in unattributed), 'null fields are left out');
  });

  test('GetFlows: every bad argument is a typed InvalidArgs naming the key, and reaches no query', async () => {
    const before0 = monitor.queries.length;
    const cases: Array<[unknown, RegExp]> = [
      [{ pid: v('s', 'x') }, /^filter\.pid: /], [{ pid: v('i', -1) }, /^filter\.pid: expected an integer from 0 to 2147483647, got -1$/],
      [{ pid: v('d', 1.5) }, /^filter\.pid/], [{ limit: v('u', 0) }, /^filter\.limit/], [{ limit: v('u', 10_001) }, /^filter\.limit/],
      [{ protocol: v('s', 'bogus') }, /^filter\.protocol: expected one of tcp, /], [{ remoteAddr: v('s', 'not-an-ip') }, /^filter\.remoteAddr/],
      [{ remoteAddr: v('s', '10.0.0.0/33') }, /^filter\.remoteAddr/], [{ port: v('u', 70000) }, /^filter\.port/], [{ sort: v('s', 'size') }, /^filter\.sort/],
      [{ pids: v('au', [1]) }, /^filter\.pids: expected one of the known keys/], [{ comm: v('s', 'x'.repeat(16)) }, /^filter\.comm/],
      [{ includeClosed: v('s', 'yes') }, /^filter\.includeClosed/], [{ uid: v('t', t(2n ** 63n)) }, /^filter\.uid/],
      [{ comm: v('s', 'x'.repeat(1 << 20)) }, /^filter\.comm: .*\.\.\."$/], [{ pid: v('v', v('u', 1)) }, /^filter\.pid/],
      [{ interface: v('a{sv}', { a: v('a{sv}', { b: v('a{sv}', {}) }) }) }, /^filter\.interface/],
    ];
    for (const [filter, re] of cases) {
      const r = await a.call(manager('GetFlows', 'a{sv}', [filter]));
      assert.equal(errorOf(r), INVALID, JSON.stringify(filter).slice(0, 100));
      assert.match((r as { text: string }).text, re);
    }
    const many = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, v('u', i)]));
    assert.equal(errorOf(await a.call(manager('GetFlows', 'a{sv}', [many]))), INVALID);
    // the wrong signature altogether
    const wrong: Array<[string, unknown[]]> = [['s', ['pid=1']], ['', []], ['a{ss}', [{ pid: '1' }]], ['a{sv}u', [{}, 1]]];
    for (const [sig, body] of wrong) {
      const r = await a.call(manager('GetFlows', sig, body));
      assert.equal(errorOf(r), INVALID, sig);
      assert.match((r as { text: string }).text, /GetFlows\(a\{sv\} filter\) takes arguments of type \(a\{sv\}\)/);
    }
    assert.equal(monitor.queries.length, before0, 'no invalid call reached the monitor');
    assert.deepEqual((await flowsOf(a)).map((x) => x.pid).sort(), [100, 101], 'and the service answers as before');
  });

  test('GetHistory: the flows the test recorded, scoped per caller; bad filters are InvalidArgs', async () => {
    // What the test hands the store is the truth: alice two flows, bob one.
    const now = Date.now();
    const obs = (pid: number, uid: number, comm: string, localPort: number, txBytes: number): FlowObservation => ({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort, remoteAddr: '198.18.0.2', remotePort: 443, interface: 'veth0', direction: 'outbound',
      attributedBy: 'connect', pid, comm, uid, exe: null, cgroupId: null, firstMs: now - 1000, lastMs: now, closedMs: now, txBytes, rxBytes: 2 * txBytes, txPackets: 3, rxPackets: 4,
    });
    for (const o of [obs(100, alice.uid, 'curl', 40100, 111), obs(101, alice.uid, 'firefox', 40101, 222), obs(200, bob.uid, 'wget', 40200, 333)]) history!.recordClose(o, now);
    await history!.flush();
    const get = async (agent: Agent, filter: Record<string, unknown> = {}) => plain(ok(await agent.call(manager('GetHistory', 'a{sv}', [filter])))) as [Record<string, any>, Array<Record<string, any>>];
    const [sumA, rowsA] = await get(a);
    assert.deepEqual(rowsA.map((r) => [r.pid, r.uid, r.txBytes]).sort(), [[100, alice.uid, 111], [101, alice.uid, 222]]);
    assert.deepEqual([sumA.txBytes, sumA.connections, sumA.source, sumA.by], [333, 2, 'records', '']);
    assert.deepEqual((await get(b))[1].map((r) => r.pid), [200]);
    assert.equal((await get(c))[1].length, 3, 'the ebpfmon group sees every user');
    assert.equal(errorOf(await a.call(manager('GetHistory', 'a{sv}', [{ user: v('u', bob.uid) }]))), DENIED);
    const [byProc, groups] = await get(root, { by: v('s', 'process'), user: v('s', bob.name) });
    assert.deepEqual([byProc.by, byProc.source, groups.map((g) => [g.pid, g.txBytes])], ['process', 'minutes', [[200, 333]]]);
    const [sumSig, rowSigs] = ok(await root.call(manager('GetHistory', 'a{sv}', [{ pid: v('u', 100) }]))) as [Wire, Wire[]];
    assert.deepEqual([signatures(sumSig).txBytes, signatures(sumSig).matched, signatures(sumSig).truncated], ['t', 'u', 'b']);
    assert.deepEqual([signatures(rowSigs[0]!).txBytes, signatures(rowSigs[0]!).pid, signatures(rowSigs[0]!).state], ['t', 'u', 's']);
    for (const bad of [{ by: v('s', 'week') }, { nope: v('u', 1) }, { pid: v('s', 'x') }, { since: v('s', 'yesterday') }, { limit: v('u', 0) }, { user: v('b', true) }]) {
      const r = await a.call(manager('GetHistory', 'a{sv}', [bad]));
      assert.equal(errorOf(r), INVALID, JSON.stringify(Object.keys(bad)));
      assert.match((r as { text: string }).text, /^filter\./);
    }
  });

  test('GetProcesses: scoped per caller; no arguments accepted', async () => {
    const procs = async (agent: Agent) => plain(ok(await agent.call(manager('GetProcesses'))))[0] as Array<Record<string, any>>;
    assert.deepEqual((await procs(a)).map((p) => p.comm), ['firefox', 'curl'], 'busiest first');
    assert.deepEqual((await procs(b)).map((p) => p.pid), [200]);
    const all = await procs(c);
    assert.deepEqual(all.map((p) => p.pid ?? null), [300, 101, 100, 200, null]);
    assert.deepEqual(signatures((ok(await root.call(manager('GetProcesses')))[0] as unknown[])[0]).txBytes, 't');
    assert.equal(errorOf(await a.call(manager('GetProcesses', 'u', [1]))), INVALID);
  });

  test('GetTopTalkers: ranked by rate over the last second, scoped, limited', async () => {
    monitor.growth.set(101, 4000); // alice's firefox keeps sending
    monitor.growth.set(200, 9000); // so does bob's wget
    try {
      const top = async (agent: Agent, n: number) => plain(ok(await agent.call(manager('GetTopTalkers', 'u', [n]))))[0] as Array<Record<string, any>>;
      // Rates are over the last sample: one taken before the growth began (reading the rate
      // properties above starts sampling) says 0 until the next one.
      const deadline = Date.now() + 5000;
      let ta = await top(a, 10);
      while (!(ta[0]!.txBytesPerSec > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        ta = await top(a, 10);
      }
      assert.deepEqual(ta.map((x) => x.comm), ['firefox', 'curl'], 'alice: hers only, the sender first');
      assert.ok(ta[0]!.txBytesPerSec > 0 && ta[0]!.bytesPerSec === ta[0]!.txBytesPerSec + ta[0]!.rxBytesPerSec);
      assert.equal(ta[1]!.bytesPerSec, 0);
      const tc = await top(c, 2);
      assert.deepEqual(tc.map((x) => x.comm).sort(), ['firefox', 'wget'], 'carol: the two senders of all users');
      const types = signatures((ok(await root.call(manager('GetTopTalkers', 'u', [1])))[0] as unknown[])[0]);
      assert.deepEqual([types.txBytesPerSec, types.rxBytesPerSec, types.bytesPerSec, types.pid], ['t', 't', 't', 'u']);
    } finally {
      monitor.growth.clear();
      seedFlows();
    }
    for (const [sig, body, re] of [['u', [0], /^limit: expected an integer from 1 to 1000, got 0$/], ['u', [1001], /^limit/], ['s', ['5'], /takes arguments of type \(u\)/], ['i', [5], /got \(i\)/], ['', [], /got \(\)/]] as const) {
      const r = await a.call(manager('GetTopTalkers', sig, body as unknown as unknown[]));
      assert.equal(errorOf(r), INVALID, `${sig} ${JSON.stringify(body)}`);
      assert.match((r as { text: string }).text, re);
    }
  });

  test('Subscribe and Unsubscribe: per connection, NotFound when not subscribed, no arguments', async () => {
    assert.equal(errorOf(await a.call(manager('Unsubscribe'))), ERRORS.NotFound.dbus);
    ok(await a.call(manager('Subscribe')));
    ok(await a.call(manager('Subscribe')), 'twice is harmless');
    assert.equal(service.stats().subscribers, 1);
    assert.equal(errorOf(await b.call(manager('Unsubscribe'))), ERRORS.NotFound.dbus, 'bob cannot end alice\'s subscription');
    ok(await a.call(manager('Unsubscribe')));
    assert.equal(service.stats().subscribers, 0);
    assert.equal(errorOf(await a.call(manager('Subscribe', 's', ['all']))), INVALID);
    assert.equal(errorOf(await a.call(manager('Unsubscribe', 'u', [1]))), INVALID);
  });

  test('the bus policy: only root owns org.ebpfmon1; users reach only the listed members', async () => {
    const r = await a.requestName(BUS_NAME);
    assert.equal(errorOf(r), FDO_ERROR.AccessDenied);
    assert.match((r as { text: string }).text, /not allowed to own the service "org\.ebpfmon1"/);
    assert.equal(errorOf(await c.requestName(BUS_NAME)), FDO_ERROR.AccessDenied, 'the group does not help');
    assert.deepEqual(ok(await root.requestName(BUS_NAME)), [3], 'root may own it (here: taken, EXISTS)');
    assert.equal(errorOf(await a.call(manager('Frobnicate'))), FDO_ERROR.AccessDenied, 'an unlisted member stops at the bus');
    assert.equal(errorOf(await root.call(manager('Frobnicate'))), ERRORS.MethodNotFound.dbus, 'root reaches the daemon: UnknownMethod');
    assert.equal(errorOf(await a.call({ ...manager('GetProcesses'), iface: 'org.ebpfmon1.Nope' })), FDO_ERROR.AccessDenied);
    ok(await a.call({ dest: BUS_NAME, path: MANAGER_PATH, iface: 'org.freedesktop.DBus.Peer', member: 'Ping' }));
    const intro = ok(await a.call({ dest: BUS_NAME, path: '/', iface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect' }));
    assert.match(intro[0] as string, /<node name="org"/, 'anyone may introspect');
  });

  test('introspection: the exported interfaces are docs/org.ebpfmon1.xml, member for member', async () => {
    const docs = parseIntrospection(fs.readFileSync(path.join(REPO, 'docs/org.ebpfmon1.xml'), 'utf8'));
    const live = async (p: string) => parseIntrospection(ok(await a.call({ dest: BUS_NAME, path: p, iface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect' }))[0] as string);
    const mgr = await live(MANAGER_PATH);
    const lb = await live(LB_PATH);
    assert.match(ok(await a.call({ dest: BUS_NAME, path: MANAGER_PATH, iface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect' }))[0] as string, /<node name="lb"\/>/);
    for (const [name, got] of [[MANAGER_IFACE, mgr.get(MANAGER_IFACE)], [LB_IFACE, lb.get(LB_IFACE)]] as const) {
      const want = docs.get(name)!;
      assert.ok(got, `${name} is exported`);
      assert.deepEqual([...got.members.keys()].sort(), [...want.members.keys()].sort(), `${name}: the same members`);
      for (const [k, m] of want.members) {
        assert.deepEqual(got.members.get(k)!.args, m.args, `${name} ${k}: signature and argument names`);
        assert.deepEqual(got.members.get(k)!.annotations, m.annotations, `${name} ${k}: annotations`);
      }
      assert.deepEqual(got.annotations, want.annotations);
    }
  });

  test('busctl, a second client implementation, gets the same answers and errors', async () => {
    const busctl = (user: TestUser | null, ...args: string[]) => {
      const argv = [...asUser(user), 'busctl', `--address=${bus.address}`, ...args];
      return sh(argv[0]!, argv.slice(1), { allowFail: true, timeoutMs: 20_000 });
    };
    const flows = await busctl(alice, '--json=short', 'call', BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'GetFlows', 'a{sv}', '0');
    assert.equal(flows.code, 0, flows.stderr);
    const parsed = JSON.parse(flows.stdout) as { type: string; data: [Array<Record<string, { type: string; data: unknown }>>] };
    assert.equal(parsed.type, 'aa{sv}');
    assert.deepEqual(parsed.data[0].map((f) => f.uid!.data), [alice.uid, alice.uid]);
    const filtered = await busctl(null, '--json=short', 'call', BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'GetFlows', 'a{sv}', '2', 'comm', 's', 'sshd', 'limit', 'u', '1');
    assert.deepEqual((JSON.parse(filtered.stdout) as typeof parsed).data[0].map((f) => f.pid!.data), [300]);
    const prop = await busctl(alice, 'get-property', BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'SeesAllUsers', 'TxBytes');
    assert.equal(prop.stdout.trim(), 'b false\nt 150');
    const bad = await busctl(alice, 'call', BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'GetTopTalkers', 'u', '0');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /limit: expected an integer from 1 to 1000, got 0/);
    const other = await busctl(bob, 'call', BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'GetFlows', 'a{sv}', '1', 'uid', 'u', String(alice.uid));
    assert.match(other.stderr, /may only see its own flows/);
    const intro = await busctl(bob, 'introspect', BUS_NAME, MANAGER_PATH, MANAGER_IFACE);
    assert.equal(intro.code, 0, intro.stderr);
    assert.match(intro.stdout, /\.GetTopTalkers\s+method\s+u\s+aa\{sv\}/);
    assert.match(intro.stdout, /\.Version\s+property\s+s\s+"9\.9\.9"\s+const/);
    const lb = await busctl(null, 'call', BUS_NAME, LB_PATH, LB_IFACE, 'ListVips');
    assert.match(lb.stderr, /load balancer is not configured/);
  });

  test('a reply too large for a bus message is refused with MessageTooLarge; the daemon stays on the bus', async () => {
    // Long executable paths are legal (PATH_MAX): 9000 flows of them make ~37 MiB, more than the bus's 32.
    monitor.flows = Array.from({ length: 9000 }, (_, i) => flow({ pid: 1000 + i, uid: alice.uid, comm: 'long', exe: `/opt/${'x'.repeat(4000)}/${i}`, localPort: i }));
    try {
      const r = await root.call(manager('GetFlows', 'a{sv}', [{ limit: v('u', 10_000) }]));
      assert.equal(errorOf(r), ERRORS.MessageTooLarge.dbus);
      assert.match((r as { text: string }).text, /exceed 16 MiB/);
      assert.equal(errorOf(await root.call(manager('GetProcesses'))), ERRORS.MessageTooLarge.dbus);
      assert.equal((plain(ok(await root.call(manager('GetFlows', 'a{sv}', [{ limit: v('u', 100) }]))))[0] as unknown[]).length, 100);
    } finally {
      seedFlows();
    }
    assert.equal(plain(ok(await a.call(getAll())))[0].TxBytes, 150, 'still connected and serving');
  });

  test('a caller flooding thousands of concurrent calls: others are still served, memory stays bounded', async () => {
    const heap0 = retainedHeap();
    const calls0 = service.stats().calls;
    const flood = b.flood(manager('GetProcesses'), 5000);
    const badFlood = c.flood(manager('GetFlows', 'a{sv}', [{ nope: v('u', 1) }]), 3000);
    let floodsDone = false;
    void Promise.all([flood, badFlood]).then(() => (floodsDone = true));
    // Alice's calls are answered while both floods run, not after them.
    let duringFloods = 0;
    for (let i = 0; i < 20; i++) {
      assert.deepEqual((await flowsOf(a)).map((f) => f.pid).sort(), [100, 101]);
      if (!floodsDone) duringFloods++;
    }
    assert.ok(duringFloods > 0, 'alice was served while the floods were still running');
    const [r1, r2] = await Promise.all([flood, badFlood]);
    process.stdout.write(`# flood of GetProcesses: ${JSON.stringify(r1)}; flood of bad GetFlows: ${JSON.stringify(r2)}; alice's calls answered during the floods: ${duringFloods}/20\n`);
    const done = (r: { ok: number; errors: Record<string, number> }) => r.ok + Object.values(r.errors).reduce((x, y) => x + y, 0);
    assert.equal(done(r1), 5000);
    assert.equal(done(r2), 3000);
    assert.ok(r1.ok > 0, 'the flooder was served too');
    // What may refuse a flood: the bus (pending replies per connection) or the daemon (calls in progress).
    for (const name of Object.keys(r1.errors)) assert.ok([FDO_ERROR.LimitsExceeded, ERRORS.Busy.dbus].includes(name as never), `flood error ${name}`);
    for (const name of Object.keys(r2.errors)) assert.ok([FDO_ERROR.LimitsExceeded, ERRORS.Busy.dbus, INVALID].includes(name as never), `bad flood error ${name}`);
    assert.ok(service.stats().calls - calls0 >= r1.ok + (r2.errors[INVALID] ?? 0));
    const s = service.stats();
    assert.equal(s.inFlight, 0, 'nothing left in progress');
    assert.ok(s.callers <= 6, `one record per connected caller, got ${s.callers}`);
    const grown = retainedHeap() - heap0;
    process.stdout.write(`# heap change across the floods, after GC: ${Math.round(grown / 1024)} KiB\n`);
    assert.ok(grown < 16 << 20, `the heap kept ${Math.round(grown / 1048576)} MiB after the floods`);
    assert.deepEqual(log.records.filter((r) => r.level >= 50), [], 'no internal errors were logged');
    assert.equal(plain(ok(await root.call(getAll())))[0].Version, '9.9.9', 'the service still answers');
  });

  test('a fresh connection flooding before it is identified: bounded queue (Busy beyond 64), then forgotten', async () => {
    const fresh = await Agent.start(lab, bus.address, bob);
    try {
      const r = await fresh.flood(manager('GetTopTalkers', 'u', [5]), 400);
      process.stdout.write(`# flood before identification: ${JSON.stringify(r)}\n`);
      const total = r.ok + Object.values(r.errors).reduce((x, y) => x + y, 0);
      assert.equal(total, 400);
      for (const name of Object.keys(r.errors)) assert.ok([FDO_ERROR.LimitsExceeded, ERRORS.Busy.dbus].includes(name as never), name);
      assert.ok(r.ok >= 1 && r.ok <= 400);
    } finally {
      await fresh.close();
    }
    const t0 = Date.now();
    while (service.stats().callers > 4 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(service.stats().callers <= 4, 'a disconnected caller is forgotten');
    assert.equal(service.stats().inFlight, 0);
  });

  test('nothing logged as an error over the whole run (every failure above was the caller\'s)', () => {
    assert.deepEqual(log.records.filter((r) => r.level >= 50).map((r) => r.msg), []);
  });
});
