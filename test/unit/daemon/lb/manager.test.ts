// SPDX-License-Identifier: Apache-2.0
// LbManager against in-memory maps (no kernel): the configuration lives in the maps (a new
// manager over the same maps sees the same thing), bad input is refused with a named
// field, and a kernel failure at ANY write of a change leaves the configuration exactly
// as it was (fault injection at write 1, 2, 3, ... until the change succeeds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { type AppError } from '../../../../daemon/src/errors.js';
import { LbManager, type LbManagerOptions } from '../../../../daemon/src/lb/manager.js';
import { LB_MAP } from '../../../../daemon/src/lb/components.js';
import { u32Key } from '../../../../daemon/src/lb/codec/fields.js';
import { encodeConn, encodeFlowKey } from '../../../../daemon/src/lb/codec/flows.js';
import { decodeConfig } from '../../../../daemon/src/lb/codec/settings.js';
import { BE, CFG, RING_SIZE } from '../../../../daemon/src/lb/wire.js';
import { maglevTable } from '../../../../daemon/src/lb/maglev.js';
import { LB_EVENTS } from '../../../../daemon/src/lb/events.js';
import { HealthChecker, type HealthTarget } from '../../../../daemon/src/lb/health.js';
import { parseIp } from '../../../../daemon/src/net/ip.js';
import { FakeDeployment, FakeHost } from '../../../helpers/lb/fakes.js';
import { toApiError } from '../../../../daemon/src/api/errors.js';

const log = pino({ level: 'silent' });
const VIP = '198.19.10.10:80/tcp';

function make(d = new FakeDeployment(), opts: LbManagerOptions = {}, host = new FakeHost()): { lb: LbManager; d: FakeDeployment; host: FakeHost } {
  const lb = new LbManager(d, log, { interfaces: ['front'], gcIntervalMs: 0, healthChecks: false, host, ...opts });
  return { lb, d, host };
}

function snapshot(lb: LbManager, d: FakeDeployment): string {
  const list = lb.list();
  const tables = Object.fromEntries(list.vips.map((v) => [v.vip, crypto.createHash('sha256').update(lb.table(v.vip).table).digest('hex')]));
  return JSON.stringify(list) + d.configDigest(tables);
}

/** Rejects with the API error `kind`, as a client would receive it (api/errors.ts toApiError). */
async function rejectsWith(p: Promise<unknown>, kind: string, field?: string): Promise<AppError> {
  try {
    await p;
  } catch (raw) {
    const err = toApiError(raw).error;
    assert.equal(err.kind, kind, err.message);
    if (field) assert.equal(err.data?.field, field, err.message);
    return err;
  }
  assert.fail(`expected ${kind}`);
}

async function populated() {
  const m = make();
  await m.lb.addVip({ vip: VIP });
  await m.lb.addBackend({ vip: VIP, backend: '198.18.2.2:8080', weight: 1 });
  await m.lb.addBackend({ vip: VIP, backend: '198.18.3.2:8080', weight: 3 });
  await m.lb.addDropRule({ rule: 'icmp:echo-request' });
  return m;
}

test('VIPs and backends land in the maps: live table = Maglev over the active backends', async () => {
  const { lb, d } = await populated();
  const list = lb.list();
  assert.equal(list.vips.length, 1);
  const v = list.vips[0]!;
  assert.deepEqual([v.vip, v.mode, v.interfaces, v.tableGeneration], [VIP, 'nat', ['front'], 2]);
  assert.deepEqual(v.backends.map((b) => [b.backend, b.weight, b.state, b.via]), [['198.18.2.2:8080', 1, 'active', 'back1'], ['198.18.3.2:8080', 3, 'active', 'back2']]);
  assert.ok(Math.abs(v.backends[0]!.tableShare - 0.25) < 0.01 && Math.abs(v.backends[1]!.tableShare - 0.75) < 0.01);
  const want = maglevTable(v.backends.map((b) => ({ id: b.id, key: b.backend, weight: b.weight })));
  assert.deepEqual(lb.table(VIP).table, want);
  // XDP on the VIP's interface and on the way to both nat backends (their replies arrive there).
  assert.deepEqual([...d.xdp.values()].map((r) => r.ifname).sort(), ['back1', 'back2', 'front']);
  // The balancer's own addresses, the nat-mode sources.
  assert.ok(d.map(LB_MAP.ifaddr).lookup(Buffer.from('0300000002000000', 'hex')));
});

