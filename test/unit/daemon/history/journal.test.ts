// SPDX-License-Identifier: Apache-2.0
// The writer's journal (journal.ts) against what the test fed:
// - a kill -9 after a commit and after more batches were journaled but not committed loses
//   nothing the writer took, counts nothing twice; replaying a journal whose batches were
//   committed but whose files were not deleted yet (a crash right after the replay's commit)
//   counts nothing twice: replay twice = replay once;
// - a torn tail (a write cut short by the kill) and a damaged record (a flipped byte) are
//   dropped and counted in status, the rest replayed;
// - a query sees flows handed over but not yet committed (History, the real thread).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HistoryWriter } from '../../../../daemon/src/history/writer.js';
import { History } from '../../../../daemon/src/history/history.js';
import { ROW } from '../../../../daemon/src/history/pack.js';

const CHILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../helpers/history-journal-writer.js');
const N = 3000;
const BATCH = 100;
const COMMIT_AT = 1000;

/** Sums of flows [0, k): flow i sent i + 1000 bytes and received 2i + 500. */
const expected = (k: number) => ({ txBytes: k * 1000 + (k * (k - 1)) / 2, rxBytes: k * 500 + k * (k - 1), txPackets: 3 * k, rxPackets: 4 * k, connections: k });
/** Sums of flows [a, b). */
const range = (a: number, b: number) => {
  const x = expected(b);
  const y = expected(a);
  return { txBytes: x.txBytes - y.txBytes, rxBytes: x.rxBytes - y.rxBytes, txPackets: x.txPackets - y.txPackets, rxPackets: x.rxPackets - y.rxPackets, connections: b - a };
};

