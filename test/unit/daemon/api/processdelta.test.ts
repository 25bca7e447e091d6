// SPDX-License-Identifier: Apache-2.0
// Incremental processes.list replies (`since`, api/processdelta.ts): random steps change a
// model of the monitor's per-process totals (new processes, exits, pid reuse, traffic,
// HTTP summaries, unit moves, ties in bytes, the kernel's and unknown owners' rows); after
// every step each stream (params x caller) asks with its last cursor, merges the reply the
// way `ebpfmonctl top` does (client/src/processrows.ts), and must hold exactly the full
// reply asked at the same moment: the same rows, in the same order. Also: bad `since`
// values, cursors that cannot be answered (full replies), caller scoping, D-Bus.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorMethods } from '../../../../daemon/src/api/monitor.js';
import { MAX_CURSORS, MAX_CURSORS_PER_UID, processKey as daemonKey } from '../../../../daemon/src/api/processdelta.js';
import { compareProcessRows } from '../../../../daemon/src/monitor/rowcache.js';
import { processTotalsQuery } from '../../../../daemon/src/dbus/manager.js';
import type { Caller } from '../../../../daemon/src/api/caller.js';
import type { MonitorApi, ProcessTraffic } from '../../../../daemon/src/monitor/api.js';
import type { ProcessQuery } from '../../../../daemon/src/monitor/flows.js';
import type { ProcessesListParams, ProcessesListResult } from '../../../../daemon/src/contract/flows.js';
import { KERNEL_COMM } from '../../../../daemon/src/contract/common.js';
import { AppError } from '../../../../daemon/src/errors.js';
import { compareProcesses, processKey, ProcessRows } from '../../../../client/src/processrows.js';
import { FakeMonitor } from '../../../helpers/fake-monitor.js';
import { rng } from '../../../helpers/rand.js';

const ROOT: Caller = { uid: 0, gid: 0, pid: 1, seesAll: true, admin: true };
const USER: Caller = { uid: 1000, gid: 1000, pid: 2, seesAll: false, admin: false };
const OTHER: Caller = { uid: 1001, gid: 1001, pid: 3, seesAll: false, admin: false };
const UNITS = ['a.service', 'b.service', null] as const;

/** A monitor whose per-process totals the test changes; rows sorted as the real one sorts. */
class ModelMonitor extends FakeMonitor implements MonitorApi {
  /** Owner key (pid, null unknown, -2 kernel) -> its row as the monitor last built it. */
  readonly rows = new Map<number | null, ProcessTraffic>();
  /** Hand out a fresh copy of unchanged rows (as a walk does) instead of the same object. */
  copies = false;

  override async processTotals(q: ProcessQuery): Promise<ProcessTraffic[]> {
    const out: ProcessTraffic[] = [];
    for (const r of this.rows.values()) {
      if (q.uid !== undefined && r.uid !== q.uid) continue;
      if (q.identity && !q.identity(r)) continue;
      out.push(this.copies ? structuredClone(r) : r);
    }
    return out.sort(compareProcessRows);
  }

  /** Replaces a row (the monitor builds a new object for a changed row). */
  set(key: number | null, over: Partial<ProcessTraffic>): void {
    const r = this.rows.get(key);
    const pid = key !== null && key >= 0 ? key : null;
    const base: ProcessTraffic = r ?? {
      pid, comm: key === -2 ? KERNEL_COMM : null, uid: null, exe: null, cgroupId: null, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0,
      lastSeenAt: null, places: [], http: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null,
    };
    this.rows.set(key, { ...base, ...over });
  }
}

interface Stream {
  name: string;
  params: ProcessesListParams;
  caller: Caller;
  kept: ProcessRows;
  full: number;
  incremental: number;
  rowsSent: number;
  rowsFull: number;
}