test('a new manager over the same maps restores the same configuration', async () => {
  const { lb, d } = await populated();
  await lb.drainBackend({ vip: VIP, backend: '198.18.2.2:8080' });
  const before = snapshot(lb, d);
  const again = make(d).lb;
  assert.equal(snapshot(again, d), before);
  assert.deepEqual(again.listDropRules().rules.map((r) => r.rule), ['icmp:echo-request']);
});

test('drain takes a backend out of the table; removal also frees its slot', async () => {
  const { lb, d } = await populated();
  const info = await lb.drainBackend({ vip: VIP, backend: '198.18.3.2:8080' });
  assert.equal(info.state, 'draining');
  assert.equal(info.tableShare, 0);
  const ids = new Set(lb.table(VIP).table);
  assert.deepEqual([...ids], [lb.list().vips[0]!.backends[0]!.id]);
  const slot = d.map(LB_MAP.backends).lookup(u32Key(info.id))!;
  assert.equal(slot[19]! & BE.draining, BE.draining, 'the data path sees the drain (new SYNs of old tuples)');
  await lb.removeBackend({ vip: VIP, backend: '198.18.3.2:8080' });
  assert.equal(d.map(LB_MAP.backends).lookup(u32Key(info.id))![19], 0);
  assert.deepEqual(lb.list().vips[0]!.backends.map((b) => b.backend), ['198.18.2.2:8080']);
  // back2 carried only that backend: XDP leaves it.
  assert.deepEqual([...d.xdp.values()].map((r) => r.ifname).sort(), ['back1', 'front']);
});

test('bad input: named errors, configuration unchanged', async () => {
  const { lb, d } = await populated();
  const before = snapshot(lb, d);
  const cases: Array<[Promise<unknown>, string, string?]> = [
    [lb.addVip({ vip: '198.19.10.10/tcp' }), 'InvalidParams', 'params.vip'],
    [lb.addVip({ vip: VIP }), 'VipExists', 'params.vip'],
    [lb.addVip({ vip: '198.19.10.11:80/tcp', mode: 'tunnel' as never }), 'InvalidParams', 'params.mode'],
    [lb.addVip({ vip: '198.19.10.11:80/tcp', interface: 'nosuch0' }), 'InvalidParams', 'params.interface'],
    [lb.addVip({ vip: '198.19.10.11:80/tcp', health: { type: 'icmp' as never } }), 'InvalidParams', 'params.health.type'],
    [lb.addVip(null as never), 'InvalidParams', 'params'],
    [lb.addBackend({ vip: '198.19.10.99:80/tcp', backend: '198.18.2.3' }), 'UnknownVip', 'params.vip'],
    [lb.addBackend({ vip: VIP, backend: '198.18.2.2:8080' }), 'BackendExists', 'params.backend'],
    [lb.addBackend({ vip: VIP, backend: '198.18.2.3', weight: 0 }), 'InvalidParams', 'params.weight'],
    [lb.addBackend({ vip: VIP, backend: '198.18.2.3', weight: 1001 }), 'InvalidParams', 'params.weight'],
    [lb.addBackend({ vip: VIP, backend: 'fd00:198::2:2' }), 'InvalidParams', 'params.backend'],
    [lb.addBackend({ vip: VIP, backend: '203.0.113.9' }), 'InvalidParams', 'params.backend'], // no route
    [lb.removeBackend({ vip: VIP, backend: '198.18.2.9:8080' }), 'UnknownBackend', 'params.backend'],
    [lb.drainBackend({ vip: '198.19.10.99:80/tcp', backend: '198.18.2.2:8080' }), 'UnknownVip', 'params.vip'],
    [lb.removeVip({ vip: '198.19.10.99:80/tcp' }), 'UnknownVip', 'params.vip'],
    [lb.addDropRule({ rule: 'icmp:echo-request' }), 'DropRuleExists', 'params.rule'],
    [lb.addDropRule({ rule: '198.18.1.1/24' }), 'InvalidParams', 'params.rule'],
    [lb.removeDropRule({ rule: 'udp:53' }), 'UnknownDropRule', 'params.rule'],
    [lb.setBackendWeight({ vip: VIP, backend: '198.18.2.2:8080', weight: -3 }), 'InvalidParams', 'params.weight'],
  ];
  for (const [p, kind, field] of cases) await rejectsWith(p, kind, field);
  assert.equal(snapshot(lb, d), before);
});

