// SPDX-License-Identifier: Apache-2.0
// The dirty-flow ring (issue 17): processes.list from the per-owner totals kept from the
// flows the kernel reports changed must equal a walk of the whole table. The real
// classifier (build/bpf/flows.bpf.o) runs on packets through BPF_PROG_TEST_RUN; random
// steps create flows, add packets to old ones (within and across ticks), give unowned
// flows an owner (the classifier's owner patch, through emon_tuples), reuse pids under
// another comm, collect idle flows (the real collector, on a test clock), and overflow the
// table so the LRU evicts. After every step the kept totals are compared with the walk
// (the truth: every flow in the map as it is) and, before any flow was evicted or
// collected, with the packets and bytes this test sent. HTTP summaries (an L7 store fed
// requests on random flows, some not in the table) must sum per process as the walk sums them.
// processes.list with `since` (incremental replies, `top`), for several params and callers,
// merged as the client merges them, must equal the full reply after every step; the rows
// the monitor hands out again unchanged (monitor/rowcache.ts) are checked by the walk above.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { privileged } from '../helpers/privileged.js';
import { ROOT } from '../helpers/cc.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { numPossibleCpus } from '../../daemon/src/bpf/maps.js';
import { writeUint } from '../../daemon/src/bpf/layout.js';
import { FlowTable, type ProcessTraffic } from '../../daemon/src/monitor/flows.js';
import { DirtyRing } from '../../daemon/src/monitor/dirty.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { markOwnerPorts } from '../../daemon/src/monitor/ownerports.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { FLOW_KEY, IFACE, OWNER } from '../../daemon/src/monitor/wire.js';
import { CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, clockNs } from '../../daemon/src/sys/libc.js';
import { TcTestRunner } from '../../bench/classifier/testrun.js';
import { L7Store } from '../../daemon/src/l7/store.js';
import { ResolverCache } from '../../daemon/src/l7/dns/cache.js';
import { monitorMethods } from '../../daemon/src/api/monitor.js';
import type { Caller } from '../../daemon/src/api/caller.js';
import type { MonitorApi } from '../../daemon/src/monitor/api.js';
import type { ProcessesListParams, ProcessesListResult, ProcessTotals } from '../../daemon/src/contract/flows.js';
import { ProcessRows } from '../../client/src/processrows.js';
import { rng } from '../helpers/rand.js';

const MAX_FLOWS = 4096;
/** Tuples the steps draw from: more than the table holds, so the LRU evicts late in the run. */
const TUPLES = 9000;
const REMOTES = 37;
const STEPS = 80;

function csum16(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Tuple i: local 198.18.(i>>8).(i&255):(20000+i) -> remote 198.19.0.(i%REMOTES):443, TCP or UDP. */
function tuple(i: number): { laddr: number[]; raddr: number[]; lport: number; rport: number; proto: number } {
  return { laddr: [198, 18, (i >> 8) & 255, i & 255], raddr: [198, 19, 0, 1 + (i % REMOTES)], lport: 20000 + i, rport: i % 5 === 0 ? 53 : 443, proto: i % 5 === 0 ? 17 : 6 };
}

/** An Ethernet frame of tuple i leaving (egress) or arriving (ingress), `payload` bytes of L4 payload. */
function frame(i: number, egress: boolean, payload: number): Buffer {
  const t = tuple(i);
  const l4 = Buffer.alloc((t.proto === 6 ? 20 : 8) + payload);
  const [sp, dp] = egress ? [t.lport, t.rport] : [t.rport, t.lport];
  l4.writeUInt16BE(sp, 0);
  l4.writeUInt16BE(dp, 2);
  if (t.proto === 6) {
    l4[12] = 5 << 4;
    l4[13] = 0x18; // PSH|ACK: never a new connection
  } else l4.writeUInt16BE(l4.length, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip[8] = 64;
  ip[9] = t.proto;
  Buffer.from(egress ? t.laddr : t.raddr).copy(ip, 12);
  Buffer.from(egress ? t.raddr : t.laddr).copy(ip, 16);
  ip.writeUInt16BE(csum16(ip), 10);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, l4]);
}

