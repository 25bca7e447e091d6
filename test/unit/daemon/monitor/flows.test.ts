// SPDX-License-Identifier: Apache-2.0
// The flow table's owner index and its collector (issue 17), as property tests over seeded
// random histories of a flow table: flows appear, carry traffic, close, change owner
// (handoff, accept), are reopened by another process, are evicted by the LRU; processes
// exit and their pids are reused; time passes. Each history drives the kernel's side the
// way the programs do (every change the programs count moves the membership counter,
// deletions and the kernel relabelling an unowned flow do not).
// - flows.list by pid through the index must return exactly what a full scan of the same
//   table returns (the scan: a FlowTable without membership counters, which always walks);
// - the collector that reads only due flows must remove exactly the flows, and retire
//   exactly the totals, that the full-walk collector removes from an identical table;
// - and while no counter moved, neither reads the whole table (else they are not indexed);
// - both hold with flows read by key in batches (what bpf/flowread.bpf.c does, here over the
//   fake table), and when the batch reader fails half-way and the table falls back to lookups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BpfMap } from '../../../../daemon/src/bpf/maps.js';
import { FlowTable, type Flow } from '../../../../daemon/src/monitor/flows.js';
import type { FlowBatchReader } from '../../../../daemon/src/monitor/flowread.js';
import { keyBytes, keyString } from '../../../../daemon/src/monitor/ownerindex.js';
import { FLOW, FLOW_KEY, HOW_KERNEL, OWNER } from '../../../../daemon/src/monitor/wire.js';
import { rng } from '../../../helpers/rand.js';
import { FakeFlowMap } from '../../../helpers/fake-flow-map.js';
import { L7Store } from '../../../../daemon/src/l7/store.js';
import { ResolverCache } from '../../../../daemon/src/l7/dns/cache.js';
import { CLOCK_BOOTTIME, clockNs } from '../../../../daemon/src/sys/libc.js';

const F = FLOW.fields;
const O = OWNER.fields;
const OW = F.owner.offset;
const SEC = 1_000_000_000n;
const OPTS = { closedRetentionMs: 60_000, idleTimeoutMs: 300_000, tcpIdleTimeoutMs: 600_000 };

/** A history's world: the tables' shared clock and membership counter, and the processes. */
class World {
  nowNs = 1_000_000n * SEC;
  gen = 0;
  nextPort = 1;
  /** Live pids; exited ones go back to `free` and are reused (pid reuse). */
  readonly live: number[] = [100, 101, 102];
  readonly free: number[] = [103, 104, 105, 106];
  constructor(readonly r: () => number) {}

  pick<T>(a: readonly T[]): T {
    return a[Math.floor(this.r() * a.length)]!;
  }

  key(): Buffer {
    const k = Buffer.alloc(FLOW_KEY.size);
    const v6 = this.r() < 0.3;
    const port = this.nextPort++;
    k[FLOW_KEY.fields.family.offset] = v6 ? 10 : 2;
    k[FLOW_KEY.fields.proto.offset] = this.r() < 0.6 ? 6 : 17;
    k.writeUInt16LE(port & 0xffff, FLOW_KEY.fields.lport.offset);
    k.writeUInt16LE(443, FLOW_KEY.fields.rport.offset);
    k.writeUInt32BE(0x0a000000 + (port >>> 16), FLOW_KEY.fields.laddr.offset);
    k.writeUInt32BE(0xc6120002, FLOW_KEY.fields.raddr.offset);
    if (v6) k.writeUInt32BE(0xfd000198, FLOW_KEY.fields.raddr.offset + 12);
    return k;
  }