test('dsr backends must be on a directly connected network', async () => {
  const host = new FakeHost([
    ...new FakeHost().ifaces,
    { ifindex: 9, name: 'wan', addrs: [{ family: 'ipv4', address: '203.0.113.1', prefix: 24 }] },
  ]);
  const { lb } = make(new FakeDeployment(), {}, host);
  await lb.addVip({ vip: VIP, mode: 'dsr' });
  await lb.addBackend({ vip: VIP, backend: '198.18.2.2' });
  // Routed through `wan` but the fake's subnet check makes 203.0.114.x unreachable: no route.
  await rejectsWith(lb.addBackend({ vip: VIP, backend: '203.0.114.2' }), 'InvalidParams', 'params.backend');
});

test('limits: backends per VIP, backend table, VIP slots, drop list', async () => {
  const d = new FakeDeployment({ vips: 2, backends: 4, rules: 4 });
  const { lb } = make(d, { maxBackendsPerVip: 2 });
  await lb.addVip({ vip: VIP });
  await lb.addBackend({ vip: VIP, backend: '198.18.2.2' });
  await lb.addBackend({ vip: VIP, backend: '198.18.2.3' });
  const perVip = await rejectsWith(lb.addBackend({ vip: VIP, backend: '198.18.2.4' }), 'TooManyBackends', 'params.backend');
  assert.equal(perVip.data?.limit, 2);
  await lb.addVip({ vip: '198.19.10.11:80/tcp' });
  await lb.addBackend({ vip: '198.19.10.11:80/tcp', backend: '198.18.3.2' });
  const full = await rejectsWith(lb.addBackend({ vip: '198.19.10.11:80/tcp', backend: '198.18.3.3' }), 'TooManyBackends', 'params.backend');
  assert.equal(full.data?.limit, 3, 'ids 1..3 of a 4-entry table');
  await rejectsWith(lb.addVip({ vip: '198.19.10.12:80/tcp' }), 'TooManyVips', 'params.vip');
  await lb.addDropRule({ rule: 'tcp:1' });
  await lb.addDropRule({ rule: 'tcp:2' });
  await rejectsWith(lb.addDropRule({ rule: 'udp:3' }), 'InvalidParams', 'params.rule'); // 4 protocol entries taken (v4 + v6 each)
  await lb.addDropRule({ rule: '198.18.9.0/24' });
  await lb.addDropRule({ rule: '198.18.8.0/24' });
  await rejectsWith(lb.addDropRule({ rule: '198.18.7.0/24' }), 'InvalidParams', 'params.rule'); // 4 rule ids taken
  assert.equal(lb.listDropRules().rules.length, 4);
});

/** Fails write 1, 2, 3... of `op` until it succeeds; after each failure the state must be unchanged. */
async function atomicity(lb: LbManager, d: FakeDeployment, label: string, op: () => Promise<unknown>): Promise<number> {
  for (let n = 1; n <= 100; n++) {
    const before = snapshot(lb, d);
    d.faults.writes = 0;
    d.faults.failAt = n;
    try {
      await op();
      d.faults.failAt = 0;
      return n - 1;
    } catch (err) {
      d.faults.failAt = 0;
      assert.equal(toApiError(err).error.kind, 'Kernel', `${label}, write ${n}: ${err}`);
      assert.equal(snapshot(lb, d), before, `${label}: a failure at write ${n} left partial state`);
    }
  }
  assert.fail(`${label} never succeeded`);
}

