// SPDX-License-Identifier: Apache-2.0
// A full disk under history: a small tmpfs the test mounts (and unmounts). History is fed
// through its real writer thread; the test fills the rest of the filesystem with a file of
// its own. Feeding never throws, status says `degraded` / `disk-full` while records wait in
// memory, and once the test frees the space everything fed is written, nothing twice. The
// same when the disk is already full when history starts.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, sh } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { History } from '../../daemon/src/history/history.js';
import { HistoryWriter } from '../../daemon/src/history/writer.js';
import type { FlowObservation, HistoryStatus } from '../../daemon/src/history/types.js';

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Fills the filesystem of `dir` with one file until ENOSPC; returns its path. */
function fillUp(dir: string): string {
  const file = path.join(dir, 'ballast');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x42);
  try {
    for (let size = chunk.length; size >= 512; size = size >> 1) {
      try {
        for (;;) fs.writeSync(fd, chunk, 0, size);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

let port = 20000;
function flow(i: number, now: number): FlowObservation {
  return {
    proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: port++ % 60000 + 1024, remoteAddr: `203.0.113.${i % 250}`, remotePort: 443,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 4242, comm: 'filler', uid: 0, exe: '/usr/bin/filler', cgroupId: null,
    firstMs: now - 10, lastMs: now, closedMs: now, txBytes: 1000 + i, rxBytes: 50_000 + i, txPackets: 5, rxPackets: 40,
  };
}

describe('history on a full disk', privileged({ timeout: 240_000 }), () => {
  let lab: Lab;
  const mounts: string[] = [];
  const histories: History[] = [];

  async function tmpfs(mb: number): Promise<string> {
    lab ??= await Lab.create();
    const dir = lab.tmpdir();
    await sh('mount', ['-t', 'tmpfs', '-o', `size=${mb}m,mode=0700`, 'tmpfs', dir]);
    mounts.push(dir);
    return dir;
  }

  after(async () => {
    for (const h of histories) await h.stop().catch(() => {});
    for (const m of mounts.reverse()) await sh('umount', [m], { allowFail: true });
    await lab?.destroy();
  });

  test('writes pause while the disk is full, feeding goes on, and everything is written once there is room', async () => {
    const mnt = await tmpfs(48);
    const dir = path.join(mnt, 'history');
    const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, retryMs: 300, statusMs: 100, detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 } });
    histories.push(h);
    await until('history open', () => h.status().state === 'ok');
    let fed = 0;
    let txFed = 0;
    const feed = (n: number) => {
      const now = Date.now();
      for (let k = 0; k < n; k++, fed++) {
        const f = flow(fed, now);
        txFed += f.txBytes;
        h.recordClose(f, now); // must never throw, full disk or not
      }
    };
    feed(2000);
    await h.flush();
    assert.equal(h.status().records.written, 2000);

    const ballast = fillUp(mnt);
    // Keep feeding until a write fails for lack of space (DuckDB may still have room in
    // blocks it allocated before).
    let st: HistoryStatus = h.status();
    for (let round = 0; round < 200 && st.state !== 'degraded'; round++) {
      feed(5000);
      await h.flush();
      st = h.status();
    }
    assert.equal(st.state, 'degraded', JSON.stringify(st));
    assert.equal(st.lastError?.code, 'disk-full', st.lastError?.message);
    assert.ok(st.records.pending > 0, 'records wait in memory');
    const waiting = fed;
    feed(3000); // still accepted
    await h.flush();
    assert.equal(h.status().state, 'degraded');

    fs.rmSync(ballast);
    await until('writing again', () => { const s = h.status(); return s.state === 'ok' && s.records.pending === 0; });
    const done = h.status();
    assert.equal(done.records.dropped, 0, 'the queue held everything');
    assert.equal(done.records.written, fed, `all ${fed} flows written (${waiting} fed before the space came back)`);
    const r = await h.query({ since: Date.now() - 3_600_000, until: Date.now() + 60_000, limit: 1, by: 'process' }, 'all');
    assert.deepEqual([r.totals.connections, r.totals.txBytes], [fed, txFed], 'each flow once, with its bytes');
    await h.stop();
    // The file is sound after all that.
    const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30 });
    await w.open();
    assert.deepEqual(w.status().movedAside, []);
    const again = await w.query({ since: Date.now() - 3_600_000, until: Date.now() + 60_000, limit: 1 }, 'all');
    assert.equal(again.matched, fed);
    await w.close();
  });

  test('a disk already full at start: status says so, and history opens once there is room', async () => {
    const mnt = await tmpfs(8);
    const ballast = fillUp(mnt);
    const h = History.start({ dir: path.join(mnt, 'history'), maxBytes: 1 << 30, retentionDays: 30, retryMs: 300, statusMs: 100 });
    histories.push(h);
    await until('an error in status', () => h.status().lastError !== null);
    const st = h.status();
    assert.notEqual(st.state, 'ok');
    assert.match(st.lastError!.message, /no space|disk|could not|cannot/i);
    fs.rmSync(ballast);
    await until('open after the space came back', () => h.status().state === 'ok');
    const now = Date.now();
    h.recordClose(flow(1, now), now);
    await h.flush();
    assert.equal(h.status().records.written, 1);
  });
});