async function feedAndKill(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-journal-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [CHILD, dir, String(N), String(BATCH), String(COMMIT_AT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  after(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (buf += d));
  const t0 = Date.now();
  while (!buf.includes('"done"')) {
    if (Date.now() - t0 > 60_000) throw new Error(`child did not finish: ${buf}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const lines = buf.trim().split('\n').map((l) => JSON.parse(l) as { event: string; fed: number; written?: number; status?: { records: { written: number } } });
  assert.equal(lines.find((l) => l.event === 'committed')?.written, COMMIT_AT, 'the child committed the first flows');
  assert.equal(lines.at(-1)!.status!.records.written, COMMIT_AT, 'and nothing after them: the rest is only in the journal');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return dir;
}

async function totals(dir: string): Promise<{ t: object; byProcess: object; ports: number[]; st: ReturnType<HistoryWriter['status']> }> {
  const w = new HistoryWriter({ dir, maxBytes: 1 << 30, retentionDays: 30 });
  await w.open();
  const st = w.status();
  const r = await w.query({ since: 0, until: Date.now() + 60_000, limit: 10_000 }, 'all');
  const m = await w.query({ since: 0, until: Date.now() + 60_000, limit: 10, by: 'process' }, 'all');
  await w.close();
  return { t: r.totals, byProcess: m.totals, ports: r.flows!.map((f) => f.localPort!).sort((a, b) => a - b), st };
}

const journals = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('journal-')).sort();

test('kill -9 between journal append and commit: nothing the writer took is lost, nothing counted twice; replay twice = once', { timeout: 120_000 }, async () => {
  const dir = await feedAndKill();
  const left = journals(dir);
  assert.ok(left.length >= 1, 'the killed writer left its journal');
  const saved = path.join(dir, 'saved');
  fs.mkdirSync(saved);
  for (const f of left) fs.copyFileSync(path.join(dir, f), path.join(saved, f));

  const a = await totals(dir);
  assert.deepEqual(a.t, expected(N), 'every flow the writer took, once');
  assert.deepEqual(a.byProcess, a.t, 'per-minute totals add up to the records');
  assert.deepEqual(a.ports, Array.from({ length: N }, (_, i) => 1024 + i), 'each flow once, none missing');
  assert.equal(a.st.journal!.replayed.batches, (N - COMMIT_AT) / BATCH, 'only the batches after the commit were replayed');
  assert.equal(a.st.journal!.replayed.damaged, 0);
  assert.deepEqual(journals(dir), [], 'a clean close leaves no journal');

  // A crash right after the replay's commit, before its files were deleted: they are back.
  for (const f of left) fs.copyFileSync(path.join(saved, f), path.join(dir, f));
  const b = await totals(dir);
  assert.deepEqual(b.t, expected(N), 'replayed twice: the same totals (committed batches are skipped)');
  assert.equal(b.st.journal!.replayed.batches, 0, 'nothing replayed the second time');
});

test('a torn tail and a damaged record are dropped and counted; the rest is replayed', { timeout: 120_000 }, async () => {
  const dir = await feedAndKill();
  const files = journals(dir);
  const last = path.join(dir, files.at(-1)!);
  const size = fs.statSync(last).size;
  // The last batch's record: header (16) + meta (32) + its strings + 100 rows. Cut it in
  // its rows, as a write cut short by the kill would.
  fs.truncateSync(last, size - 40 * ROW);
  const torn = await totals(dir);
  assert.deepEqual(torn.t, expected(N - BATCH), 'all but the torn batch');
  assert.equal(torn.st.journal!.replayed.damaged, 1, 'the torn record is counted');
  assert.ok(torn.st.journal!.replayed.droppedBytes > 0 && torn.st.journal!.replayed.droppedBytes < ROW * BATCH, `dropped bytes: ${torn.st.journal!.replayed.droppedBytes}`);
  assert.equal(torn.st.lastError?.code, 'corrupt');
  assert.match(torn.st.lastError!.message, /journal/);
  assert.equal(torn.st.state, 'ok', 'history carries on');

  // A flipped byte in the middle of a file: the CRC finds it; that record and the rest of
  // its file are dropped, counted.
  const dir2 = await feedAndKill();
  const f2 = path.join(dir2, journals(dir2).at(-1)!);
  const buf = fs.readFileSync(f2);
  // Records of the file in order; damage the 6th batch record's rows.
  const offs: number[] = [];
  for (let off = 0; off < buf.byteLength; off += 16 + buf.readUInt32LE(off + 8)) offs.push(off);
  const batchRecords = offs.filter((o) => buf.readUInt32LE(o + 4) === 2);
  assert.equal(batchRecords.length, (N - COMMIT_AT) / BATCH, 'one record per batch after the commit');
  const bad = batchRecords[5]!;
  const at = bad + 16 + 40 + 10 * ROW;
  buf[at] = buf[at]! ^ 0xff;
  fs.writeFileSync(f2, buf);
  const damaged = await totals(dir2);
  // Batches 0-4 after the commit replay; the 6th and those after it in the file are dropped.
  assert.deepEqual(damaged.t, expected(COMMIT_AT + 5 * BATCH), 'up to the damaged record');
  assert.equal(damaged.st.journal!.replayed.damaged, 1);
  assert.equal(damaged.st.journal!.replayed.droppedBytes, buf.byteLength - bad);
  assert.deepEqual(range(0, COMMIT_AT + 5 * BATCH), damaged.t);
});

test('a query sees flows handed over and not yet committed', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-journal-q-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, flushMs: 50, commitIntervalMs: 3_600_000, detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 } });
  after(() => h.stop());
  while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 10));
  const now = Date.now();
  for (let k = 0; k < 500; k++) {
    h.recordClose({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + k, remoteAddr: '198.18.0.2', remotePort: 443,
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 77, comm: 'q', uid: 0, exe: null, cgroupId: null,
      firstMs: now - 3, lastMs: now, closedMs: now, txBytes: k + 1000, rxBytes: 2 * k + 500, txPackets: 3, rxPackets: 4,
    }, now);
  }
  // Handed over (several hand-overs of 50 ms), journaled, not committed.
  const t0 = Date.now();
  while ((h.status().journal?.batches ?? 0) === 0 || h.status().records.pending !== 500) {
    if (Date.now() - t0 > 20_000) throw new Error(`not handed over: ${JSON.stringify(h.status())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(h.status().records.written, 0, 'nothing committed yet');
  const r = await h.query({ since: now - 120_000, until: now + 120_000, limit: 10_000 }, 'all');
  assert.deepEqual(r.totals, expected(500), 'the query saw every flow handed over');
});

test('records.pending counts records of flows, not the marker a listing ends with', { timeout: 60_000 }, async () => {
  // A listing every second left its end marker in the packer until the next hand-over, and
  // status showed one record pending after every listing: a test waiting for none pending
  // right after a listing waited 9-77 s for a hand-over to land in between.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-journal-marker-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, flushMs: 3_600_000, commitIntervalMs: 3_600_000 });
  after(() => h.stop());
  while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 10));
  const now = Date.now();
  h.recordListing([], now - 5, now);
  assert.equal(h.status().records.pending, 0, 'an empty listing: nothing pending');
  h.recordListing([{
    proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 4000, remoteAddr: '198.18.0.2', remotePort: 443,
    interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 77, comm: 'q', uid: 0, exe: null, cgroupId: null,
    firstMs: now - 3, lastMs: now, closedMs: null, txBytes: 100, rxBytes: 200, txPackets: 1, rxPackets: 2,
  }], now - 2, now);
  assert.equal(h.status().records.pending, 1, 'a listing of one flow: that flow');
});

test('history.journalSync: every append and every new file are flushed to the disk; off: none is', async () => {
  const { Journal } = await import('../../../../daemon/src/history/journal.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-journal-sync-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // What the journal asks of the kernel, seen from outside the class: the path behind
  // every fd it flushes (fdatasync for data, fsync for the directory's entries).
  const flushed: string[] = [];
  const real = { fdatasyncSync: fs.fdatasyncSync, fsyncSync: fs.fsyncSync };
  const spy = (name: 'fdatasyncSync' | 'fsyncSync') => (fd: number) => {
    flushed.push(`${name === 'fdatasyncSync' ? 'data' : 'sync'} ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    real[name](fd);
  };
  fs.fdatasyncSync = spy('fdatasyncSync');
  fs.fsyncSync = spy('fsyncSync');
  after(() => Object.assign(fs, real));
  const batch = (n: number) => ({ rows: new ArrayBuffer(ROW * n), count: n, strings: ['x'], firstString: 1, reset: false, sentAt: Date.now() });
  for (const sync of [true, false]) {
    flushed.length = 0;
    const sub = path.join(dir, String(sync));
    fs.mkdirSync(sub);
    const j = new Journal(sub, sync);
    j.rotate(1, ['']);
    for (let s = 1; s <= 3; s++) j.append(s, batch(s));
    j.rotate(4, ['', 'x']);
    j.append(4, batch(1));
    j.close();
    const files = fs.readdirSync(sub).sort().map((f) => path.join(sub, f));
    assert.equal(files.length, 2, 'two journal files');
    if (!sync) {
      assert.deepEqual(flushed, [], 'journalSync false: nothing flushed');
      assert.equal(j.syncs, 0);
      continue;
    }
    assert.deepEqual(flushed, [`sync ${sub}`, `data ${files[0]}`, `data ${files[0]}`, `data ${files[0]}`, `sync ${sub}`, `data ${files[1]}`],
      'each new file: its directory; each append: its file');
    assert.equal(j.syncs, 6);
  }
});

test('status.writerHeapBytes is the writer thread\'s heap: it grows with the flows the writer tracks, not with the event loop\'s', { timeout: 60_000 }, async () => {
  const v8 = await import('node:v8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-heap-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, flushMs: 50, statusMs: 100, commitIntervalMs: 3_600_000, detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 } });
  after(() => h.stop());
  while (h.status().state !== 'ok' || h.status().writerHeapBytes === undefined) await new Promise((r) => setTimeout(r, 10));
  const heap0 = h.status().writerHeapBytes!;
  // The event loop's heap grows by far more than the writer's (a few hundred bytes per tracked flow)
  // and must not show.
  const main0 = v8.getHeapStatistics().used_heap_size;
  const ballast = Array.from({ length: 6_000_000 }, (_, i) => ({ i }));
  const mainGrew = v8.getHeapStatistics().used_heap_size - main0;
  const N = 30_000;
  const now = Date.now();
  for (let k = 0; k < N; k++) {
    h.recordClose({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + (k % 60000), remoteAddr: `198.18.${k >> 8 & 255}.${k & 255}`, remotePort: 443,
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 77, comm: 'q', uid: 0, exe: null, cgroupId: null,
      firstMs: now - 3, lastMs: now, closedMs: now, txBytes: k, rxBytes: k, txPackets: 1, rxPackets: 1,
    }, now);
  }
  const t0 = Date.now();
  while (h.status().openFlowsTracked < N) {
    if (Date.now() - t0 > 30_000) throw new Error(`not tracked: ${JSON.stringify(h.status())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 300)); // a status after the last batch
  const grew = h.status().writerHeapBytes! - heap0;
  assert.ok(grew > N * 50, `the writer's heap grew by ${grew} bytes for ${N} tracked flows`);
  assert.ok(grew < mainGrew / 2, `not by the event loop's ballast (${grew} bytes; the event loop's heap grew by ${mainGrew} for ${ballast.length} objects)`);
});

test('the writer thread collects its heap after a large write set (V8\'s gc() reached it): status.writerCollections', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-history-gc-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A lower threshold than the daemon's 50,000 rows: 2,000 closes in detail make 2,000 rows.
  const h = History.start({ dir, maxBytes: 1 << 30, retentionDays: 30, flushMs: 50, statusMs: 100, commitIntervalMs: 3_600_000, detailFlowsPerSec: 1e9, accountant: { detailBurst: 1e9 }, collectAfterRows: 1000 });
  after(() => h.stop());
  while (h.status().state !== 'ok') await new Promise((r) => setTimeout(r, 10));
  assert.equal(h.status().writerCollections, 0);
  const now = Date.now();
  for (let k = 0; k < 2000; k++) {
    h.recordClose({
      proto: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 1024 + k, remoteAddr: '198.18.0.2', remotePort: 443,
      interface: 'veth0', direction: 'outbound', attributedBy: 'connect', pid: 77, comm: 'q', uid: 0, exe: null, cgroupId: null,
      firstMs: now - 3, lastMs: now, closedMs: now, txBytes: k, rxBytes: k, txPackets: 1, rxPackets: 1,
    }, now);
  }
  await h.flush();
  const t0 = Date.now();
  while ((h.status().writerCollections ?? 0) < 2) {
    if (Date.now() - t0 > 10_000) throw new Error(`no collections: ${JSON.stringify(h.status())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(h.status().records.written, 2000);
});
