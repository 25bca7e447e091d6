// SPDX-License-Identifier: Apache-2.0
// A damaged database file: detected (at open, or by the query that reads a damaged block),
// reported in status, moved aside under a name that says so, and a new file started; the
// caller gets an error for that one query, never an exception out of the writer, and
// recording goes on in the new file.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HistoryWriter } from '../../../../daemon/src/history/writer.js';
import { ObservationPacker, OP } from '../../../../daemon/src/history/pack.js';
import { FILE_NAME } from '../../../../daemon/src/history/store.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';

const T0 = Date.UTC(2026, 10, 30, 14);

function flows(n: number, from: number, at: number): FlowObservation[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return {
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (i % 60000), remoteAddr: `203.0.${(i >> 8) & 255}.${i & 255}`, remotePort: 443,
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 7, comm: 'c', uid: 0, exe: null, cgroupId: null,
      firstMs: at - 5, lastMs: at + (i % 1000), closedMs: at + (i % 1000), txBytes: 100 + i, rxBytes: 200 + i, txPackets: 1, rxPackets: 1,
    };
  });
}

async function filled(n: number): Promise<{ dir: string; file: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-corrupt-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, now: () => T0, accountant: { detailPerSec: 1e9, detailBurst: 1e9 } });
  await w.open();
  const p = new ObservationPacker();
  for (let i = 0; i < n; i += 20_000) {
    for (const f of flows(Math.min(20_000, n - i), i, T0)) p.add(OP.close, f, T0);
    w.ingest(p.take()!);
    await w.flush();
  }
  await w.close();
  return { dir, file: path.join(dir, FILE_NAME) };
}

function damage(file: string, at: number, len: number): void {
  const fd = fs.openSync(file, 'r+');
  const junk = Buffer.alloc(len);
  for (let i = 0; i < len; i++) junk[i] = (i * 131 + 7) & 0xff;
  fs.writeSync(fd, junk, 0, len, at);
  fs.closeSync(fd);
}

async function reopenAndWrite(dir: string): Promise<HistoryWriter> {
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30, now: () => T0 + 3_600_000 });
  await w.open();
  return w;
}

async function checkNewFile(w: HistoryWriter, dir: string): Promise<void> {
  const st = w.status();
  assert.equal(st.state, 'ok');
  assert.equal(st.lastError?.code, 'corrupt');
  assert.equal(st.movedAside.length, 1);
  assert.match(st.movedAside[0]!.path, /history\.duckdb\.corrupt-/);
  assert.ok(fs.existsSync(st.movedAside[0]!.path), 'the damaged file is kept, under its new name');
  assert.ok(fs.existsSync(path.join(dir, FILE_NAME)), 'a new file');
  // Recording goes on in the new file.
  const p = new ObservationPacker();
  for (const f of flows(10, 1_000_000, T0 + 3_600_000)) p.add(OP.close, f, T0 + 3_600_000);
  w.ingest(p.take()!);
  await w.flush();
  const r = await w.query({ since: 0, until: T0 + 7_200_000, limit: 100 }, 'all');
  assert.equal(r.matched, 10, 'only what was written after the damage');
  assert.equal(r.totals.txBytes, flows(10, 1_000_000, 0).reduce((s, f) => s + f.txBytes, 0));
}

test('a file whose header is damaged is moved aside at open, and a new one started', async () => {
  const { dir, file } = await filled(1000);
  damage(file, 0, 8192);
  const w = await reopenAndWrite(dir);
  await checkNewFile(w, dir);
  await w.close();
});

test('damaged data blocks are found by the query that reads them: that query fails, the file is moved aside', async () => {
  const { dir, file } = await filled(200_000);
  const size = fs.statSync(file).size;
  for (const frac of [0.3, 0.5, 0.7, 0.9]) damage(file, Math.floor(size * frac), 64 * 1024);
  const w = await reopenAndWrite(dir);
  if (w.status().movedAside.length === 0) {
    // It opened (the damage is in data, not in the catalogue): reading the flows finds it.
    await assert.rejects(w.query({ since: 0, until: T0 + 7_200_000, limit: 10, by: 'remote' }, 'all'), (e: Error & { code?: string }) => e.code === 'corrupt');
  }
  await checkNewFile(w, dir);
  await w.close();
});