  owner(v: Buffer, pid: number | null): void {
    v.fill(0, OW, OW + OWNER.size);
    if (pid === null) return; // unowned
    v.writeUInt32LE(pid, OW + O.tgid.offset);
    v.writeUInt32LE(pid, OW + O.pid.offset);
    v.writeUInt32LE(1000 + (pid % 3), OW + O.uid.offset);
    v.writeBigUInt64LE(BigInt(7 + (pid % 2)), OW + O.cgroup_id.offset);
    v.write(`p${pid}`, OW + O.comm.offset, 15, 'latin1');
    v[OW + O.how.offset] = 2; // connect
  }

  value(proto: number, pid: number | null): Buffer {
    const v = Buffer.alloc(FLOW.size);
    v.writeBigUInt64LE(this.nowNs - SEC * BigInt(Math.floor(this.r() * 30)), F.first_ns.offset);
    v.writeBigUInt64LE(this.nowNs, F.last_ns.offset);
    v.writeBigUInt64LE(BigInt(Math.floor(this.r() * 5000)), F.tx_bytes.offset);
    v.writeBigUInt64LE(1n, F.tx_packets.offset);
    v.writeUInt32LE(1, F.ifindex.offset);
    v[F.direction.offset] = 1;
    if (proto === 6) v[F.sock_state.offset] = this.r() < 0.7 ? 1 : 0;
    this.owner(v, pid);
    return v;
  }

  /** One random step of the kernel and the processes on `maps` (identical tables). */
  step(maps: FakeFlowMap[], quiet = false): string {
    const m = maps[0]!;
    const keys = [...m.entries.keys()];
    const all = (fn: (v: Buffer) => void, k: string) => maps.forEach((x) => fn(x.entries.get(k)!));
    // quiet: only what the kernel does not count (traffic, evictions, relabels, processes, time)
    const x = quiet ? [0.3, 0.4, 0.7, 0.73, 0.8, 0.85, 0.9, 0.95][Math.floor(this.r() * 8)]! : this.r();
    if (x < 0.25 || keys.length === 0) {
      const k = this.key();
      const pid = this.r() < 0.15 ? null : this.pick(this.live);
      const v = this.value(k[FLOW_KEY.fields.proto.offset]!, pid);
      maps.forEach((mm) => mm.entries.set(k.toString('hex'), Buffer.from(v)));
      this.gen++; // flowsCreated
      return 'create';
    }
    const k = this.pick(keys);
    if (x < 0.45) {
      // traffic: counters and last_ns move (uncounted)
      const add = BigInt(1 + Math.floor(this.r() * 1000));
      all((v) => {
        v.writeBigUInt64LE(v.readBigUInt64LE(F.rx_bytes.offset) + add, F.rx_bytes.offset);
        v.writeBigUInt64LE(v.readBigUInt64LE(F.rx_packets.offset) + 1n, F.rx_packets.offset);
        v.writeBigUInt64LE(this.nowNs, F.last_ns.offset);
      }, k);
      return 'traffic';
    }
    if (x < 0.55) {
      const v0 = m.entries.get(k)!;
      if (Buffer.from(k, 'hex')[FLOW_KEY.fields.proto.offset] !== 6 || v0.readBigUInt64LE(F.closed_ns.offset)) return 'noop';
      all((v) => {
        v.writeBigUInt64LE(this.nowNs, F.closed_ns.offset);
        v[F.sock_state.offset] = 7;
      }, k);
      this.gen++; // closeEvents
      return 'close';
    }
    if (x < 0.63) {
      // a socket changes hands (fork + use, SCM_RIGHTS) or accept patches the owner
      const to = this.pick(this.live);
      all((v) => this.owner(v, to), k);
      this.gen++; // flowsPatched / handoff flowsPatched
      return 'patch';
    }
    if (x < 0.68) {
      // reopened by a new connection, maybe another process's
      const proto = Buffer.from(k, 'hex')[FLOW_KEY.fields.proto.offset]!;
      const v = this.value(proto, this.pick(this.live));
      maps.forEach((mm) => mm.entries.set(k, Buffer.from(v)));
      this.gen++; // flowsReopened
      return 'reopen';
    }
    if (x < 0.72) {
      maps.forEach((mm) => mm.entries.delete(k)); // LRU eviction: uncounted
      return 'evict';
    }
    if (x < 0.75) {
      const v0 = m.entries.get(k)!;
      if (v0[OW + O.how.offset] !== 0) return 'noop';
      all((v) => (v[OW + O.how.offset] = HOW_KERNEL), k); // the kernel's own traffic: uncounted
      return 'kernel';
    }
    if (x < 0.82) {
      // a process exits (its flows keep its pid) and a new one may get a reused pid
      if (this.live.length > 1) this.free.push(this.live.splice(Math.floor(this.r() * this.live.length), 1)[0]!);
      if (this.free.length) this.live.push(this.free.splice(Math.floor(this.r() * this.free.length), 1)[0]!);
      return 'exit+reuse';
    }
    if (x < 0.86) {
      // fork: the child is a new pid; its sockets stay the connector's until used (patch)
      if (this.free.length) this.live.push(this.free.splice(0, 1)[0]!);
      return 'fork';
    }
    // mostly short steps (a collection every few seconds), now and then past a timeout
    this.nowNs += this.r() < 0.8 ? BigInt(Math.floor(this.r() * 20e9)) : SEC * BigInt(Math.floor(this.r() * 400));
    return 'time';
  }
}

