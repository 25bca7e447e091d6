// SPDX-License-Identifier: Apache-2.0
// The collector's first run is at start (daemon/src/monitor/monitor.ts), not a GC period
// later: a flow that expired while no daemon ran is collected as the daemon starts, and
// that run's walk fills the owner index, so the first per-pid query reads no full table.
// Truth: the kernel's flow map as this test reads it (the expired flow it wrote is gone,
// the open ones it wrote are all there) and the owners it wrote.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { ctl, destroyMonitorLab, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { countFlows, fillFlows, fillKeyOf, ownerOf, type FillSpec } from '../helpers/flow-fill.js';
import { until } from '../helpers/wait.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { MAP } from '../../daemon/src/monitor/components.js';
import { FLOW } from '../../daemon/src/monitor/wire.js';
import { CLOCK_MONOTONIC, clockNs } from '../../daemon/src/sys/libc.js';
import type { Flow } from '../../daemon/src/contract/flows.js';

const SPEC: FillSpec = { count: 3000, owners: 30, ownerBase: 3_100_000, queriedPid: 3_199_990, queriedFlows: 25 };
const TCP_CLOSE = 7;

describe('collector at start (real daemon, real CLI)', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let daemon: TestDaemon;
  let flows: BpfMap;

  before(async () => {
    lab = await Lab.create();
    const host = await lab.host('sg');
    // A collector period far beyond the test: only the run at start can collect anything.
    daemon = await startDaemon(host, { config: { flows: { gcIntervalSec: 3600, closedRetentionSec: 5 }, history: { enabled: false } } });
    const mapPath = path.join(daemon.pinPath, 'maps', MAP.flows);
    assert.equal(fillFlows(mapPath, SPEC), SPEC.count);
    flows = BpfMap.fromPin(mapPath, MAP.flows);
    // Flow 0 closed 30 s ago (retention 5 s): expired, and this daemon's collector ran
    // before it existed.
    const now = clockNs(CLOCK_MONOTONIC);
    const v = flows.lookup(fillKeyOf(0))!;
    v.writeBigUInt64LE(now - 40_000_000_000n, FLOW.fields.first_ns.offset);
    v.writeBigUInt64LE(now - 31_000_000_000n, FLOW.fields.last_ns.offset);
    v.writeBigUInt64LE(now - 30_000_000_000n, FLOW.fields.closed_ns.offset);
    v[FLOW.fields.sock_state.offset] = TCP_CLOSE;
    flows.update(fillKeyOf(0), v);
  });
  after(async () => {
    flows?.close();
    await destroyMonitorLab(daemon, lab);
  });

  test('a restarted daemon collects what expired at once, and answers the first --pid query from the index', async () => {
    // Still there a few seconds later: the running daemon's next collection is an hour away.
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(flows.lookup(fillKeyOf(0)), 'the expired flow was collected before the restart');
    assert.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: a clean stop');
    daemon = await restartDaemon(daemon);
    await until('the expired flow to leave the kernel map after the start', () => flows.lookup(fillKeyOf(0)) === null, 10_000);
    const mapPath = path.join(daemon.pinPath, 'maps', MAP.flows);
    assert.equal(countFlows(mapPath), SPEC.count - 1, 'only the expired flow went');
    const walks = async () => (await daemon.call('status')).flowIndex.fullWalks;
    await until('the start-up walk', async () => (await walks()) >= 1, 10_000);
    const walksBefore = await walks();
    const r = await ctl(['flows', '--pid', String(SPEC.queriedPid), '--json', '--limit', '100000'], { socket: daemon.socketPath });
    assert.equal(r.code, 0, r.stderr);
    const got = (JSON.parse(r.stdout) as Flow[]).map((f) => f.localPort!).sort((a, b) => a - b);
    const truth: number[] = [];
    for (let i = 0; i < SPEC.count; i++) if (ownerOf(SPEC, i) === SPEC.queriedPid && i !== 0) truth.push(i & 0xffff);
    assert.deepEqual(got, truth.sort((a, b) => a - b));
    assert.equal(await walks(), walksBefore, 'the first --pid query after the start walked the table');
  });
});
