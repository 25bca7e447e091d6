// SPDX-License-Identifier: Apache-2.0
// The owner index through the real daemon and the real CLI (issue 17): flows written into
// the daemon's pinned emon_flows (the truth: what this test wrote), their owners changed
// as the kernel programs change them (counted in emon_stats), and `ebpfmonctl flows --pid`
// compared with that truth after every change. The daemon runs in a lab host with no link,
// so no real traffic moves the kernel's counters under the test. Last, an owner change the
// kernel did not count: the index, trusted, does not see it (the documented limit: writers
// outside the programs go unseen until a counter moves or the 5-minute refill), which
// shows the answers came from the index; once a counter moves, the answer is right again.
// These are the rules of the index without the dirty-flow ring (flows.dirtyRing false, the
// fallback): with the ring, a change arrives with its key and counters play no part
// (test/integration/dirty.test.ts, dirty-daemon.test.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { fillFlows, fillKeyOf, ownerOf, type FillSpec } from '../helpers/flow-fill.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { MONITOR_COUNTERS } from '../../daemon/src/contract/status.js';
import { FLOW, OWNER } from '../../daemon/src/monitor/wire.js';
import type { Flow } from '../../daemon/src/contract/flows.js';

const SPEC: FillSpec = { count: 2000, owners: 20, ownerBase: 3_000_000, queriedPid: 3_999_990, queriedFlows: 40 };
const TG = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;

describe('owner index (real daemon, real CLI)', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let daemon: TestDaemon;
  let flows: BpfMap;
  let stats: BpfMap;
  /** The truth: owner of flow i, as this test wrote it. */
  const owner: number[] = [];

  before(async () => {
    lab = await Lab.create();
    const host = await lab.host('oi');
    daemon = await startDaemon(host, { config: { flows: { gcIntervalSec: 1, dirtyRing: false }, history: { enabled: false } } });
    const maps = path.join(daemon.pinPath, 'maps');
    assert.equal(fillFlows(path.join(maps, MAP.flows), SPEC), SPEC.count);
    for (let i = 0; i < SPEC.count; i++) owner.push(ownerOf(SPEC, i));
    flows = BpfMap.fromPin(path.join(maps, MAP.flows), MAP.flows);
    stats = BpfMap.fromPin(path.join(maps, MAP.stats), MAP.stats);
  });
  after(async () => {
    flows?.close();
    stats?.close();
    await destroyMonitorLab(daemon, lab);
  });

  const setOwner = (i: number, pid: number) => {
    const v = flows.lookup(fillKeyOf(i))!;
    v.writeUInt32LE(pid, TG);
    flows.update(fillKeyOf(i), v);
  };
  /** As the kernel counts an owner patch (CPU 0's slot of the per-CPU counter). */
  const countPatched = (n: number) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(MONITOR_COUNTERS.indexOf('flowsPatched'));
    const v = stats.lookup(k)!;
    v.writeBigUInt64LE(v.readBigUInt64LE(0) + BigInt(n), 0);
    stats.update(k, v);
  };
  const truth = (pid: number) => owner.flatMap((p, i) => (p === pid ? [i & 0xffff] : [])).sort((a, b) => a - b);
  const cli = async (pid: number) => {
    const r = await ctl(['flows', '--pid', String(pid), '--json', '--limit', '100000'], { socket: daemon.socketPath });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Flow[]).map((f) => f.localPort!).sort((a, b) => a - b);
  };
  const pids = [SPEC.queriedPid, SPEC.ownerBase, SPEC.ownerBase + 3, SPEC.ownerBase + 5];
  // Several rounds: the first query after a change walks, a later one refills the index,
  // the rest are served by it; every one must be the truth.
  const rounds = async (n: number, order = pids) => {
    for (let r = 0; r < n; r++) for (const pid of order) assert.deepEqual(await cli(pid), truth(pid), `round ${r}, pid ${pid}`);
  };

  test('flows --pid equals what was written, across counted owner changes', async () => {
    await rounds(2);
    // Five of the queried pid's flows change hands (a handoff, an accept patch), counted.
    const moved = owner.flatMap((p, i) => (p === SPEC.queriedPid ? [i] : [])).slice(0, 5);
    for (const i of moved) {
      setOwner(i, SPEC.ownerBase + 3);
      owner[i] = SPEC.ownerBase + 3;
    }
    countPatched(moved.length);
    // The new owner first: a lookup for the old owner's flows would move them in the index.
    await rounds(2, [...pids].reverse());
  });

  test('an uncounted owner change is not seen until a counter moves (the answers came from the index)', async () => {
    await rounds(1);
    const i = owner.indexOf(SPEC.ownerBase + 5);
    const before = truth(SPEC.queriedPid);
    setOwner(i, SPEC.queriedPid); // not counted
    assert.deepEqual(await cli(SPEC.queriedPid), before, 'the trusted index does not know of the flow yet');
    owner[i] = SPEC.queriedPid;
    countPatched(1);
    for (let r = 0; r < 3; r++) assert.deepEqual(await cli(SPEC.queriedPid), truth(SPEC.queriedPid), `after the counter moved, query ${r}`);
  });

  test('status says the table is walked, and why (the classifier without the dirty-flow ring)', async () => {
    const r = await ctl(['status', '--json'], { socket: daemon.socketPath });
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout) as { flowIndex: { mode: string; reason: string | null; dirtyRecords: number } };
    assert.equal(st.flowIndex.mode, 'full-walk');
    assert.match(st.flowIndex.reason ?? '', /flows\.dirtyRing/);
    assert.equal(st.flowIndex.dirtyRecords, 0);
    const progs = await ctl(['programs', '--json'], { socket: daemon.socketPath });
    assert.ok((JSON.parse(progs.stdout) as { programs: Array<{ name: string }> }).programs.some((p) => p.name === 'tc_ingress'), 'the classifier runs');
  });
});