const byKey = (a: Flow, b: Flow) => (`${a.protocol}${a.localAddr}${a.localPort}${a.remoteAddr}` < `${b.protocol}${b.localAddr}${b.localPort}${b.remoteAddr}` ? -1 : 1);
const sorted = (fs: Flow[]) => [...fs].sort(byKey);

/** How the table reads flows by key: one lookup each, in batches (FakeFlowMap.batchReader,
 * what bpf/flowread.bpf.c does), or in batches until the third run fails (then lookups). */
type Reads = 'lookups' | 'batches' | 'batches, failing at the third';

const table = (m: FakeFlowMap, w: World, indexed: boolean, reads: Reads = 'lookups') => {
  const t = new FlowTable(m as unknown as BpfMap, () => 'veth0', { lookup: () => undefined }, { ...OPTS, clockNs: () => w.nowNs }, null, indexed ? () => w.gen : null);
  if (reads !== 'lookups') t.useBatchReads(m.batchReader(reads === 'batches' ? Infinity : 3) as unknown as FlowBatchReader, null);
  return t;
};

/** After a history: the table read the way `reads` says (and fell back when the reader failed). */
function assertReads(t: FlowTable, reads: Reads): void {
  const r = t.indexStatus().reads;
  if (reads === 'lookups') return assert.deepEqual(r, { mode: 'lookup', reason: 'not deployed', batches: 0, batchedFlows: 0 });
  assert.ok(r.batches >= 2 && r.batchedFlows > 0, JSON.stringify(r));
  if (reads === 'batches') assert.equal(r.mode, 'batch');
  else {
    assert.equal(r.mode, 'lookup');
    assert.match(r.reason ?? '', /^a batch read failed: running read_flows/);
    assert.equal(r.batches, 2, 'runs before the failure');
  }
}

test('keyString/keyBytes: every IPv4 and IPv6 key goes through and back', () => {
  const w = new World(rng(1));
  for (let i = 0; i < 200; i++) {
    const k = w.key();
    assert.deepEqual(keyBytes(keyString(k, 0)), k);
  }
});