describe('processes.list since: merged incremental replies equal the full reply', () => {
  for (const seed of [1, 7, 4242, Number(process.env.EMON_DELTA_SEED ?? Date.now() % 1_000_000)]) {
    test(`random steps (seed ${seed})`, async () => {
      const rand = rng(seed);
      const pick = (n: number) => Math.floor(rand() * n);
      const monitor = new ModelMonitor();
      const m = monitorMethods({ monitor, version: 't', startedAt: new Date(0), transports: () => ({ rpc: {} as never, dbus: null }), identity: null });
      const pl = m['processes.list'];
      const call = async (params: ProcessesListParams, caller: Caller): Promise<ProcessesListResult> => pl.run(pl.validate(params, caller), caller);
      const streams: Stream[] = [
        ['all', {}, ROOT], ['places 1', { places: 1 }, ROOT], ['uid 1001', { uid: 1001 }, ROOT], ['unit a', { unit: 'a.service' }, ROOT],
        ['limit 5', { limit: 5 }, ROOT], ['uid 1000 limit 3', { uid: 1000, limit: 3 }, ROOT], ['unprivileged 1000', {}, USER],
        ['unprivileged 1001 limit 2', { limit: 2 }, OTHER], ['by unit', { by: 'unit' }, ROOT],
      ].map(([name, params, caller]) => ({ name: name as string, params: params as ProcessesListParams, caller: caller as Caller, kept: new ProcessRows(), full: 0, incremental: 0, rowsSent: 0, rowsFull: 0 }));
      let nextPid = 100;
      let ms = Date.parse('2026-12-04T12:00:00.000Z');
      const live = () => [...monitor.rows.keys()];
      const newProcess = (pid = nextPid++) => {
        const uid = 1000 + pick(3);
        monitor.set(pid, { pid, comm: `p${pid % 50}`, uid, exe: `/bin/p${pid}`, cgroupId: String(pid), unit: UNITS[pick(3)]!, flows: 1, openFlows: 1, txBytes: pick(3) * 100, rxBytes: 0, txPackets: 1, lastSeenAt: new Date(ms).toISOString() });
      };
      for (let i = 0; i < 20; i++) newProcess();
      monitor.set(-2, { txBytes: 5000, flows: 3 });
      monitor.set(null, { txBytes: 5000, flows: 2 });
      for (let step = 0; step < 150; step++) {
        ms += 1000;
        monitor.copies = rand() < 0.2;
        const n = pick(12);
        const keys = live();
        const any = () => keys[pick(keys.length)]!;
        if (n < 2) for (let i = 0, k = 1 + pick(4); i < k; i++) newProcess();
        else if (n < 4 && keys.length > 3) {
          // Exits: the process's totals go (its pid forgotten).
          for (let i = 0, k = 1 + pick(3); i < k; i++) monitor.rows.delete(any());
        } else if (n < 5 && keys.length > 0) {
          // Pid reuse: the same pid, another program, user and unit, totals from zero.
          const k = any();
          if (k !== null && k >= 0) {
            monitor.rows.delete(k);
            newProcess(k);
          }
        } else if (n < 8) {
          // Traffic on a few processes (the rest unchanged).
          for (let i = 0, k = pick(5); i < k; i++) {
            const r = monitor.rows.get(any());
            if (r) monitor.set(any(), { txBytes: r.txBytes + pick(2000), rxBytes: r.rxBytes + pick(2000), txPackets: r.txPackets + 1, flows: r.flows + pick(2), lastSeenAt: new Date(ms).toISOString() });
          }
        } else if (n < 9) {
          // HTTP summaries change without traffic; a unit move changes only the identity.
          const k = any();
          const h = monitor.rows.get(k)?.http;
          monitor.set(k, { http: { requests: (h?.requests ?? 0) + 1, clientErrors: 0, serverErrors: pick(2), requestBytes: 10, responseBytes: 100 } });
          monitor.set(any(), { unit: UNITS[pick(3)]! });
        } else if (n < 10) {
          // Ties: several rows with the same bytes (the order then goes by key).
          for (let i = 0; i < 4; i++) monitor.set(any(), { txBytes: 7777, rxBytes: 0 });
        } // else: nothing changed
        for (const s of streams) {
          const r0 = rand();
          if (r0 < 0.03) s.kept.reset(); // a client that starts over
          const stale = r0 > 0.97 && s.kept.cursor !== null ? s.kept.cursor : null;
          const inc = await call({ ...s.params, since: s.kept.cursor }, s.caller);
          assert.ok(inc.cursor !== undefined && inc.full !== undefined, `${s.name}: a cursor and full`);
          if (inc.full) {
            s.full++;
            assert.equal(inc.gone, undefined);
          } else {
            s.incremental++;
            assert.ok(Array.isArray(inc.gone));
          }
          s.rowsSent += inc.processes.length;
          assert.ok(s.kept.apply(inc));
          const full = await call(s.params, s.caller);
          s.rowsFull += full.processes.length;
          assert.deepEqual(Object.keys(full).sort(), s.params.by ? ['groups', 'processes'] : ['processes'], 'without since the reply is as before');
          assert.deepEqual(s.kept.list(), full.processes, `seed ${seed} step ${step} (kind ${n}) stream ${s.name}`);
          if (s.params.by) assert.deepEqual(inc.groups, full.groups);
          if (!s.caller.seesAll) assert.ok(s.kept.list().every((p) => p.uid === s.caller.uid), `${s.name}: only its own processes`);
          if (stale !== null) {
            // A cursor already used: answered in full, never as a difference against it.
            const again = await call({ ...s.params, since: stale }, s.caller);
            assert.equal(again.full, true);
            s.kept.reset();
            s.kept.apply(again);
          }
        }
      }
      for (const s of streams) {
        if (s.params.by) {
          assert.equal(s.incremental, 0, 'with by, every reply is full');
          continue;
        }
        assert.ok(s.incremental > 100, `${s.name}: ${s.incremental} incremental replies`);
        assert.ok(s.rowsSent < s.rowsFull / 2, `${s.name}: ${s.rowsSent} rows sent incrementally vs ${s.rowsFull} in full replies`);
      }
    });
  }
});