test('a kernel failure at any write leaves the configuration unchanged', async (t) => {
  const { lb, d } = make();
  const counts: string[] = [];
  const run = async (label: string, op: () => Promise<unknown>) => counts.push(`${label}: ${await atomicity(lb, d, label, op)} writes`);
  await run('addVip', () => lb.addVip({ vip: VIP }));
  await run('addVip v6', () => lb.addVip({ vip: '[fd00:198::ff:10]:80/tcp', mode: 'dsr' }));
  await run('addBackend', () => lb.addBackend({ vip: VIP, backend: '198.18.2.2:8080' }));
  await run('addBackend 2', () => lb.addBackend({ vip: VIP, backend: '198.18.3.2:8080', weight: 5 }));
  await run('setBackendWeight', () => lb.setBackendWeight({ vip: VIP, backend: '198.18.3.2:8080', weight: 2 }));
  await run('drainBackend', () => lb.drainBackend({ vip: VIP, backend: '198.18.2.2:8080' }));
  await run('removeBackend', () => lb.removeBackend({ vip: VIP, backend: '198.18.2.2:8080' }));
  await run('addDropRule', () => lb.addDropRule({ rule: 'tcp:22' }));
  await run('addDropRule prefix', () => lb.addDropRule({ rule: '198.18.9.0/24' }));
  await run('removeDropRule', () => lb.removeDropRule({ rule: 'tcp:22' }));
  t.diagnostic(counts.join('; '));
  d.failAttach = true;
  const before = snapshot(lb, d);
  await rejectsWith(lb.addBackend({ vip: VIP, backend: '198.18.2.7' }), 'Kernel');
  assert.equal(snapshot(lb, d), before, 'a refused XDP attach undoes the backend slot');
});

test('removeVip commits first: either nothing changed or the VIP is fully gone after a restore', async () => {
  for (let n = 1; n <= 12; n++) {
    const { lb, d } = await populated();
    const before = snapshot(lb, d);
    d.faults.writes = 0;
    d.faults.failAt = n;
    let failed = false;
    try {
      await lb.removeVip({ vip: VIP });
    } catch {
      failed = true;
    }
    d.faults.failAt = 0;
    if (failed) {
      assert.equal(snapshot(lb, d), before, `write ${n}`);
      continue;
    }
    const restored = make(d).lb;
    assert.deepEqual(restored.list().vips, [], `write ${n}: VIP back after restore`);
    for (let id = 1; id < 16; id++) assert.equal(d.map(LB_MAP.backends).lookup(u32Key(id))![19], 0, `write ${n}: backend ${id} left`);
  }
});

test('drop rules: maps, config flags, restore merges families', async () => {
  const { lb, d } = make();
  await lb.addDropRule({ rule: 'tcp:22' });
  await lb.addDropRule({ rule: 'fd00:198::5:0/112' });
  const cfg = decodeConfig(d.map(LB_MAP.cfg).lookup(u32Key(0))!);
  assert.equal(cfg.flags, CFG.dpTcp | CFG.drop6);
  assert.deepEqual(make(d).lb.listDropRules().rules.map((r) => r.rule), ['tcp:22', 'fd00:198::5:0/112']);
  await lb.removeDropRule({ rule: 'tcp:22' });
  await lb.removeDropRule({ rule: 'FD00:198::5:0/112' });
  assert.equal(decodeConfig(d.map(LB_MAP.cfg).lookup(u32Key(0))!).flags, 0);
});