for (const [seed, reads] of [[1, 'lookups'], [2, 'lookups'], [3, 'batches'], [4, 'batches'], [5, 'batches, failing at the third'], [6, 'lookups']] as const) {
  test(`flows.list by pid through the index = a full scan (seed ${seed}, 400 steps, ${reads})`, async () => {
    const w = new World(rng(seed));
    const m = new FakeFlowMap();
    const indexed = table(m, w, true, reads);
    const scan = table(m, w, false);
    let served = 0;
    for (let i = 0; i < 400; i++) {
      const what = w.step([m]);
      if (i % 4 !== 0) continue;
      for (const pid of [0, ...w.live, ...w.free]) {
        for (const extra of [{}, { includeClosed: false }, { uid: 1000 + (pid % 3) }, { protocol: 17 }]) {
          const q = { pid, limit: 100_000, ...extra };
          const walksBefore = m.walks;
          const got = await indexed.query(q);
          if (m.walks === walksBefore) served++;
          const want = await scan.query(q);
          assert.deepEqual(sorted(got.flows), sorted(want.flows), `step ${i} (${what}) pid ${pid} ${JSON.stringify(extra)}`);
          assert.equal(got.matched, want.matched);
        }
      }
      // With no counted change since the last walk, a pid query reads no more than its flows.
      const walksBefore = m.walks;
      const lookupsBefore = m.lookups;
      const pid = w.pick(w.live);
      const res = await indexed.query({ pid, limit: 100_000 });
      assert.equal(m.walks, walksBefore, `step ${i}: the index was trusted after a walk, yet the query walked`);
      assert.ok(m.lookups - lookupsBefore <= res.flows.length + 20, 'read only the flows the index lists');
    }
    assert.ok(served > 100, `the index served ${served} queries`);
    assertReads(indexed, reads);
  });
}

for (const [seed, reads] of [[11, 'lookups'], [12, 'lookups'], [13, 'lookups'], [14, 'batches'], [15, 'batches'], [16, 'batches'], [17, 'batches, failing at the third'], [18, 'lookups']] as const) {
  test(`the due-only collector removes exactly what the full walk removed (seed ${seed}, 2000 steps, ${reads})`, async () => {
    const w = new World(rng(seed));
    const a = new FakeFlowMap();
    const b = a.clone();
    const fresh = table(a, w, true, reads);
    const old = table(b, w, false);
    let dueOnly = 0;
    let removed = 0;
    for (let i = 0; i < 2000; i++) {
      // stretches of counted changes, then quiet stretches the index must carry alone
      const what = w.step([a, b], i % 150 >= 50);
      if (what === 'time' || i % 7 === 0) {
        const walks = a.walks;
        const trusted = fresh.index.trusted(w.gen);
        const n1 = await fresh.gc();
        const n2 = await old.gcWalk();
        removed += n2;
        if (trusted) {
          assert.equal(a.walks, walks, `step ${i}: a trusted index walked the table`);
          dueOnly++;
        }
        assert.equal(n1, n2, `step ${i} (${what}): removed ${n1}, the walk removed ${n2}`);
        assert.deepEqual([...a.entries.keys()].sort(), [...b.entries.keys()].sort());
        assert.deepEqual(new Map([...fresh.retiredTotals()].sort()), new Map([...old.retiredTotals()].sort()));
      }
    }
    assert.ok(dueOnly > 10 && removed > 10, `${dueOnly} due-only collections, ${removed} flows removed`);
    assertReads(fresh, reads);
  });
}

