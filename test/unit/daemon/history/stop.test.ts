// SPDX-License-Identifier: Apache-2.0
// History.stop keeps a deadline: a writer thread still opening the database (seconds on a
// slow machine; more than the daemon's 4-s stop deadline in the test suite's emulated
// guest) or still writing is ended when the time given runs out, the loss is counted in a
// warning, and what the writer had journaled comes back at the next start.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { History } from '../../../../daemon/src/history/history.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';

const N = 300;

function close(k: number, now: number): FlowObservation {
  return {
    proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + k, remoteAddr: '198.18.0.2', remotePort: 443,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 77, comm: 'stopper', uid: 0, exe: null, cgroupId: null,
    firstMs: now - 3, lastMs: now, closedMs: now, txBytes: 1000 + k, rxBytes: 500, txPackets: 3, rxPackets: 4,
  };
}

/** What the N closes add up to. */
const fed = { txBytes: N * 1000 + (N * (N - 1)) / 2, rxBytes: N * 500, txPackets: 3 * N, rxPackets: 4 * N, connections: N };

function setup(name: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-history-stop-${name}-`));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) };
  // Every close in detail, handed over every 20 ms, committed only when stopping.
  const start = () => History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, log, flushMs: 20, commitIntervalMs: 3_600_000, detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 } });
  return { dir, warnings, start };
}

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens the directory again: it must open clean; returns what a query finds. */
async function reopen(s: ReturnType<typeof setup>, now: number) {
  const h = s.start();
  try {
    await until('the reopen', () => h.status().state !== 'starting');
    const st = h.status();
    assert.equal(st.state, 'ok', JSON.stringify(st.lastError));
    assert.equal(st.lastError, null);
    assert.deepEqual(st.movedAside, [], 'nothing was taken for corrupt');
    const r = await h.query({ since: now - 120_000, until: now + 120_000, limit: 10_000 }, 'all');
    return { totals: r.totals, replayed: st.journal!.replayed.observations };
  } finally {
    await h.stop();
  }
}

test('a writer still opening the database is ended at the bound; the observations it never read are counted lost', { timeout: 60_000 }, async () => {
  const s = setup('opening');
  const h = s.start();
  const now = Date.now();
  for (let k = 0; k < N; k++) h.recordClose(close(k, now), now);
  assert.equal(h.status().state, 'starting', 'the test needs the open still under way (DuckDB takes hundreds of ms)');
  const t0 = performance.now();
  await h.stop(1);
  const ms = performance.now() - t0;
  assert.ok(ms < 2000, `stop returned at its bound, not after the open (${ms.toFixed(0)} ms)`);
  assert.equal(s.warnings.length, 1, s.warnings.join('\n'));
  assert.match(s.warnings[0]!, /did not close within 1 ms \(still opening the database\).* 300 observation\(s\) it had not read are lost/);
  const again = await reopen(s, now);
  assert.deepEqual(again.totals, { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 }, 'lost, as the warning said');
});

test('a writer ended while writing loses nothing it journaled: the next start replays it', { timeout: 60_000 }, async () => {
  const s = setup('writing');
  const h = s.start();
  await until('the open', () => h.status().state === 'ok');
  const now = Date.now();
  for (let k = 0; k < N; k++) h.recordClose(close(k, now), now);
  await until('the hand-over, journaled', () => h.status().records.pending === N && (h.status().journal?.batches ?? 0) > 0);
  assert.equal(h.status().records.written, 0);
  await h.stop(1); // the flush and checkpoint of a close take tens of ms
  assert.equal(s.warnings.length, 1, s.warnings.join('\n'));
  assert.match(s.warnings[0]!, /did not close within 1 ms \(still writing\).* 0 observation\(s\) it had not read are lost/);
  const again = await reopen(s, now);
  assert.equal(again.replayed, N, 'replayed from the journal');
  assert.deepEqual(again.totals, fed);
});

test('given the time, a stop while the database opens writes everything, with no warning', { timeout: 60_000 }, async () => {
  const s = setup('patient');
  const h = s.start();
  const now = Date.now();
  for (let k = 0; k < N; k++) h.recordClose(close(k, now), now);
  await h.stop();
  assert.deepEqual(s.warnings, []);
  const again = await reopen(s, now);
  assert.equal(again.replayed, 0, 'committed at the stop, not left to the journal');
  assert.deepEqual(again.totals, fed);
});