function keyOf(i: number): Buffer {
  const t = tuple(i);
  const k = Buffer.alloc(FLOW_KEY.size);
  k[FLOW_KEY.fields.family.offset] = 2;
  k[FLOW_KEY.fields.proto.offset] = t.proto;
  k.writeUInt16LE(t.lport, FLOW_KEY.fields.lport.offset);
  k.writeUInt16LE(t.rport, FLOW_KEY.fields.rport.offset);
  Buffer.from(t.laddr).copy(k, FLOW_KEY.fields.laddr.offset);
  Buffer.from(t.raddr).copy(k, FLOW_KEY.fields.raddr.offset);
  return k;
}

function owner(pid: number, comm: string, uid: number): Buffer {
  const o = Buffer.alloc(OWNER.size);
  o.writeUInt32LE(pid, OWNER.fields.tgid.offset);
  o.writeUInt32LE(pid, OWNER.fields.pid.offset);
  o.writeUInt32LE(uid, OWNER.fields.uid.offset);
  o.writeBigUInt64LE(BigInt(1000 + pid), OWNER.fields.cgroup_id.offset);
  o.write(comm, OWNER.fields.comm.offset, 15, 'latin1');
  o[OWNER.fields.how.offset] = 2; // EMON_HOW_CONNECT
  return o;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** What processes.list answers, comparable: sorted by owner, places left out (the API's). */
function norm(list: ProcessTraffic[], withComm: Set<number | null>): unknown[] {
  return list
    .map((p) => ({
      pid: p.pid, uid: p.uid, flows: p.flows, openFlows: p.openFlows, txBytes: p.txBytes, rxBytes: p.rxBytes, txPackets: p.txPackets, rxPackets: p.rxPackets,
      lastSeenAt: p.lastSeenAt, cgroupId: p.cgroupId, exe: p.exe,
      // Several comms under one pid (pid reuse): the walk names it after the first flow it
      // meets, the kept totals after the most recent (docs/architecture.md).
      comm: withComm.has(p.pid) ? p.comm : '*',
      remotes: (p.remotes ?? []).map((r) => `${r.addr} ${r.flows} ${r.txBytes} ${r.rxBytes}`).sort(),
      http: p.http,
    }))
    .sort((a, b) => (a.pid ?? -9) - (b.pid ?? -9));
}

type Normed = { pid: number | null; lastSeenAt: string | null };

/** norm() of both lists, `walked`'s lastSeenAt taken from `kept` where they differ by at most
 * 1 ms: each call converts stamps with the wall clock as it is then (the monotonic-to-wall
 * offset is re-measured per call and follows a slew past 200 us, sys/clock.ts), so two
 * calls can place the same stamp 1 ms apart; the stamps themselves are what is compared. */
function normBoth(kept: ProcessTraffic[], walked: ProcessTraffic[], withComm: Set<number | null>): [unknown[], unknown[]] {
  const a = norm(kept, withComm) as Normed[];
  const b = norm(walked, withComm) as Normed[];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.pid === y.pid && x.lastSeenAt && y.lastSeenAt && Math.abs(Date.parse(x.lastSeenAt) - Date.parse(y.lastSeenAt)) <= 1) y.lastSeenAt = x.lastSeenAt;
  }
  return [a, b];
}

/** Rows as compared between a merged stream and a full reply: lastSeenAt as ms, 1 ms apart
 * taken as equal (two calls convert with the wall clock as each finds it, see normBoth). */
function sameRows(merged: ProcessTotals[], full: ProcessTotals[], msg: string): void {
  assert.equal(merged.length, full.length, msg);
  const b = full.map((p, i) => {
    const a = merged[i]!;
    const near = a.lastSeenAt && p.lastSeenAt && Math.abs(Date.parse(a.lastSeenAt) - Date.parse(p.lastSeenAt)) <= 1;
    return near ? { ...p, lastSeenAt: a.lastSeenAt } : p;
  });
  assert.deepEqual(merged, b, msg);
}

const ROOT_CALLER: Caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
const USER_1001: Caller = { uid: 1001, gid: 1001, pid: 2, seesAll: false, admin: false };