test('processes(): a process\'s HTTP counts are its flows\' summaries summed, in the same walk, and stay after its flows are collected', async () => {
  const w = new World(rng(21));
  const m = new FakeFlowMap();
  const t = table(m, w, false);
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache() });
  let asked = 0;
  t.setAnnotator({
    fields: (f, now) => store.flowFields(f, now), wants: () => false, forget: (f) => store.forgetFlow(f),
    mayHaveHttp: (lp, rp) => store.mayHaveHttp(lp, rp),
    http: (f) => (asked++, store.httpOf(f)),
    httpFlows: (fn) => store.forEachHttpFlow(fn),
  });
  for (let i = 0; i < 80; i++) w.step([m]);
  const tcp = (await t.query({ limit: 100_000 })).flows.filter((f) => f.protocol === 'tcp' && f.pid !== null);
  const want = new Map<number | null, [number, number, number, number]>();
  let withHttp = 0;
  tcp.forEach((f, i) => {
    if (i % 2) return; // every other flow has no HTTP
    withHttp++;
    const flow = { protocol: 'tcp', family: f.family, localAddr: f.localAddr, localPort: f.localPort!, remoteAddr: f.remoteAddr, remotePort: f.remotePort! };
    for (let j = 0; j <= i % 5; j++) {
      const status = j === 0 ? 404 : j === 1 ? 502 : 200;
      store.addHttp({ pid: f.pid!, uid: f.uid!, method: 'GET', path: `/${j}`, status, version: '1.1', requestBytes: 10, responseBytes: 100, requestStartNs: 1e9, requestEndNs: 1e9, tls: false, flags: [], flow });
      const s = want.get(f.pid) ?? [0, 0, 0, 0];
      want.set(f.pid, [s[0] + 1, s[1] + (status === 404 ? 1 : 0), s[2] + (status === 502 ? 1 : 0), s[3] + 10]);
    }
  });
  assert.ok(withHttp >= 5 && want.size >= 2, `${withHttp} flows with HTTP, ${want.size} processes`);
  const http = async () => new Map((await t.processes()).filter((p) => p.http).map((p) => [p.pid, [p.http!.requests, p.http!.clientErrors, p.http!.serverErrors, p.http!.requestBytes]]));
  assert.deepEqual(await http(), want);
  assert.equal(asked, withHttp, 'only flows whose ports have a summary are looked up by address');
  assert.ok((await t.processes()).every((p) => p.http === null || want.has(p.pid)), 'null without requests');
  // Every flow collected: the counts move to the retired totals, as bytes do.
  for (const v of m.entries.values()) v.writeBigUInt64LE(w.nowNs, F.closed_ns.offset);
  w.nowNs += 700n * SEC;
  await t.gcWalk();
  assert.equal(m.entries.size, 0);
  assert.deepEqual(await http(), want);
});

test('processes(): a reused pid keeps its own retired totals when the earlier process with that pid is forgotten', async () => {
  const w = new World(rng(31));
  const m = new FakeFlowMap();
  const t = table(m, w, false);
  const bootNow = clockNs(CLOCK_BOOTTIME);
  const exitedAtMs = Date.now() - 5000;
  /** A closed TCP flow of pid 100 whose owner was learned `agoS` seconds ago, `tx` bytes sent. */
  const flow = (agoS: number, tx: number) => {
    const k = w.key();
    k[FLOW_KEY.fields.proto.offset] = 6;
    const v = w.value(6, 100);
    v.writeBigUInt64LE(BigInt(tx), F.tx_bytes.offset);
    v.writeBigUInt64LE(0n, F.rx_bytes.offset);
    v.writeBigUInt64LE(bootNow - BigInt(agoS) * SEC, OW + O.learned_ns.offset);
    v.writeBigUInt64LE(w.nowNs, F.closed_ns.offset);
    m.entries.set(k.toString('hex'), v);
  };
  const collect = async () => {
    w.nowNs += 120n * SEC; // past the closed flows' retention
    await t.gcWalk();
    assert.equal(m.entries.size, 0);
  };
  const tx100 = async () => (await t.processes()).find((p) => p.pid === 100)?.txBytes ?? 0;
  flow(60, 1000); // the first process with pid 100, collected before it exits
  await collect();
  t.processExited(100, exitedAtMs);
  flow(1, 50); // a later process with the same pid (its owner learned after the exit)
  flow(30, 7); // the first one's, collected only now
  await collect();
  assert.equal(await tx100(), 1057, 'both processes\' totals under the pid while the first is remembered');
  t.forgetProcess(100, exitedAtMs);
  assert.equal(await tx100(), 50, 'the later process keeps its own totals when the first is forgotten');
  t.processExited(100, Date.now());
  t.forgetProcess(100, Date.now());
  assert.equal(await tx100(), 0, 'and loses them when it is forgotten in turn');
});