describe('processes.list since: cursors and errors', () => {
  const setup = () => {
    const monitor = new ModelMonitor();
    for (let pid = 10; pid < 20; pid++) monitor.set(pid, { comm: `c${pid}`, uid: pid < 15 ? 1000 : 1001, txBytes: pid * 10 });
    const m = monitorMethods({ monitor, version: 't', startedAt: new Date(0), transports: () => ({ rpc: {} as never, dbus: null }), identity: null });
    const pl = m['processes.list'];
    const call = async (params: unknown, caller: Caller = ROOT): Promise<ProcessesListResult> => pl.run(pl.validate(params, caller), caller);
    return { monitor, pl, call };
  };

  test('a since that is not a cursor is InvalidParams naming params.since', () => {
    const { pl } = setup();
    for (const bad of [42, '', 'abc', true, {}, [], 'deadbeef0000.x', '0123456789ab.1'.repeat(2)]) {
      assert.throws(() => pl.validate({ since: bad }, ROOT), (e: unknown) => e instanceof AppError && e.kind === 'InvalidParams' && e.data?.field === 'params.since', JSON.stringify(bad));
    }
  });

  test('cursors it cannot answer from get a full reply: unknown, used, other params, another caller, another daemon run', async () => {
    const { monitor, call } = setup();
    const a = await call({ since: null });
    assert.equal(a.full, true);
    assert.equal(a.processes.length, 10);
    const b = await call({ since: a.cursor });
    assert.deepEqual([b.full, b.processes, b.gone], [false, [], []]);
    monitor.set(12, { txBytes: 999 });
    monitor.rows.delete(13);
    const c = await call({ since: b.cursor });
    assert.deepEqual([c.full, c.processes.map((p) => p.pid), c.gone], [false, [12], ['13']]);
    // Used already:
    assert.equal((await call({ since: b.cursor })).full, true);
    // Another daemon run (same form, another run id), or never issued:
    assert.equal((await call({ since: '0123456789ab.1' })).full, true);
    assert.equal((await call({ since: `${c.cursor!.split('.')[0]}.999999` })).full, true);
    // Other params than the cursor's:
    const d = await call({ since: null, limit: 3 });
    assert.equal((await call({ since: d.cursor, limit: 4 })).full, true);
    // Another caller's cursor: a full reply of the caller's own rows, nothing of the first's.
    const e = await call({ since: null }, ROOT);
    const f = await call({ since: e.cursor }, USER);
    assert.equal(f.full, true);
    assert.deepEqual(f.processes.map((p) => p.uid), [1000, 1000, 1000, 1000]);
    assert.equal(f.gone, undefined);
    // ... which does not use it up: its own caller still gets an incremental reply.
    assert.equal((await call({ since: e.cursor }, ROOT)).full, false);
    const g = await call({ since: null }, USER);
    monitor.rows.delete(17); // uid 1001's: nothing to tell uid 1000
    monitor.rows.delete(11);
    const h = await call({ since: g.cursor }, USER);
    assert.deepEqual([h.full, h.processes, h.gone], [false, [], ['11']]);
    // An unprivileged caller asking for another uid is refused, with or without since.
    assert.throws(() => setup().pl.validate({ since: null, uid: 1001 }, USER), (e: unknown) => e instanceof AppError && e.kind === 'PermissionDenied');
  });

  test(`cursors are capped per uid (${MAX_CURSORS_PER_UID}) and in all (${MAX_CURSORS}): one user's many streams do not push out another's`, async () => {
    const { call } = setup();
    const rootStream = await call({ since: null }, ROOT);
    // USER opens more streams than a uid may keep: their oldest go, the newest answer.
    const mine = [];
    for (let i = 0; i < MAX_CURSORS_PER_UID + 5; i++) mine.push((await call({ since: null }, USER)).cursor!);
    // Newest first (a full reply makes a cursor, which pushes out USER's oldest again).
    const answered = [];
    for (const c of [...mine].reverse()) answered.unshift((await call({ since: c }, USER)).full);
    assert.deepEqual(answered, mine.map((_, i) => i < 5), "USER's 5 oldest streams were forgotten, the 16 newest answer");
    // USER's 16 newest, then one stream each for enough other uids to pass the total by
    // 11: every cursor forgotten for the total is one of USER's (the uid keeping the most).
    const kept = [];
    for (let i = 0; i < MAX_CURSORS_PER_UID; i++) kept.push((await call({ since: null }, USER)).cursor!);
    const crowd: { caller: Caller; cursor: string }[] = [];
    const over = 11;
    for (let u = 0; u < MAX_CURSORS - 1 - MAX_CURSORS_PER_UID + over; u++) {
      const caller: Caller = { uid: 5000 + u, gid: 5000 + u, pid: 10 + u, seesAll: false, admin: false };
      crowd.push({ caller, cursor: (await call({ since: null }, caller)).cursor! });
    }
    assert.equal((await call({ since: rootStream.cursor }, ROOT)).full, false, "ROOT's single stream is kept");
    for (const o of crowd) assert.equal((await call({ since: o.cursor }, o.caller)).full, false, `uid ${o.caller.uid}'s single stream is kept`);
    // Newest first: a full reply makes a cursor, which pushes out USER's oldest again.
    const full = [];
    for (const c of [...kept].reverse()) full.unshift((await call({ since: c }, USER)).full);
    assert.deepEqual(full, kept.map((_, i) => i < over), "USER lost its oldest streams, one per cursor over the total");
  });

  test('D-Bus GetProcessTotals takes no since (its reply has no cursor)', () => {
    assert.throws(() => processTotalsQuery({ since: null }, ROOT), (e: unknown) => e instanceof AppError && e.kind === 'InvalidParams');
  });

  test('the client keys and orders rows as the daemon does', () => {
    const rand = rng(99);
    const rows: ProcessTraffic[] = [];
    for (let i = 0; i < 400; i++) {
      const kind = Math.floor(rand() * 10);
      rows.push({
        pid: kind === 0 ? null : Math.floor(rand() * 50), comm: kind === 0 ? (rand() < 0.5 ? KERNEL_COMM : null) : 'x', uid: 0, exe: null, cgroupId: null,
        flows: 0, openFlows: 0, txBytes: Math.floor(rand() * 4) * 10, rxBytes: Math.floor(rand() * 2) * 10, txPackets: 0, rxPackets: 0, lastSeenAt: null,
        places: [], http: null, cgroupPath: null, unit: null, userUnit: null, slice: null, container: null, app: null,
      });
    }
    for (const r of rows) assert.equal(processKey(r), daemonKey(r));
    for (const a of rows) for (const b of rows.slice(0, 40)) assert.equal(Math.sign(compareProcesses(a, b)), Math.sign(compareProcessRows(a, b)));
    assert.deepEqual(new Set(rows.map(processKey)).has('kernel') && new Set(rows.map(processKey)).has('unknown'), true);
  });
});