test('configuration file: added once, live changes survive re-application, changes applied', async () => {
  const { lb, d } = make();
  const decl = [{ vip: VIP, backends: [{ backend: '198.18.2.2:8080' }, { backend: '198.18.3.2:8080', weight: 2 }] }];
  assert.deepEqual((await lb.applyConfig(decl)).vips, [{ vip: VIP, action: 'added' }]);
  assert.equal(lb.list().vips[0]!.source, 'config');
  await lb.removeBackend({ vip: VIP, backend: '198.18.2.2:8080' });
  // A daemon restart re-reads the same file: the live removal stays.
  const again = make(d).lb;
  assert.deepEqual((await again.applyConfig(decl)).vips, [{ vip: VIP, action: 'unchanged' }]);
  assert.deepEqual(again.list().vips[0]!.backends.map((b) => b.backend), ['198.18.3.2:8080']);
  // The file changes: its backends and weights are applied.
  const decl2 = [{ vip: VIP, backends: [{ backend: '198.18.2.2:8080' }, { backend: '198.18.3.2:8080', weight: 4 }] }];
  assert.deepEqual((await again.applyConfig(decl2)).vips, [{ vip: VIP, action: 'updated' }]);
  assert.deepEqual(again.list().vips[0]!.backends.map((b) => [b.backend, b.weight]), [['198.18.3.2:8080', 4], ['198.18.2.2:8080', 1]]);
  const modeChange = await again.applyConfig([{ ...decl2[0]!, mode: 'dsr' }]);
  assert.equal(modeChange.vips[0]!.action, 'conflict');
  assert.equal(again.list().vips[0]!.mode, 'nat');
  // Invalid declarations change nothing, and name the entry.
  const before = snapshot(again, d);
  await rejectsWith(again.applyConfig([{ vip: '198.19.10.12:80/tcp' }, { vip: VIP, backends: [{ backend: '198.18.2.2', weight: 0 }] }]), 'InvalidParams', 'lb.vips[1].backends[0].weight');
  await rejectsWith(again.applyConfig([{ vip: VIP }, { vip: VIP }]), 'InvalidParams', 'lb.vips[1].vip');
  assert.equal(snapshot(again, d), before);
});

test('events announce changes', async () => {
  const { lb } = make();
  const seen: string[] = [];
  for (const n of Object.values(LB_EVENTS)) lb.events.on(n, () => seen.push(n));
  await lb.addVip({ vip: VIP });
  await lb.addBackend({ vip: VIP, backend: '198.18.2.2' });
  await lb.drainBackend({ vip: VIP, backend: '198.18.2.2' });
  await lb.removeBackend({ vip: VIP, backend: '198.18.2.2' });
  await lb.addDropRule({ rule: 'udp:53' });
  await lb.removeDropRule({ rule: 'udp:53' });
  await lb.removeVip({ vip: VIP });
  assert.deepEqual(seen, ['lb.vip.added', 'lb.backend.added', 'lb.backend.drained', 'lb.backend.removed', 'lb.drop.added', 'lb.drop.removed', 'lb.vip.removed']);
});

