// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.LoadBalancer over a private system bus, against a fake load balancer (the
// real one needs XDP and its own tests): anyone reads; a change needs root, the admin
// group or polkit - and when polkit says no, fails or is not there, the change is denied.
// Bad arguments never reach the load balancer nor polkit. Finally a real polkitd on the
// private bus answers the daemon's CheckAuthorization.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { MessageBus } from 'dbus-next';
import { Lab, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import {
  startTestDbusService, Agent, BusFakeMonitor, errorOf, getAll, lbCall, memoryLogger, ok, plain, POLKIT_BUS_POLICY, POLKITD, REPO, signatures, startPolkitd, startPrivateBus, t, v,
  type PrivateBus, type Wire,
} from '../helpers/dbus.js';
import type { DbusService } from '../../daemon/src/dbus/service.js';
import type { LbApi } from '../../daemon/src/api/index.js';
import type { AddBackendParams as LbAddBackendParams, AddVipParams as LbAddVipParams } from '../../daemon/src/contract/lb.js';
import { connectBus } from '../../daemon/src/dbus/bus.js';
import { polkitCheck } from '../../daemon/src/dbus/polkit.js';
import { FLAG_ALLOW_INTERACTIVE_AUTHORIZATION, LB_IFACE, LB_PATH, POLKIT_ACTION_MANAGE_LB } from '../../daemon/src/contract/dbus.js';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import { AppError } from '../../daemon/src/errors.js';

const POLICY = path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf');
const INVALID = ERRORS.InvalidParams.dbus;
const DENIED = ERRORS.PermissionDenied.dbus;

const BACKEND = { vip: '198.19.10.10:80/tcp', backend: '198.19.0.2:80', address: '198.19.0.2', port: 80, weight: 2, state: 'active', id: 1, tableShare: 1, via: null, health: null };
const VIP = {
  vip: '198.19.10.10:80/tcp', address: '198.19.10.10', port: 80, protocol: 'tcp', family: 'ipv4', mode: 'nat', interfaces: ['veth0'], health: null,
  tableGeneration: 3, source: 'live', warnings: [], backends: [BACKEND],
};

/** What the daemon's LbManager would do, recorded (loosely typed: the test checks what D-Bus makes of its results). */
class FakeLb {
  readonly calls: Array<[string, unknown?]> = [];
  fail: Error | null = null;
  private rec<T>(name: string, p: unknown, result: T): T {
    this.calls.push(p === undefined ? [name] : [name, p]);
    if (this.fail) throw this.fail;
    return result;
  }
  list() { return this.rec('list', undefined, { vips: [VIP], interfaces: [{ name: 'veth0', ifindex: 7, mode: 'native' }], limits: { vips: 64, backends: 4096, backendsPerVip: 1024, dropRules: 1024 } }); }
  stats() { return this.rec('stats', undefined, { counters: { packets: 10, bytes: 1000 }, drops: { noBackend: 0 }, tables: { conns: { entries: 1, capacity: 65536 } }, vips: [{ vip: VIP.vip, packets: 10, bytes: 1000, backends: [] }] }); }
  async addVip(p: LbAddVipParams) { return this.rec('addVip', p, { ...VIP, vip: p.vip, backends: [] }); }
  removeVip(p: { vip: string }) { return this.rec('removeVip', p, { vip: p.vip, removedBackends: 1, flowsDeleted: 0 }); }
  addBackend(p: LbAddBackendParams) { return this.rec('addBackend', p, { ...BACKEND, weight: p.weight ?? 1 }); }
  removeBackend(p: { vip: string; backend: string }) { return this.rec('removeBackend', p, BACKEND); }
  drainBackend(p: { vip: string; backend: string }) { return this.rec('drainBackend', p, { ...BACKEND, state: 'draining', tableShare: 0 }); }
  addDropRule(p: { rule: string }) { return this.rec('addDropRule', p, { rule: p.rule, id: 1, packets: 0, bytes: 0 }); }
  removeDropRule(p: { rule: string }) { return this.rec('removeDropRule', p, { rule: p.rule, id: 1, packets: 5, bytes: 300 }); }
  flows() { return this.rec('flows', undefined, { flows: [], truncated: false }); }
  listDropRules() { return this.rec('listDropRules', undefined, { rules: [{ rule: 'udp:53', id: 1, packets: 5, bytes: 300 }] }); }
}

describe('org.ebpfmon1.LoadBalancer', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let bus: PrivateBus;
  let service: DbusService;
  let lb: FakeLb;
  let log: ReturnType<typeof memoryLogger>;
  let alice: TestUser;
  let dave: TestUser;
  let root: Agent;
  let a: Agent;
  let d: Agent;
  let decision: boolean | Error = false;
  const asked: Array<{ sender: string; action: string; interactive: boolean }> = [];

  before(async () => {
    requireTool('dbus-daemon', 'setpriv');
    lab = await Lab.create();
    const group = await lab.group('emg');
    const adminGroup = await lab.group('ema');
    alice = await lab.user('alice');
    dave = await lab.user('dave', [adminGroup]);
    bus = await startPrivateBus({ policies: [POLICY], lab });
    lb = new FakeLb();
    log = memoryLogger();
    service = await startTestDbusService({
      monitor: new BusFakeMonitor(), lb: lb as unknown as LbApi, logger: log.logger, version: '9.9.9', groups: { group, adminGroup }, address: bus.address,
      authorize: async (sender, action, o) => {
        asked.push({ sender, action, interactive: o?.interactive ?? false });
        if (decision instanceof Error) throw decision;
        return decision;
      },
    });
    [root, a, d] = await Promise.all([Agent.start(lab, bus.address, null), Agent.start(lab, bus.address, alice), Agent.start(lab, bus.address, dave)]);
  });

  after(async () => {
    await service?.stop();
    await lab?.destroy();
  });

  const addVip: Wire = { vip: v('s', '198.19.10.10:80/tcp'), mode: v('s', 'nat'), health: v('a{sv}', { type: v('s', 'tcp'), port: v('u', 80) }) };

  test('anyone reads: VIPs, stats and drop rules as typed dictionaries', async () => {
    assert.equal(plain(ok(await a.call(getAll(LB_IFACE, LB_PATH))))[0].Available, true);
    const vips = ok(await a.call(lbCall('ListVips')))[0] as Wire[];
    assert.equal(vips.length, 1);
    const sigs = signatures(vips[0]);
    assert.deepEqual([sigs.vip, sigs.port, sigs.family, sigs.interfaces, sigs.backends, sigs.tableGeneration], ['s', 'u', 's', 'as', 'aa{sv}', 't']);
    assert.ok(!('health' in (vips[0] as object)), 'null fields are left out');
    const backend = (plain(vips) as Array<{ backends: Array<Record<string, unknown>> }>)[0]!.backends[0]!;
    assert.deepEqual([backend.backend, backend.weight, backend.tableShare], ['198.19.0.2:80', 2, 1]);
    assert.equal(signatures(((vips[0] as Record<string, { value: Wire[] }>).backends!.value)[0]).tableShare, 'd', 'a share is a double even when it is 1');
    const stats = plain(ok(await a.call(lbCall('GetStats'))))[0];
    assert.equal(stats.counters.packets, 10);
    assert.equal(stats.tables.conns.capacity, 65536);
    assert.deepEqual(plain(ok(await a.call(lbCall('ListDropRules'))))[0], [{ rule: 'udp:53', id: 1, packets: 5, bytes: 300 }]);
    assert.equal(errorOf(await a.call(lbCall('ListVips', 's', ['x']))), INVALID);
    assert.equal(asked.length, 0, 'reads ask nobody');
  });

  test('root and the admin group change without asking polkit', async () => {
    lb.calls.length = 0;
    const added = plain(ok(await root.call(lbCall('AddVip', 'a{sv}', [addVip]))))[0];
    assert.equal(added.vip, '198.19.10.10:80/tcp');
    ok(await d.call(lbCall('AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '198.19.0.3'), weight: v('u', 5) }])));
    ok(await d.call(lbCall('DrainBackend', 'ss', [VIP.vip, '198.19.0.3'])));
    ok(await d.call(lbCall('RemoveBackend', 'ss', [VIP.vip, '198.19.0.3'])));
    ok(await root.call(lbCall('AddDropRule', 's', ['udp:53'])));
    ok(await root.call(lbCall('RemoveDropRule', 's', ['udp:53'])));
    ok(await d.call(lbCall('RemoveVip', 's', [VIP.vip])));
    assert.deepEqual(lb.calls, [
      ['addVip', { vip: '198.19.10.10:80/tcp', mode: 'nat', health: { type: 'tcp', port: 80 } }],
      ['addBackend', { vip: VIP.vip, backend: '198.19.0.3', weight: 5 }],
      ['drainBackend', { vip: VIP.vip, backend: '198.19.0.3' }],
      ['removeBackend', { vip: VIP.vip, backend: '198.19.0.3' }],
      ['addDropRule', { rule: 'udp:53' }],
      ['removeDropRule', { rule: 'udp:53' }],
      ['removeVip', { vip: VIP.vip }],
    ]);
    assert.equal(asked.length, 0);
  });

  test('anyone else needs polkit: a no, a failure or an error denies; a yes allows', async () => {
    lb.calls.length = 0;
    const changes: Array<[string, string, Wire[]]> = [
      ['AddVip', 'a{sv}', [addVip]], ['RemoveVip', 's', [VIP.vip]], ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '198.19.0.3') }]],
      ['RemoveBackend', 'ss', [VIP.vip, '198.19.0.3']], ['DrainBackend', 'ss', [VIP.vip, '198.19.0.3']], ['AddDropRule', 's', ['tcp']], ['RemoveDropRule', 's', ['tcp']],
    ];
    decision = false;
    for (const [m, sig, body] of changes) {
      const r = await a.call(lbCall(m, sig, body));
      assert.equal(errorOf(r), DENIED, m);
      assert.match((r as { text: string }).text, /not authorized for org\.ebpfmon1\.manage-lb/);
    }
    assert.deepEqual(asked.map((x) => [x.sender, x.action, x.interactive]), changes.map(() => [a.name, POLKIT_ACTION_MANAGE_LB, false]));
    decision = new Error('polkit exploded');
    assert.equal(errorOf(await a.call(lbCall('AddDropRule', 's', ['tcp']))), DENIED);
    assert.equal(lb.calls.length, 0, 'nothing denied reached the load balancer');
    decision = true;
    for (const [m, sig, body] of changes) ok(await a.call(lbCall(m, sig, body)), m);
    assert.equal(lb.calls.length, changes.length);
    asked.length = 0;
    ok(await a.call({ ...lbCall('AddDropRule', 's', ['tcp']), flags: FLAG_ALLOW_INTERACTIVE_AUTHORIZATION }));
    assert.equal(asked[0]!.interactive, true, 'the caller\'s ALLOW_INTERACTIVE_AUTHORIZATION reaches polkit');
    decision = false;
  });

  test('bad arguments: typed InvalidArgs, before polkit and the load balancer', async () => {
    lb.calls.length = 0;
    asked.length = 0;
    const cases: Array<[string, string, Wire[], RegExp]> = [
      ['AddVip', 'a{sv}', [{}], /^params\.vip: expected ADDR:PORT\/PROTO.*, got nothing/],
      ['AddVip', 'a{sv}', [{ vip: v('u', 1) }], /^params\.vip: expected a string variant/],
      ['AddVip', 'a{sv}', [{ vip: v('s', VIP.vip), nope: v('s', 'x') }], /^params\.nope: expected one of the known keys \(vip, mode, interface, health\)/],
      ['AddVip', 'a{sv}', [{ vip: v('s', '') }], /^params\.vip: expected ADDR:PORT\/PROTO/],
      // issue 18 item 12: a value no parser accepts is refused before polkit is asked
      ['AddVip', 'a{sv}', [{ vip: v('s', 'garbage') }], /^params\.vip: expected ADDR:PORT\/PROTO/],
      ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', 'garbage') }], /^params\.backend: expected /],
      ['AddVip', 'a{sv}', [{ vip: v('s', 'x'.repeat(100_000)) }], /^params\.vip/],
      ['AddVip', 'a{sv}', [{ vip: v('s', VIP.vip), health: v('a{sv}', { kind: v('s', 'tcp') }) }], /^params\.health\.kind/],
      ['AddVip', 'a{sv}', [{ vip: v('s', VIP.vip), health: v('s', 'tcp') }], /^params\.health: expected a dictionary variant/],
      ['AddVip', 's', [VIP.vip], /AddVip\(a\{sv\} params\) takes arguments of type \(a\{sv\}\), got \(s\)/],
      ['RemoveVip', 's', [''], /^vip: expected ADDR:PORT\/PROTO/],
      ['RemoveVip', 'u', [1], /got \(u\)/],
      ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip) }], /^params\.backend: expected .*, got nothing/],
      ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '1.2.3.4'), weight: v('s', '5') }], /^params\.weight: expected an integer variant/],
      ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '1.2.3.4'), weight: v('i', -5) }], /^params\.weight: expected an integer/],
      ['AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '1.2.3.4'), weight: v('x', t(-(2n ** 40n))) }], /^params\.weight/],
      ['RemoveBackend', 's', [VIP.vip], /takes arguments of type \(ss\)/],
      ['DrainBackend', 'ss', [VIP.vip, ''], /^backend: expected /],
      ['AddDropRule', 's', ['x'.repeat(300)], /^rule: expected /],
      ['RemoveDropRule', '', [], /got \(\)/],
    ];
    for (const [m, sig, body, re] of cases) {
      for (const agent of [a, root]) {
        const r = await agent.call(lbCall(m, sig, body));
        assert.equal(errorOf(r), INVALID, `${m} ${sig}`);
        assert.match((r as { text: string }).text, re, `${m} ${sig}`);
      }
    }
    assert.equal(lb.calls.length, 0, 'nothing reached the load balancer');
    assert.equal(asked.length, 0, 'nobody was asked for a password for a call that cannot succeed');
  });

  test('the load balancer\'s own errors arrive under their table names; the service is unharmed', async () => {
    lb.fail = new AppError('UnknownVip', 'no VIP 198.19.9.9:80/tcp');
    let r = await root.call(lbCall('RemoveVip', 's', ['198.19.9.9:80/tcp']));
    assert.equal(errorOf(r), ERRORS.UnknownVip.dbus);
    assert.equal((r as { text: string }).text, 'no VIP 198.19.9.9:80/tcp');
    lb.fail = new AppError('InvalidParams', 'params.vip: expected ADDR:PORT/PROTO, got "x"', { field: 'params.vip' });
    assert.equal(errorOf(await root.call(lbCall('AddVip', 'a{sv}', [{ vip: v('s', 'x') }]))), INVALID);
    lb.fail = new AppError('BackendExists');
    assert.equal(errorOf(await d.call(lbCall('AddBackend', 'a{sv}', [{ vip: v('s', VIP.vip), backend: v('s', '198.19.0.2') }]))), ERRORS.BackendExists.dbus);
    lb.fail = new Error('a bug in the load balancer');
    r = await root.call(lbCall('ListVips'));
    assert.equal(errorOf(r), ERRORS.Internal.dbus);
    assert.equal((r as { text: string }).text, ERRORS.Internal.message, 'no internals leak to the caller');
    assert.ok(log.records.some((x) => x.level >= 50 && JSON.stringify(x).includes('a bug in the load balancer')), 'but they are logged');
    lb.fail = null;
    assert.equal(plain(ok(await a.call(lbCall('ListVips'))))[0].length, 1);
  });

  describe('without injected authorization', () => {
    let bus2: PrivateBus;
    let service2: DbusService | null = null;
    let lb2: FakeLb;
    let log2: ReturnType<typeof memoryLogger>;
    let r2: Agent;
    let a2: Agent;
    let probe: MessageBus | null = null;

    before(async () => {
      assert.ok(fs.existsSync(POLKITD), `${POLKITD} is installed (polkitd package)`);
      bus2 = await startPrivateBus({ policies: [POLICY, POLKIT_BUS_POLICY], lab });
      lb2 = new FakeLb();
      log2 = memoryLogger();
      service2 = await startTestDbusService({
        monitor: new BusFakeMonitor(), lb: lb2 as unknown as LbApi, logger: log2.logger, version: '9.9.9', groups: { group: 'nogroup-x', adminGroup: 'nogroup-y' }, address: bus2.address,
      });
      [r2, a2] = await Promise.all([Agent.start(lab, bus2.address, null), Agent.start(lab, bus2.address, alice)]);
    });
    after(async () => {
      probe?.disconnect();
      await service2?.stop();
    });

    test('no polkit on the bus: a change is denied, not allowed', async () => {
      const r = await a2.call(lbCall('AddDropRule', 's', ['tcp']));
      assert.equal(errorOf(r), DENIED);
      assert.equal(lb2.calls.length, 0);
      assert.ok(log2.records.some((x) => x.msg === 'polkit check failed: denying' && JSON.stringify(x).includes('PolicyKit1')), 'the reason is logged');
      ok(await r2.call(lbCall('AddDropRule', 's', ['tcp'])), 'root needs no polkit');
    });

    test('a real polkitd: CheckAuthorization for a bus name, and the daemon denies what polkit does not grant', async () => {
      await startPolkitd(bus2, lab, r2);
      probe = await connectBus(bus2.address);
      // polkit's own rule: root is authorized for anything, a user without a session is not.
      assert.equal(await polkitCheck(probe, r2.name, 'org.freedesktop.policykit.exec'), true);
      assert.equal(await polkitCheck(probe, a2.name, 'org.freedesktop.policykit.exec'), false);
      // Our action is not installed on this machine (packaging installs it): polkit answers an error.
      await assert.rejects(polkitCheck(probe, a2.name, POLKIT_ACTION_MANAGE_LB), /not registered/);
      lb2.calls.length = 0;
      assert.equal(errorOf(await a2.call(lbCall('RemoveDropRule', 's', ['tcp']))), DENIED);
      assert.equal(lb2.calls.length, 0);
      assert.ok(log2.records.some((x) => x.msg === 'polkit check failed: denying' && JSON.stringify(x).includes('not registered')));
    });

    test('the bus going away stops the service and says so', async () => {
      const lost: Error[] = [];
      const spare = await startPrivateBus({ policies: [POLICY], lab });
      const s3 = await startTestDbusService({
        monitor: new BusFakeMonitor(), logger: log2.logger, version: '9.9.9', groups: { group: 'x', adminGroup: 'y' }, address: spare.address, onDisconnect: (e) => lost.push(e),
      });
      await spare.stop();
      const t0 = Date.now();
      while (lost.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 25));
      assert.equal(lost.length, 1, 'onDisconnect was called');
      await s3.stop();
    });

    test('without a load balancer: Available is false and every method is NotAvailable', async () => {
      await service2!.stop();
      service2 = await startTestDbusService({ monitor: new BusFakeMonitor(), logger: log2.logger, version: '9.9.9', groups: { group: 'x', adminGroup: 'y' }, address: bus2.address });
      assert.equal(plain(ok(await a2.call(getAll(LB_IFACE, LB_PATH))))[0].Available, false);
      for (const [m, sig, body] of [['ListVips', '', []], ['GetStats', '', []], ['ListDropRules', '', []], ['AddDropRule', 's', ['tcp']], ['RemoveVip', 's', ['']]] as Array<[string, string, Wire[]]>) {
        assert.equal(errorOf(await a2.call(lbCall(m, sig, body))), ERRORS.NotAvailable.dbus, m);
        assert.equal(errorOf(await r2.call(lbCall(m, sig, body))), ERRORS.NotAvailable.dbus, m);
      }
    });
  });
});
