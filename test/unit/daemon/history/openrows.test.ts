// SPDX-License-Identifier: Apache-2.0
// Open-flow state as the store keeps it (open_rows: a record's columns per open flow): what
// the accountant persisted across several write sets (rows replaced, forgotten, new) is what
// a reopened store restores, field by field; a first listing deletes nothing; and a schema-1
// file (one JSON text per open flow) is converted on open without losing a flow.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Accountant, RecordIds, openFlowOf, type OpenFlowRow, type WriteSet } from '../../../../daemon/src/history/accountant.js';
import { FILE_NAME, HistoryStore } from '../../../../daemon/src/history/store.js';
import type { FlowObservation } from '../../../../daemon/src/history/types.js';

const T0 = Date.UTC(2026, 11, 5, 3, 0, 0);

function tmp(tag: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-openrows-${tag}-`));
  after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function obs(i: number, tx: number, extra: Partial<FlowObservation> = {}): FlowObservation {
  const v6 = i % 3 === 0;
  return {
    proto: 'tcp', family: v6 ? 'ipv6' : 'ipv4', localAddr: v6 ? `fd00:198::${(i + 1).toString(16)}` : `198.18.${i >> 8}.${i & 255}`, localPort: 20_000 + i,
    remoteAddr: v6 ? 'fd00:198::ffff' : '198.19.0.1', remotePort: 443,
    interface: i % 2 ? 'veth1' : 'veth0', direction: i % 2 ? 'inbound' : 'outbound', attributedBy: i % 2 ? 'accept' : 'connect',
    pid: 1000 + (i % 7), comm: `proc${i % 7}`, uid: 1000 + (i % 2), exe: `/usr/bin/proc${i % 7}`, cgroupId: String(4000 + (i % 7)), unit: `p${i % 7}.service`,
    firstMs: T0 - 5000 - i, lastMs: T0, closedMs: null, txBytes: tx, rxBytes: 2 * tx, txPackets: tx >> 4, rxPackets: tx >> 3,
    remoteName: i % 4 === 0 ? `host${i}.example` : null, attrs: i % 5 === 0 ? JSON.stringify({ http: { host: `h${i}` } }) : null, ...extra,
  };
}

/** What a restore must give for the persisted rows: the last word per key, nulls gone. */
function expected(sets: WriteSet[]): OpenFlowRow[] {
  const m = new Map<string, OpenFlowRow | null>();
  for (const ws of sets) for (const [k, v] of ws.open) m.set(k, v && openFlowOf(v));
  return [...m.values()].filter((v): v is OpenFlowRow => v !== null).sort((a, b) => a.flow - b.flow);
}

/** A restored row in the terms the accountant persisted it: its first-seen is the flow's,
 * its counts the recorded ones (the store keeps nothing else of them). */
function norm(r: OpenFlowRow): unknown {
  const l = r.last;
  return {
    key: r.key, flow: r.flow, firstMs: r.firstMs, acc: r.acc,
    last: {
      proto: l.proto, family: l.family, localAddr: l.localAddr, localPort: l.localPort, remoteAddr: l.remoteAddr, remotePort: l.remotePort,
      interface: l.interface, direction: l.direction, attributedBy: l.attributedBy, pid: l.pid, comm: l.comm, uid: l.uid, exe: l.exe, cgroupId: l.cgroupId,
      unit: l.unit ?? null, firstMs: r.firstMs, lastMs: l.lastMs, closedMs: null, txBytes: r.acc.txBytes, rxBytes: r.acc.rxBytes, txPackets: r.acc.txPackets,
      rxPackets: r.acc.rxPackets, remoteName: l.remoteName ?? null, attrs: l.attrs ?? null,
    },
  };
}

test('open rows: replaced, forgotten and new rows over three write sets are restored exactly after a reopen', async () => {
  const dir = tmp('rt');
  let store = await HistoryStore.open({ dir, maxBytes: 1 << 30, retentionDays: 30 });
  const a = new Accountant(new RecordIds());
  const N = 300;
  // A first listing: every flow new, nothing to delete.
  for (let i = 0; i < N; i++) a.listed(obs(i, 100 + i), T0, T0 - 10, true);
  a.listed(obs(N, 50, { proto: 'icmpv6', family: 'ipv6', localAddr: 'fd00:198::1', remoteAddr: 'fd00:198::2', localPort: null, remotePort: null, pid: null, comm: null, uid: null, exe: null, cgroupId: null, unit: null }), T0, T0 - 10, true);
  a.endListing(T0 - 10, T0, true);
  const s1 = a.drain();
  assert.equal(s1.open.size, N + 1);
  assert.deepEqual(s1.forget, [], 'a first listing of new flows deletes nothing');
  await store.write(s1);
  // An incremental listing: a third grew (their rows replaced), a close for some, new flows.
  const t1 = T0 + 60_000;
  for (let i = 0; i < N; i += 3) a.listed(obs(i, 500 + i, { lastMs: t1 }), t1, t1 - 10, false);
  for (let i = 1; i < N; i += 10) a.close(obs(i, 900, { closedMs: t1 + 5, lastMs: t1 + 5 }), t1 + 5);
  for (let i = N + 1; i < N + 21; i++) a.listed(obs(i, 7, { lastMs: t1 }), t1, t1 - 10, false);
  a.endListing(t1 - 10, t1, false);
  const s2 = a.drain();
  const grew = Math.ceil(N / 3);
  const closedN = Math.ceil((N - 1) / 10);
  assert.equal(s2.forget.length, grew + closedN, 'each grown or closed flow replaces or forgets its persisted row once');
  await store.write(s2);
  // A flow gone from the table, one closing after it grew in this very set.
  const t2 = t1 + 60_000;
  a.leftTable(`tcp 198.18.0.2 20002 198.19.0.1 443`, t2, t2);
  a.listed(obs(4, 2000, { lastMs: t2 }), t2, t2 - 10, false);
  a.close(obs(4, 2100, { closedMs: t2 + 1, lastMs: t2 + 1 }), t2 + 1);
  const s3 = a.drain();
  await store.write(s3);
  const want = expected([s1, s2, s3]);
  assert.equal(want.length, N + 1 + 20 - closedN - 2);
  store.close();
  store = await HistoryStore.open({ dir, maxBytes: 1 << 30, retentionDays: 30 });
  const got = (await store.restoreState()).open;
  assert.equal(got.length, want.length, 'as many open flows as the accountant left persisted');
  assert.deepEqual(got.map(norm), want.map(norm));
  // And compaction (which rewrites the table) keeps them.
  await store.compact();
  assert.deepEqual((await store.restoreState()).open.map(norm), want.map(norm));
  store.close();
});

test('open rows: a schema-1 file (a JSON text per open flow) is converted on open', async () => {
  const dir = tmp('v1');
  const rows: OpenFlowRow[] = [0, 1, 2, 3, 4, 5].map((i) => {
    const last = obs(i, 10 * (i + 1));
    return { key: `${last.proto} ${last.localAddr} ${last.localPort} ${last.remoteAddr} ${last.remotePort}`, flow: (T0 + i) * 1024, firstMs: last.firstMs, acc: { txBytes: last.txBytes, rxBytes: last.rxBytes, txPackets: last.txPackets, rxPackets: last.rxPackets }, last };
  });
  // The file as schema 1 wrote it (the DDL and the JSON text of that version).
  const inst = await DuckDBInstance.create(path.join(dir, FILE_NAME));
  const c = await inst.connect();
  await c.run(`CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
   CREATE TABLE procs (id INTEGER NOT NULL, pid UINTEGER, comm VARCHAR, uid UINTEGER, exe VARCHAR, cgroup_id VARCHAR, unit VARCHAR);
   CREATE TABLE open_flows (key VARCHAR NOT NULL, flow BIGINT NOT NULL, first_ms BIGINT NOT NULL, state VARCHAR NOT NULL);
   CREATE TABLE labels (id USMALLINT NOT NULL, name VARCHAR NOT NULL);
   INSERT INTO meta VALUES ('schema_version', '1');
   INSERT INTO procs VALUES (1, 1000, 'proc0', 1000, '/usr/bin/proc0', '4000', 'p0.service');
   INSERT INTO labels VALUES (0, 'veth0');`);
  for (const r of rows) await c.run('INSERT INTO open_flows VALUES ($1, $2, $3, $4)', [r.key, BigInt(r.flow), BigInt(r.firstMs), JSON.stringify(r)]);
  c.closeSync();
  inst.closeSync();

  const store = await HistoryStore.open({ dir, maxBytes: 1 << 30, retentionDays: 30 });
  const got = (await store.restoreState()).open;
  assert.deepEqual(got.map(norm), rows.map(norm), 'every open flow of the old file, field by field');
  store.close();
  const check = await DuckDBInstance.create(path.join(dir, FILE_NAME));
  const cc = await check.connect();
  const t = (await cc.runAndReadAll(`SELECT table_name AS t FROM information_schema.tables WHERE table_name LIKE 'open%' ORDER BY 1`)).getRowObjects().map((r) => r.t);
  const procs = (await cc.runAndReadAll('SELECT count(*)::INTEGER AS n FROM procs')).getRowObjects()[0]!.n;
  const v = (await cc.runAndReadAll(`SELECT value FROM meta WHERE key = 'schema_version'`)).getRowObjects()[0]!.value;
  cc.closeSync();
  check.closeSync();
  assert.deepEqual(t, ['open_rows'], 'the JSON table is gone');
  assert.equal(procs, 6, "the file's one process (the first flow's owner) reused, the five other owners added");
  assert.equal(v, '2');
});