test('flows: each conn entry with its backend, NAT side and how it was chosen; GC of idle entries', async () => {
  const { lb, d, host } = await populated();
  const b = lb.list().vips[0]!.backends[1]!;
  const key = encodeFlowKey({ saddr: parseIp('198.18.1.1')!, daddr: parseIp('198.19.10.10')!, sport: 40000, dport: 80, proto: 6 });
  d.map(LB_MAP.conns).put(key, encodeConn({ backend: b.id, gen: 2, createdNs: host.now - 5_000_000_000n, lastNs: host.now - 1_000_000_000n, natPort: 61234, how: 1, flags: 0, vip: 0 }));
  const nkey = encodeFlowKey({ saddr: parseIp('198.18.3.2')!, daddr: parseIp('198.18.3.1')!, sport: 8080, dport: 61234, proto: 6 });
  const nat = Buffer.alloc(64);
  parseIp('198.18.1.1')!.bytes.copy(nat, 0, 0, 4);
  parseIp('198.19.10.10')!.bytes.copy(nat, 16, 0, 4);
  nat.writeUInt16BE(40000, 32);
  nat.writeUInt16BE(80, 34);
  nat.writeUInt32LE(b.id, 36);
  nat.writeUInt32LE(1, 44); // the backend replied
  nat.writeBigUInt64LE(host.now, 48);
  d.map(LB_MAP.nat).put(nkey, nat);
  // A half-open flow's NAT entry (a flood's SYN, never answered).
  const ekey = encodeFlowKey({ saddr: parseIp('198.18.3.2')!, daddr: parseIp('198.18.3.1')!, sport: 8080, dport: 61235, proto: 6 });
  const emb = Buffer.from(nat);
  emb.writeUInt16BE(40001, 32);
  emb.writeUInt32LE(0, 44);
  d.map(LB_MAP.nat).put(ekey, emb);
  const f = lb.flows({ vip: VIP });
  assert.equal(f.flows.length, 1);
  assert.deepEqual(f.flows[0], {
    protocol: 'tcp', client: '198.18.1.1:40000', vip: VIP, backend: '198.18.3.2:8080', backendId: b.id, mode: 'nat', how: 'maglev',
    tableGeneration: 2, ageMs: 5000, idleMs: 1000, longLived: false, nat: { balancer: '198.18.3.1:61234' },
    onBackend: { local: '198.18.3.2:8080', remote: '198.18.3.1:61234' },
  });
  // 11 s later the unanswered entry goes (its port is free again); 20 minutes later, with no traffic, the other.
  host.now += 11_000_000_000n;
  assert.deepEqual(await lb.gc(), { longDeleted: 0, natDeleted: 1 });
  assert.ok(d.map(LB_MAP.nat).lookup(nkey));
  host.now += 1_200_000_000_000n;
  assert.deepEqual(await lb.gc(), { longDeleted: 0, natDeleted: 1 });
});

test('health: a failing backend leaves the table, an event says why, it comes back', async () => {
  const { lb } = make();
  await lb.addVip({ vip: VIP });
  await lb.addBackend({ vip: VIP, backend: '198.18.2.2' });
  await lb.addBackend({ vip: VIP, backend: '198.18.3.2' });
  await lb.setBackendHealth(VIP, '198.18.3.2:80', false);
  const b = lb.list().vips[0]!.backends.find((x) => x.backend === '198.18.3.2:80')!;
  assert.equal(b.state, 'down');
  assert.equal(b.tableShare, 0);
  assert.equal(new Set(lb.table(VIP).table).has(b.id), false);
  await lb.setBackendHealth(VIP, '198.18.3.2:80', true);
  assert.equal(lb.list().vips[0]!.backends.find((x) => x.backend === '198.18.3.2:80')!.state, 'active');
  assert.equal(lb.table(VIP).table.length, RING_SIZE);
});

test('health checker: fall failures -> down event with the reason, rise successes -> up (loopback server)', async () => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const events = new EventEmitter();
  const applied: boolean[] = [];
  const seen: Array<{ name: string; reason: string }> = [];
  events.on(LB_EVENTS.backendDown, (e) => seen.push({ name: 'down', reason: e.reason }));
  events.on(LB_EVENTS.backendUp, (e) => seen.push({ name: 'up', reason: e.reason }));
  const hc = new HealthChecker(events, log, async (_t, up) => void applied.push(up));
  const target: HealthTarget = {
    vip: VIP, backend: `127.0.0.1:${port}`, addr: parseIp('127.0.0.1')!, port, down: false,
    spec: { type: 'tcp', port: 0, path: '/', intervalMs: 100, timeoutMs: 100, rise: 2, fall: 2 },
  };
  const waitFor = async (n: number) => {
    for (let i = 0; i < 100 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 50));
  };
  try {
    hc.sync([target]);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(seen.length, 0, 'a healthy backend raises nothing');
    await new Promise<void>((r) => server.close(() => r()));
    await waitFor(1);
    assert.deepEqual(seen[0], { name: 'down', reason: 'connect ECONNREFUSED' });
    assert.equal(hc.status(VIP, target.backend)?.state, 'down');
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    await waitFor(2);
    assert.deepEqual(seen[1], { name: 'up', reason: 'ok' });
    assert.deepEqual(applied, [false, true]);
  } finally {
    hc.stop();
    server.close();
  }
});