describe('dirty-flow ring: kept per-owner totals equal the walk (real classifier)', privileged({ timeout: 180_000 }), () => {
  let obj: BpfObject;
  let ring: DirtyRing;
  let table: FlowTable;
  const store = new L7Store({ wallMs: (ns) => ns / 1e6, cache: new ResolverCache() });
  const runner = new TcTestRunner();
  /** The process table's executables (what a process's row shows besides the table). */
  const exes = new Map<number, string>();
  /** Test clock for the collector: the monotonic clock plus what the test skipped ahead. */
  let skewNs = 0n;

  before(() => {
    obj = BpfObject.open(path.join(ROOT, 'build/bpf/flows.bpf.o'));
    obj.setMaxEntries(MAP.flows, MAX_FLOWS);
    obj.load();
    const v = Buffer.alloc(IFACE.size);
    writeUint(v, IFACE.fields.ifindex, 1); // BPF_PROG_TEST_RUN runs on loopback, Ethernet-framed
    writeUint(v, IFACE.fields.l2_len, 14);
    obj.map(MAP.ifaces).update(u32(1), v);
    ring = new DirtyRing(obj.map(MAP.dirty), obj.map(MAP.epoch));
    table = new FlowTable(obj.map(MAP.flows), () => 'lo', { lookup: (pid) => (exes.has(pid) ? { ppid: null, exe: exes.get(pid)!, comm: '' } : undefined) }, {
      closedRetentionMs: 60_000, idleTimeoutMs: 300_000, tcpIdleTimeoutMs: 3_600_000, clockNs: () => clockNs(CLOCK_MONOTONIC) + skewNs,
    });
    const stats = obj.map(MAP.stats);
    const lost = () => Number(stats.sumPerCpuU64(stats.lookup(u32(MONITOR_COUNTERS.indexOf('dirtyRingFull')))!));
    table.useDirty(ring, lost, MAX_FLOWS, numPossibleCpus());
    table.setAnnotator({
      fields: (f, now) => store.flowFields(f, now), wants: () => false, forget: (f) => store.forgetFlow(f),
      mayHaveHttp: (lp, rp) => store.mayHaveHttp(lp, rp), http: (f) => store.httpOf(f), httpFlows: (fn) => store.forEachHttpFlow(fn),
    });
  });
  after(() => {
    ring?.close();
    obj?.close();
  });

  test('random creates, updates, owner patches, pid reuse, collection and eviction', async () => {
    const seed = Number(process.env.EMON_DIRTY_SEED ?? Date.now() % 1_000_000);
    const rand = rng(seed);
    const pick = (n: number) => Math.floor(rand() * n);
    const tuples = obj.map(MAP.tuples);
    const ports = obj.map(MAP.ownerPorts);
    /** An owner by tuple, written as the kernel's accept hook does: the local port marked first. */
    const ownTuple = (i: number, o: Buffer) => {
      markOwnerPorts(ports, [tuple(i).lport]);
      tuples.update(keyOf(i), o);
    };
    const ingress = obj.progFd('tc_ingress');
    const egress = obj.progFd('tc_egress');
    /** Owners this test gave (pid -> comms used), to know which pids have one comm. */
    const comms = new Map<number, Set<string>>();
    /** Packets and IP bytes sent, while nothing was evicted or collected (then the truth). */
    let sentPackets = 0;
    let sentBytes = 0;
    let exact = true;
    let used = 0; // tuples [0, used) have been sent
    const send = (i: number, n: number) => {
      for (let j = 0; j < n; j++) {
        const eg = rand() < 0.5;
        const f = frame(i, eg, pick(200));
        const r = runner.run(eg ? egress : ingress, 'tc', f, 1);
        assert.equal(r.retval, -1); // TC_ACT_UNSPEC
        sentPackets++;
        sentBytes += f.length - 14;
      }
    };
    const tick = async () => {
      const c = clockNs(CLOCK_MONOTONIC_COARSE);
      while (clockNs(CLOCK_MONOTONIC_COARSE) <= c) await new Promise((r) => setTimeout(r, 1));
    };
    const withOneComm = () => new Set<number | null>([null, -2, ...[...comms].filter(([, s]) => s.size === 1).map(([p]) => p)]);
    let incremental = 0;
    /** HTTP requests on tuple i (it may not be a flow yet, or any more). */
    const request = (i: number, status: number) => {
      const t = tuple(i);
      const flow = { protocol: t.proto === 6 ? 'tcp' : 'udp', family: 'ipv4' as const, localAddr: t.laddr.join('.'), localPort: t.lport, remoteAddr: t.raddr.join('.'), remotePort: t.rport };
      store.addHttp({ pid: 0, uid: 0, method: 'GET', path: '/', status, version: '1.1', requestBytes: 10 + i, responseBytes: 100, requestStartNs: 1e9, requestEndNs: 1e9, tls: false, flags: [], flow });
    };
    let requests = 0;
    const api = monitorMethods({
      monitor: { processTotals: (q) => table.processes(q) } as Pick<MonitorApi, 'processTotals'> as MonitorApi,
      version: 't', startedAt: new Date(), transports: () => ({ rpc: {} as never, dbus: null }), identity: null,
    })['processes.list'];
    const call = async (params: ProcessesListParams, caller: Caller): Promise<ProcessesListResult> => api.run(api.validate(params, caller), caller);
    const streams = ([['all', {}, ROOT_CALLER], ['uid 1001', { uid: 1001 }, ROOT_CALLER], ['limit 7', { limit: 7 }, ROOT_CALLER], ['uid 2000 limit 2', { uid: 2000, limit: 2 }, ROOT_CALLER], ['unprivileged 1001', {}, USER_1001]] as const)
      .map(([name, params, caller]) => ({ name, params: params as ProcessesListParams, caller, kept: new ProcessRows(), incremental: 0, sent: 0, listed: 0 }));
    for (let step = 0; step < STEPS; step++) {
      // Requests on some flows (their summaries change without the flow changing).
      for (let j = 0; j < 10 && used > 0; j++) {
        request(pick(Math.min(TUPLES, used + 50)), [200, 404, 503][pick(3)]!);
        requests++;
      }
      const kind = pick(10);
      if (kind < 4 && used < TUPLES) {
        // New flows, some owned from their first packet (an owner known by tuple), some not.
        const n = Math.min(TUPLES - used, 20 + pick(160));
        for (let i = used; i < used + n; i++) {
          if (rand() < 0.6) {
            const pid = 4_000_000 + pick(12);
            const comm = rand() < 0.15 ? `reuse${pick(3)}` : `proc${pid % 100}`;
            if (!comms.has(pid)) comms.set(pid, new Set());
            comms.get(pid)!.add(comm);
            ownTuple(i, owner(pid, comm, 1000 + (pid % 3)));
          }
          send(i, 1 + pick(3));
        }
        used += n;
      } else if (kind < 7 && used > 0) {
        // More packets on old flows: some in the same tick as their last, some in later ones.
        for (let j = 0; j < 200; j++) send(pick(used), 1 + pick(2));
        if (rand() < 0.5) await tick();
        for (let j = 0; j < 100; j++) send(pick(used), 1);
      } else if (kind < 8 && used > 0) {
        // Owners learned after the flow: the classifier patches unowned flows (once a tick).
        for (let j = 0; j < 100; j++) {
          const i = pick(used);
          const pid = 4_100_000 + pick(5);
          if (!comms.has(pid)) comms.set(pid, new Set());
          comms.get(pid)!.add('late');
          ownTuple(i, owner(pid, 'late', 2000));
        }
        await tick();
        for (let j = 0; j < 300; j++) send(pick(used), 1);
      } else if (kind < 9) {
        // The collector, 400 s later: UDP flows idle past 300 s go (their counts to the retired totals).
        skewNs += 400_000_000_000n;
        const n = await table.gc();
        if (n > 0) exact = false;
      } else {
        await tick();
      }
      if (used > MAX_FLOWS - 64) exact = false; // the LRU may have evicted
      const kept = await table.processes({ remotes: true });
      if (table.indexStatus().trusted) incremental++;
      const walked = await table.processes({ remotes: true }, true);
      const one = withOneComm();
      assert.deepEqual(...normBoth(kept, walked, one), `seed ${seed}, step ${step} (kind ${kind})`);
      for (const s of streams) {
        const inc = await call({ ...s.params, since: s.kept.cursor }, s.caller);
        assert.ok(s.kept.apply(inc));
        if (inc.full === false) s.incremental++;
        s.sent += inc.processes.length;
        const full = await call(s.params, s.caller);
        s.listed += full.processes.length;
        sameRows(s.kept.list(), full.processes, `seed ${seed}, step ${step} (kind ${kind}), stream ${s.name}`);
        if (!s.caller.seesAll) assert.ok(full.processes.every((p) => p.uid === s.caller.uid));
      }
      // Nothing moved in the table since: processes() may hand out its last answer again
      // (flows.ts againOrNull), which must still follow what changes outside the table: an
      // executable the process table learns, HTTP requests on kept flows, a process's
      // retired totals forgotten (the process table's retention passed).
      await table.processes({ remotes: true });
      const owners = [...comms.keys()];
      const r = rand();
      if (r < 0.4 && owners.length) exes.set(owners[pick(owners.length)]!, `/usr/bin/exe${step}`);
      else if (r < 0.6 && owners.length) table.forgetProcess(owners[pick(owners.length)]!);
      else if (used > 0) {
        request(pick(used), 200);
        requests++;
      }
      const quiet = await table.processes({ remotes: true });
      assert.deepEqual(...normBoth(quiet, await table.processes({ remotes: true }, true), one), `seed ${seed}, step ${step}: after a change outside the table`);
      if (exact) {
        assert.equal(kept.reduce((s, p) => s + p.txPackets + p.rxPackets, 0), sentPackets, `seed ${seed}, step ${step}: packets sent`);
        assert.equal(kept.reduce((s, p) => s + p.txBytes + p.rxBytes, 0), sentBytes, `seed ${seed}, step ${step}: bytes sent`);
      }
    }
    // Last, past the table's size: the LRU evicts flows without a record.
    const stats = obj.map(MAP.stats);
    const stat = (name: (typeof MONITOR_COUNTERS)[number]) => Number(stats.sumPerCpuU64(stats.lookup(u32(MONITOR_COUNTERS.indexOf(name)))!));
    for (let i = used; i < TUPLES; i++) send(i, 1);
    used = TUPLES;
    const kept = await table.processes({ remotes: true });
    const walked = await table.processes({ remotes: true }, true);
    const one = withOneComm();
    assert.deepEqual(...normBoth(kept, walked, one), `seed ${seed}, past the table's size`);
    const evicted = stat('flowsCreated') - table.deletedTotal - (await table.count());
    assert.ok(evicted > 0, `the LRU evicted (${evicted})`);
    const st = table.indexStatus();
    assert.equal(st.mode, 'dirty-ring');
    // The kept totals answered most steps, reading far fewer flows than the walks did.
    assert.ok(incremental >= 10, `kept totals used in ${incremental} of ${STEPS} steps`);
    // The HTTP summaries were summed: the processes' requests are those on flows still kept
    // (collected flows' counts stay with the process).
    const withHttp = kept.filter((p) => p.http !== null);
    assert.ok(requests > 100 && withHttp.length > 3, `${requests} requests, ${withHttp.length} processes with HTTP`);
    assert.ok(st.refreshes > 0 && st.flowsRead > 0, JSON.stringify(st));
    assert.ok(st.resyncs.nearFull > 0, `near the eviction point the totals are walked again: ${JSON.stringify(st)}`);
    // Quiet calls were answered from the last answer (else the checks above tested nothing new).
    assert.ok(table.answeredAgain > STEPS / 4, `answered again ${table.answeredAgain} times`);
    for (const s of streams) assert.ok(s.incremental === STEPS - 1 && s.sent < s.listed, `${s.name}: ${s.incremental} incremental replies, ${s.sent} rows sent vs ${s.listed} listed`);
    console.log(`seed ${seed}: ${JSON.stringify(st)}; rows reused ${table.rows.stats.reused}, built ${table.rows.stats.built}; ${streams.map((s) => `${s.name} ${s.sent}/${s.listed}`).join(', ')}`);
  });
});
