// SPDX-License-Identifier: Apache-2.0
// The history database: one DuckDB file (docs/history.md says why DuckDB, with the figures
// of bench/history). Tables:
//   r<N>        partition N of the flow log, one row per flow record (accountant.ts): a
//               closed short flow is one row, a long one a row per listing in which it grew.
//               Rows are appended in id order (time * 1024 + n), so DuckDB's per-row-group
//               min/max of `id` turns a time window into a scan of that window only
//   m<N>        per-process, per-minute totals of partition N's records (the records summed
//               by minute and process as they are written; compacted by rewriting)
//   procs       the processes records and minutes point to (pid, comm, uid, exe, cgroup, unit)
//   open_rows   flows still open and what is already recorded of them (the accountant's
//               state), written in the same transaction as the records, as records are:
//               a record's columns, filled from typed arrays (schema 1 kept a JSON text per
//               flow in open_flows: with a first listing of 100,000 flows that text, and the
//               list of keys its delete took, held about 250 MB of the daemon's memory)
//   meta        schema version and bookkeeping
// Why partitions: DuckDB does not give back the space of deleted rows (measured: deleting
// half of a table's rows freed no block), but a dropped table's blocks are reused at once.
// So retention drops whole partitions: the oldest r<N> first when the size limit bites
// (its m<N> stays: per-minute totals are small and cover the whole retention period), both
// when they are older than the retention period. A partition holds one UTC day at most, and
// at most `partitionRows` records. Tables that are rewritten (m<N> at compaction,
// open_rows, procs) are rewritten whole, for the same reason.
// All writes of one batch are one transaction: a crash keeps or loses the batch whole.
// Schema changes go in MIGRATIONS (append only; `ALTER TABLE ... ADD COLUMN` keeps old
// files readable), and record/minute columns in RECORDS_DDL/MINUTES_DDL plus a migration
// that alters every existing partition.
import fs from 'node:fs';
import path from 'node:path';
import {
  BIGINT, DuckDBInstance, INTEGER, UBIGINT, UHUGEINT, UINTEGER, USMALLINT, UTINYINT, VARCHAR,
  type DuckDBConnection, type DuckDBType, type DuckDBValue,
} from '@duckdb/node-api';
import { PROTO_NAMES, openFlowOf, openRow, type OpenFlowRow, type WriteSet } from './accountant.js';
import { cidrRange, fromStored, toStored } from './addr.js';
import { CHUNK_ROWS, ColumnBuf, makeChunk, setU128 } from './chunk.js';
import {
  ID_SHIFT, RECORD_KIND, RECORD_KIND_NAMES, type FlowRecord, type HistoryFlow, type HistoryGroup, type HistoryQuery, type HistoryResult, type HistoryScope,
  type HistoryTotals, type RecordKind,
} from './types.js';
import { yieldTurn } from '../util/turn.js';

export const FILE_NAME = 'history.duckdb';
const MINUTE_IDS = 60_000 * ID_SHIFT;

export const RECORDS_DDL = (t: string) => `CREATE TABLE ${t} (
  id BIGINT NOT NULL, flow BIGINT NOT NULL, kind UTINYINT NOT NULL, conns UINTEGER NOT NULL, proc INTEGER,
  proto UTINYINT NOT NULL, family UTINYINT NOT NULL, laddr4 UINTEGER, laddr6 UHUGEINT, lport USMALLINT, raddr4 UINTEGER, raddr6 UHUGEINT, rport USMALLINT,
  iface USMALLINT, direction USMALLINT, attributed_by USMALLINT, first_ms BIGINT NOT NULL, end_ms BIGINT,
  tx_bytes UBIGINT NOT NULL, rx_bytes UBIGINT NOT NULL, tx_packets UBIGINT NOT NULL, rx_packets UBIGINT NOT NULL,
  remote_name VARCHAR, attrs VARCHAR)`;
export const MINUTES_DDL = (t: string) => `CREATE TABLE ${t} (minute INTEGER NOT NULL, proc INTEGER, tx_bytes UBIGINT NOT NULL, rx_bytes UBIGINT NOT NULL,
  tx_packets UBIGINT NOT NULL, rx_packets UBIGINT NOT NULL, conns UBIGINT NOT NULL)`;

/** Append-only: entry i brings a file from schema version i to i + 1 (SQL, then for some
 * a step in code: migrateStep()). */
const MIGRATIONS: string[] = [
  `CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
   CREATE TABLE procs (id INTEGER NOT NULL, pid UINTEGER, comm VARCHAR, uid UINTEGER, exe VARCHAR, cgroup_id VARCHAR, unit VARCHAR);
   CREATE TABLE open_flows (key VARCHAR NOT NULL, flow BIGINT NOT NULL, first_ms BIGINT NOT NULL, state VARCHAR NOT NULL);
   CREATE TABLE labels (id USMALLINT NOT NULL, name VARCHAR NOT NULL);`,
  // open_flows' JSON rows become open_rows' columns (migrateStep converts them).
  RECORDS_DDL('open_rows'),
];

/** A partition: r<n> (records, unless dropped by the size limit) and m<n> (minutes). */
interface Part {
  n: number;
  /** Record id range (minutes-only partitions: from their minutes); Infinity/-Infinity when empty. */
  firstId: number;
  lastId: number;
  records: number;
  hasRecords: boolean;
  /** m<n> has rows not yet merged into one per (minute, process). */
  dirty: boolean;
}

/** Bytes per value of each RECORD_TYPES column (chunk.ts). */
const RECORD_WIDTHS: Array<1 | 2 | 4 | 8 | 16 | 'varchar'> = [8, 8, 1, 4, 4, 1, 1, 4, 16, 2, 4, 16, 2, 2, 2, 2, 8, 8, 8, 8, 8, 8, 'varchar', 'varchar'];

const RECORD_TYPES: DuckDBType[] = [
  BIGINT, BIGINT, UTINYINT, UINTEGER, INTEGER, UTINYINT, UTINYINT, UINTEGER, UHUGEINT, USMALLINT, UINTEGER, UHUGEINT, USMALLINT, USMALLINT, USMALLINT, USMALLINT,
  BIGINT, BIGINT, UBIGINT, UBIGINT, UBIGINT, UBIGINT, VARCHAR, VARCHAR,
];

/** MINUTES_DDL's columns, for data chunks. */
const MINUTE_TYPES: DuckDBType[] = [INTEGER, INTEGER, UBIGINT, UBIGINT, UBIGINT, UBIGINT, UBIGINT];

export interface StoreOptions {
  dir: string;
  /** maxBytes and retentionDays are read at every enforceRetention() (a reload may change them). */
  maxBytes: number;
  retentionDays: number;
  /** DuckDB worker threads (queries); 1 keeps a daemon's footprint small. */
  threads?: number;
  memoryLimit?: string;
  /** Records per partition at most (default: about maxBytes / 1000 records, 10k to 1M). */
  partitionRows?: number;
}

/** Partitions of about a thousandth of the size limit (at ~20-40 bytes a record): dropping
 * one frees a few percent of the budget. */
export function defaultPartitionRows(maxBytes: number): number {
  return Math.max(10_000, Math.min(1_000_000, Math.floor(maxBytes / 1000)));
}

/** Why a database call failed, as status reports it. */
export type StoreErrorCode = 'disk-full' | 'corrupt' | 'io' | 'open' | 'internal';

export class StoreError extends Error {
  constructor(readonly code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/** DuckDB's errors carry no code: classify by message (the texts are DuckDB's own:
 * "No space left on device", "Corrupt database file", "database has been invalidated"). */
/** DuckDB gives up on a database after a fatal error (a checkpoint that hit a full disk):
 * every later call on that instance fails. Only a new instance (reopening the file, which
 * replays its WAL) recovers. */
export function isInvalidated(err: unknown): boolean {
  return /database has been invalidated|must be restarted prior to being used/i.test(err instanceof Error ? err.message : String(err));
}

export function classify(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const code: StoreErrorCode = /no space left|ENOSPC|disk quota|EDQUOT|could not write file|not enough space/i.test(msg)
    ? 'disk-full'
    : /corrupt|checksum|not a valid duckdb|invalid magic|unable to open|is not a duckdb|serialization|Failed to read|database file.*(invalid|too small)|reached the end of the file/i.test(msg)
      ? 'corrupt'
      : /IO Error|I\/O|EIO|permission denied|EACCES|EROFS|read-only/i.test(msg)
        ? 'io'
        : 'internal';
  return new StoreError(code, msg, { cause: err });
}

const n = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : v === null || v === undefined ? 0 : Number(v));
const iso = (ms: number): string => new Date(ms).toISOString();

/** Glob -> SQL GLOB pattern (the same syntax: * ? [...]). */
const isGlob = (s: string): boolean => /[*?[]/.test(s);

interface SqlPart {
  sql: string;
  args: DuckDBValue[];
}

export class HistoryStore {
  /** proc key -> procs.id */
  private procIds = new Map<string, number>();
  /** The last process each pid had here, with its id. A pid's records are mostly of the
   * process its previous record had, so procIdsOf() first compares six fields (the writer's
   * strings are the same objects) instead of joining a key and hashing it (about 2 us a
   * record in the writer thread's CPU profile at 10k closes/s). Cleared with procIds. */
  private lastProc = new Map<number, ProcMemo>();
  private nextProc = 1;
  /** Interface names, directions, attributions: small vocabularies stored as numbers. */
  private labelIds = new Map<string, number>();
  private labelNames: string[] = [];
  /** Partitions, oldest first; the last one takes new records. */
  private parts: Part[] = [];
  /** Records older than this were removed by the size limit (0: none were). */
  private trimmedUntil = 0;
  private readonly partitionRows: number;
  /** The chunk being filled, reused from batch to batch (appendRecords). */
  private readonly cols = RECORD_WIDTHS.map((w) => new ColumnBuf(w));
  private readonly minuteCols = MINUTE_TYPES.map((_, i) => new ColumnBuf(i < 2 ? 4 : 8));

  private constructor(
    readonly file: string,
    private readonly inst: DuckDBInstance,
    private readonly c: DuckDBConnection,
    readonly opts: StoreOptions,
  ) {
    this.partitionRows = opts.partitionRows ?? defaultPartitionRows(opts.maxBytes);
  }

  /** Opens (creating or migrating) the database in `opts.dir`. A file that cannot be read
   * as a database is a StoreError 'corrupt': the caller moves it aside (moveAside). */
  static async open(opts: StoreOptions): Promise<HistoryStore> {
    try {
      fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new StoreError('open', `cannot create ${opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    const file = path.join(opts.dir, FILE_NAME);
    let inst: DuckDBInstance;
    try {
      // A daemon's store must not take 80% of RAM or every core (DuckDB's defaults).
      inst = await DuckDBInstance.create(file, { threads: String(opts.threads ?? 1), memory_limit: opts.memoryLimit ?? '256MB' });
    } catch (err) {
      const e = classify(err);
      throw e.code === 'internal' ? new StoreError('corrupt', e.message, { cause: err }) : e;
    }
    let c: DuckDBConnection | undefined;
    try {
      c = await inst.connect();
      const s = new HistoryStore(file, inst, c, opts);
      await s.migrate();
      await s.load();
      return s;
    } catch (err) {
      try {
        c?.closeSync();
        inst.closeSync();
      } catch {
        /* already failing */
      }
      throw classify(err);
    }
  }

  /** Moves a damaged database (and its WAL) aside, as `history.duckdb.corrupt-<time>`;
   * returns the new path. */
  static moveAside(dir: string, now: number): string {
    const file = path.join(dir, FILE_NAME);
    const to = `${file}.corrupt-${iso(now).replace(/[:.]/g, '-')}`;
    fs.renameSync(file, to);
    if (fs.existsSync(`${file}.wal`)) fs.renameSync(`${file}.wal`, `${to}.wal`);
    return to;
  }

  private async migrate(): Promise<void> {
    const has = await this.rows(`SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'meta'`);
    let version = 0;
    if (n(has[0]!.n) > 0) {
      const v = await this.rows(`SELECT value FROM meta WHERE key = 'schema_version'`);
      version = v.length ? Number(v[0]!.value) : 0;
    }
    if (version > MIGRATIONS.length) throw new StoreError('open', `${this.file} has schema version ${version}, newer than this ebpfmon (${MIGRATIONS.length}): refusing to touch it`);
    for (let v = version; v < MIGRATIONS.length; v++) {
      await this.c.run('BEGIN');
      try {
        await this.c.run(MIGRATIONS[v]!);
        await this.migrateStep(v);
        await this.c.run(`INSERT OR REPLACE INTO meta VALUES ('schema_version', '${v + 1}')`);
        if (v === 0) await this.c.run(`INSERT OR REPLACE INTO meta VALUES ('created_at', '${iso(Date.now())}')`);
        await this.c.run('COMMIT');
      } catch (err) {
        await this.c.run('ROLLBACK').catch(() => {});
        throw err;
      }
    }
  }

  /** What a migration does beyond its SQL, in its transaction. */
  private async migrateStep(v: number): Promise<void> {
    if (v !== 1) return;
    // Schema 1's open flows, one JSON text each, into open_rows.
    await this.loadProcs();
    await this.loadLabels();
    const rows = (await this.rows('SELECT state FROM open_flows')).map((r) => {
      const u = JSON.parse(r.state as string) as OpenFlowRow;
      return openRow(u.flow, u.firstMs, u.acc, u.last);
    });
    const newProcs: Array<[number, FlowRecord]> = [];
    const fresh: Array<[number, string]> = [];
    const procOf = this.procIdsOf(rows, newProcs);
    await this.appendProcs(newProcs);
    await this.appendRecords('open_rows', rows, procOf, fresh);
    await this.appendLabels(fresh);
    await this.c.run('DROP TABLE open_flows');
  }

  private async load(): Promise<void> {
    await this.loadProcs();
    await this.loadLabels();
    for (const r of await this.rows(`SELECT value FROM meta WHERE key = 'records_trimmed_until'`)) this.trimmedUntil = Number(r.value);
    const tables = await this.rows(`SELECT table_name AS t FROM information_schema.tables WHERE regexp_matches(table_name, '^[rm][0-9]+$')`);
    const byN = new Map<number, Part>();
    const part = (k: number) => {
      let p = byN.get(k);
      if (!p) byN.set(k, (p = { n: k, firstId: Infinity, lastId: -Infinity, records: 0, hasRecords: false, dirty: true }));
      return p;
    };
    // Records first: a partition's bounds are its records' when it has any.
    for (const { t } of tables.sort((a, b) => String(b.t).localeCompare(String(a.t)))) {
      const name = t as string;
      const p = part(Number(name.slice(1)));
      if (name[0] === 'r') {
        const x = (await this.rows(`SELECT min(id) AS lo, max(id) AS hi, count(*) AS c FROM ${name}`))[0]!;
        p.hasRecords = true;
        p.records = n(x.c);
        if (x.lo !== null) {
          p.firstId = Math.min(p.firstId, n(x.lo));
          p.lastId = Math.max(p.lastId, n(x.hi));
        }
      } else if (!p.hasRecords) {
        const x = (await this.rows(`SELECT min(minute) AS lo, max(minute) AS hi FROM ${name}`))[0]!;
        if (x.lo !== null) {
          p.firstId = n(x.lo) * MINUTE_IDS;
          p.lastId = n(x.hi) * MINUTE_IDS;
        }
      }
    }
    this.parts = [...byN.values()].sort((a, b) => a.n - b.n);
    const cur = this.parts.at(-1);
    if (!cur || !cur.hasRecords) await this.newPart();
  }

  private async loadLabels(): Promise<void> {
    this.labelIds.clear();
    this.labelNames = [];
    for (const r of await this.rows('SELECT id, name FROM labels')) {
      this.labelIds.set(r.name as string, n(r.id));
      this.labelNames[n(r.id)] = r.name as string;
    }
  }

  private label(name: string | null, fresh: Array<[number, string]>): number | null {
    if (name === null) return null;
    let id = this.labelIds.get(name);
    if (id === undefined) {
      id = this.labelNames.length;
      this.labelIds.set(name, id);
      this.labelNames[id] = name;
      fresh.push([id, name]);
    }
    return id;
  }

  private labelName(id: unknown): string | null {
    return id === null || id === undefined ? null : (this.labelNames[n(id)] ?? null);
  }

  private async loadProcs(): Promise<void> {
    this.procIds.clear();
    this.lastProc.clear();
    for (const r of await this.rows('SELECT id, pid, comm, uid, exe, cgroup_id, unit FROM procs')) {
      this.procIds.set(procKey(r.pid === null ? null : n(r.pid), r.comm as string | null, r.uid === null ? null : n(r.uid), r.exe as string | null, r.cgroup_id as string | null, r.unit as string | null), n(r.id));
      this.nextProc = Math.max(this.nextProc, n(r.id) + 1);
    }
  }

  private async rows(sql: string, args: DuckDBValue[] = []): Promise<Array<Record<string, unknown>>> {
    const r = await this.c.runAndReadAll(sql, args);
    return r.getRowObjects() as Array<Record<string, unknown>>;
  }

  /** Starts a new partition (its own transaction: empty tables are harmless if a later
   * write fails). */
  private async newPart(): Promise<Part> {
    const k = (this.parts.at(-1)?.n ?? 0) + 1;
    await this.c.run('BEGIN');
    try {
      await this.c.run(RECORDS_DDL(`r${k}`));
      await this.c.run(MINUTES_DDL(`m${k}`));
      await this.c.run('COMMIT');
    } catch (err) {
      await this.c.run('ROLLBACK').catch(() => {});
      throw classify(err);
    }
    const p: Part = { n: k, firstId: Infinity, lastId: -Infinity, records: 0, hasRecords: true, dirty: false };
    this.parts.push(p);
    return p;
  }

  /** Partitions as the store sees them (tests, status). */
  partitions(): ReadonlyArray<Readonly<Part>> {
    return this.parts;
  }

  /** What the accountant needs to carry on: the last record id, the newest record time
   * (closed flows that closed before it may be written already), the open flows. */
  async restoreState(): Promise<{ lastId: number; watermark: number; open: OpenFlowRow[]; journalSeq: number }> {
    const lastId = Math.max(0, ...this.parts.filter((p) => p.hasRecords && p.records > 0).map((p) => p.lastId));
    const open = (await this.rows(`SELECT o.flow, o.first_ms, o.end_ms, o.proto, o.family, o.laddr4, o.laddr6, o.lport, o.raddr4, o.raddr6, o.rport,
        o.iface, o.direction, o.attributed_by, o.tx_bytes, o.rx_bytes, o.tx_packets, o.rx_packets, o.remote_name, o.attrs,
        p.pid, p.comm, p.uid, p.exe, p.cgroup_id, p.unit
      FROM open_rows o LEFT JOIN procs p ON p.id = o.proc ORDER BY o.flow`)).map((x) => openFlowOf({
      id: n(x.flow), flow: n(x.flow), kind: RECORD_KIND.open, conns: 0,
      pid: x.pid === null ? null : n(x.pid), comm: (x.comm as string | null) ?? null, uid: x.uid === null ? null : n(x.uid),
      exe: (x.exe as string | null) ?? null, cgroupId: (x.cgroup_id as string | null) ?? null, unit: (x.unit as string | null) ?? null,
      proto: n(x.proto), family: n(x.family) === 4 ? 4 : 6,
      localAddr: fromStored(x.laddr4, x.laddr6), localPort: x.lport === null ? null : n(x.lport),
      remoteAddr: fromStored(x.raddr4, x.raddr6), remotePort: x.rport === null ? null : n(x.rport),
      interface: this.labelName(x.iface), direction: this.labelName(x.direction), attributedBy: this.labelName(x.attributed_by),
      firstMs: n(x.first_ms), endMs: x.end_ms === null ? null : n(x.end_ms),
      txBytes: n(x.tx_bytes), rxBytes: n(x.rx_bytes), txPackets: n(x.tx_packets), rxPackets: n(x.rx_packets),
      remoteName: (x.remote_name as string | null) ?? null, attrs: (x.attrs as string | null) ?? null,
    }));
    const seq = await this.rows(`SELECT value FROM meta WHERE key = 'journal_seq'`);
    return { lastId, watermark: lastId ? Math.floor(lastId / ID_SHIFT) : -Infinity, open, journalSeq: seq.length ? Number(seq[0]!.value) : 0 };
  }

  // --- writing --------------------------------------------------------------------------------

  /** Writes one batch in one transaction. Throws a StoreError; nothing of the batch is
   * then written, and the same WriteSet may be retried. `journalSeq`: the last journal
   * batch the set holds (journal.ts), stored in the same transaction. */
  async write(ws: WriteSet, journalSeq?: number): Promise<void> {
    const c = this.c;
    let cur = this.parts.at(-1)!;
    // A set drained once per commit holds roll-ups made early in the interval after detail
    // records made later: in id order, so each partition's id range and DuckDB's per-row-group
    // min/max stay tight.
    let sorted = true;
    for (let i = 1; i < ws.records.length && sorted; i++) sorted = ws.records[i - 1]!.id < ws.records[i]!.id;
    if (!sorted) ws.records.sort((a, b) => a.id - b.id);
    const first = ws.records[0];
    if (first && cur.records > 0 && (cur.records >= this.partitionRows || utcDay(cur.firstId) !== utcDay(first.id))) {
      cur.dirty = true; // merged by the next compaction
      cur = await this.newPart();
    }
    const newProcs: Array<[number, FlowRecord]> = [];
    const newLabels: Array<[number, string]> = [];
    const procOf = this.procIdsOf(ws.records, newProcs);
    const openRows: FlowRecord[] = [];
    for (const u of ws.open.values()) if (u !== null) openRows.push(u);
    const openProcOf = this.procIdsOf(openRows, newProcs);
    try {
      await c.run('BEGIN');
      await this.appendProcs(newProcs);
      if (ws.records.length) {
        await this.appendRecords(`r${cur.n}`, ws.records, procOf, newLabels);
        await this.appendMinutes(`m${cur.n}`, ws.records, procOf);
      }
      // Replaced and forgotten rows go by flow id, as one text: a list parameter is a
      // native value per element, and 100,000 of those left tens of MB in the allocator.
      if (ws.forget.length) await c.run(`DELETE FROM open_rows WHERE flow IN (SELECT unnest(string_split($1, ','))::BIGINT)`, [ws.forget.join(',')]);
      if (openRows.length) await this.appendRecords('open_rows', openRows, openProcOf, newLabels);
      await this.appendLabels(newLabels);
      if (journalSeq !== undefined) await c.run(`INSERT OR REPLACE INTO meta VALUES ('journal_seq', '${journalSeq}')`);
      await c.run('COMMIT');
    } catch (err) {
      await c.run('ROLLBACK').catch(() => {});
      // The procs rows were rolled back too: forget the ids handed out.
      for (const [, r] of newProcs) this.procIds.delete(procKey(r.pid, r.comm, r.uid, r.exe, r.cgroupId, r.unit ?? null));
      this.lastProc.clear();
      if (newProcs.length) this.nextProc = newProcs[0]![0];
      for (const [id, name] of newLabels) {
        this.labelIds.delete(name);
        this.labelNames.length = Math.min(this.labelNames.length, id);
      }
      throw classify(err);
    }
    if (ws.records.length) {
      cur.records += ws.records.length;
      cur.firstId = Math.min(cur.firstId, ws.records[0]!.id);
      cur.lastId = Math.max(cur.lastId, ws.records.at(-1)!.id);
      cur.dirty = true;
    }
  }

  /** The procs id of each record's process; processes not seen before get a new id and go
   * in `fresh` (to append in the batch's transaction, forgotten if it rolls back). */
  private procIdsOf(recs: FlowRecord[], fresh: Array<[number, FlowRecord]>): Array<number | null> {
    const procOf = new Array<number | null>(recs.length);
    recs.forEach((r, i) => {
      if (r.pid === null && r.comm === null) {
        procOf[i] = null;
        return;
      }
      const pk = r.pid ?? -1;
      const last = this.lastProc.get(pk);
      if (last !== undefined && last.comm === r.comm && last.uid === r.uid && last.exe === r.exe && last.cgroupId === r.cgroupId && last.unit === (r.unit ?? null)) {
        procOf[i] = last.id;
        return;
      }
      const k = procKey(r.pid, r.comm, r.uid, r.exe, r.cgroupId, r.unit ?? null);
      let id = this.procIds.get(k);
      if (id === undefined) {
        id = this.nextProc++;
        this.procIds.set(k, id);
        fresh.push([id, r]);
      }
      if (this.lastProc.size >= 65_536) this.lastProc.clear();
      this.lastProc.set(pk, { comm: r.comm, uid: r.uid, exe: r.exe, cgroupId: r.cgroupId, unit: r.unit ?? null, id });
      procOf[i] = id;
    });
    return procOf;
  }

  private async appendProcs(fresh: Array<[number, FlowRecord]>): Promise<void> {
    if (!fresh.length) return;
    const ap = await this.c.createAppender('procs');
    try {
      for (const [id, r] of fresh) {
        ap.appendInteger(id);
        if (r.pid === null) ap.appendNull();
        else ap.appendUInteger(r.pid);
        if (r.comm === null) ap.appendNull();
        else ap.appendVarchar(r.comm);
        if (r.uid === null) ap.appendNull();
        else ap.appendUInteger(r.uid);
        if (r.exe === null) ap.appendNull();
        else ap.appendVarchar(r.exe);
        if (r.cgroupId === null) ap.appendNull();
        else ap.appendVarchar(r.cgroupId);
        const unit = r.unit ?? null;
        if (unit === null) ap.appendNull();
        else ap.appendVarchar(unit);
        ap.endRow();
      }
    } finally {
      ap.closeSync();
    }
  }

  private async appendLabels(fresh: Array<[number, string]>): Promise<void> {
    if (!fresh.length) return;
    const ap = await this.c.createAppender('labels');
    try {
      for (const [id, name] of fresh) {
        ap.appendUSmallInt(id);
        ap.appendVarchar(name);
        ap.endRow();
      }
    } finally {
      ap.closeSync();
    }
  }

  /** Appends records through DuckDB data chunks filled column by column from typed arrays
   * (chunk.ts says why): fixed-width columns cost one copy per chunk (addresses are numbers
   * for that reason, names are label ids), strings a native call each (remote names and
   * attrs, null until features fill them). */
  private async appendRecords(table: string, recs: FlowRecord[], procOf: Array<number | null>, freshLabels: Array<[number, string]>): Promise<void> {
    const ap = await this.c.createAppender(table);
    const c = this.cols;
    try {
      for (let s = 0; s < recs.length; s += CHUNK_ROWS) {
        const len = Math.min(CHUNK_ROWS, recs.length - s);
        for (const col of c) col.reset();
        for (let k = 0; k < len; k++) {
          const r = recs[s + k]!;
          const la = toStored(r.localAddr);
          const ra = toStored(r.remoteAddr);
          c[0]!.set64(k, r.id);
          c[1]!.set64(k, r.flow);
          c[2]!.u8[k] = r.kind;
          c[3]!.u32[k] = r.conns;
          const proc = procOf[s + k];
          if (proc === null || proc === undefined) c[4]!.setNull(k);
          else c[4]!.i32[k] = proc;
          c[5]!.u8[k] = r.proto;
          c[6]!.u8[k] = r.family;
          if (la.v4 === null) c[7]!.setNull(k);
          else c[7]!.u32[k] = la.v4;
          if (la.v6Words === undefined) c[8]!.setNull(k);
          else setU128(c[8]!, k, la);
          if (r.localPort === null) c[9]!.setNull(k);
          else c[9]!.u16[k] = r.localPort;
          if (ra.v4 === null) c[10]!.setNull(k);
          else c[10]!.u32[k] = ra.v4;
          if (ra.v6Words === undefined) c[11]!.setNull(k);
          else setU128(c[11]!, k, ra);
          if (r.remotePort === null) c[12]!.setNull(k);
          else c[12]!.u16[k] = r.remotePort;
          this.setLabel(c[13]!, k, r.interface, freshLabels);
          this.setLabel(c[14]!, k, r.direction, freshLabels);
          this.setLabel(c[15]!, k, r.attributedBy, freshLabels);
          c[16]!.set64(k, Math.floor(r.firstMs));
          if (r.endMs === null) c[17]!.setNull(k);
          else c[17]!.set64(k, Math.floor(r.endMs));
          c[18]!.set64(k, r.txBytes);
          c[19]!.set64(k, r.rxBytes);
          c[20]!.set64(k, r.txPackets);
          c[21]!.set64(k, r.rxPackets);
          c[22]!.strings![k] = r.remoteName;
          if (r.remoteName === null) c[22]!.setNull(k);
          c[23]!.strings![k] = r.attrs;
          if (r.attrs === null) c[23]!.setNull(k);
        }
        ap.appendDataChunk(makeChunk(RECORD_TYPES, c, len));
        // A commit holds up to commitRecords records (writer.ts): let the writer thread take
        // the batches that arrive meanwhile (journaled at once: what a kill -9 would lose
        // otherwise) between chunks.
        if (s + CHUNK_ROWS < recs.length) await yieldTurn();
      }
    } finally {
      ap.closeSync();
    }
  }

  private setLabel(col: ColumnBuf, k: number, name: string | null, fresh: Array<[number, string]>): void {
    const id = this.label(name, fresh);
    if (id === null) col.setNull(k);
    else col.u16[k] = id;
  }

  /** The batch's records summed by (minute, process): the minutes are the records summed,
   * so the two always agree. */
  private async appendMinutes(table: string, recs: FlowRecord[], procOf: Array<number | null>): Promise<void> {
    const sums = new Map<number, { minute: number; proc: number | null; tx: number; rx: number; txp: number; rxp: number; conns: number }>();
    recs.forEach((r, i) => {
      const minute = Math.floor(r.id / MINUTE_IDS);
      const k = minute * 2 ** 22 + (procOf[i] ?? 0); // minutes < 2^25, procs < 2^22
      let m = sums.get(k);
      if (!m) sums.set(k, (m = { minute, proc: procOf[i]!, tx: 0, rx: 0, txp: 0, rxp: 0, conns: 0 }));
      m.tx += r.txBytes;
      m.rx += r.rxBytes;
      m.txp += r.txPackets;
      m.rxp += r.rxPackets;
      m.conns += r.conns;
    });
    // One data chunk per 2048 rows, as for the records (chunk.ts): a row per (minute, process)
    // of every batch, so at high close rates as many rows as active processes, twice a second.
    const ap = await this.c.createAppender(table);
    const c = this.minuteCols;
    try {
      let k = 0;
      const put = () => {
        ap.appendDataChunk(makeChunk(MINUTE_TYPES, c, k));
        for (const col of c) col.reset();
        k = 0;
      };
      for (const col of c) col.reset();
      for (const m of sums.values()) {
        c[0]!.i32[k] = m.minute;
        if (m.proc === null) c[1]!.setNull(k);
        else c[1]!.i32[k] = m.proc;
        c[2]!.set64(k, m.tx);
        c[3]!.set64(k, m.rx);
        c[4]!.set64(k, m.txp);
        c[5]!.set64(k, m.rxp);
        c[6]!.set64(k, m.conns);
        if (++k === CHUNK_ROWS) put();
      }
      if (k) put();
    } finally {
      ap.closeSync();
    }
  }

  /** Rewrites each partition's minutes that got rows since the last time as one row per
   * (minute, process), and the open-flow table without its deleted rows. */
  async compact(): Promise<void> {
    try {
      for (const p of this.parts) {
        if (!p.dirty) continue;
        await this.c.run('BEGIN');
        try {
          await this.c.run(`CREATE OR REPLACE TABLE m${p.n} AS SELECT minute, proc, sum(tx_bytes)::UBIGINT AS tx_bytes, sum(rx_bytes)::UBIGINT AS rx_bytes,
            sum(tx_packets)::UBIGINT AS tx_packets, sum(rx_packets)::UBIGINT AS rx_packets, sum(conns)::UBIGINT AS conns FROM m${p.n} GROUP BY ALL ORDER BY minute, proc`);
          await this.c.run('COMMIT');
        } catch (err) {
          await this.c.run('ROLLBACK').catch(() => {});
          throw err;
        }
        p.dirty = false;
      }
      await this.c.run('CREATE OR REPLACE TABLE open_rows AS SELECT * FROM open_rows');
      await this.c.run('CHECKPOINT');
    } catch (err) {
      throw classify(err);
    }
  }

  // --- retention --------------------------------------------------------------------------------

  /** Bytes the database takes: the file's used blocks plus the WAL (the file keeps its
   * high-water size; blocks of dropped partitions are reused). */
  async usage(): Promise<{ usedBytes: number; fileBytes: number; walBytes: number }> {
    const r = (await this.rows('PRAGMA database_size'))[0]!;
    const blockSize = n(r.block_size);
    let fileBytes = 0;
    let walBytes = 0;
    try {
      fileBytes = fs.statSync(this.file).size;
    } catch {
      /* not yet written */
    }
    try {
      walBytes = fs.statSync(`${this.file}.wal`).size;
    } catch {
      /* none */
    }
    return { usedBytes: n(r.used_blocks) * blockSize + walBytes, fileBytes, walBytes };
  }

  /** DuckDB's own account of its memory (buffers, queries), and its limit as it prints it
   * (status only: retention's loop over usage() does not need it). */
  async engineMemory(): Promise<{ usedBytes: number; limit: string }> {
    const m = (await this.rows("SELECT (SELECT sum(memory_usage_bytes) FROM duckdb_memory()) AS used, current_setting('memory_limit') AS lim"))[0]!;
    return { usedBytes: n(m.used), limit: String(m.lim) };
  }

  private async drop(table: string): Promise<void> {
    await this.c.run(`DROP TABLE IF EXISTS ${table}`);
  }

  /**
   * Retention by age: partitions wholly older than the retention period are dropped; rows
   * older than it in the partition that straddles the limit are deleted. Then by size:
   * while the database uses more than 90% of `maxBytes`, the oldest partition's records go
   * (its per-minute totals stay), then the oldest per-minute totals. Returns the records
   * and minute rows removed for each reason.
   */
  async enforceRetention(now: number): Promise<{ byAge: number; bySize: number }> {
    const cutoffId = (now - this.opts.retentionDays * 86_400_000) * ID_SHIFT;
    let byAge = 0;
    let bySize = 0;
    try {
      for (const p of [...this.parts]) {
        if (p === this.parts.at(-1)) break;
        if (p.lastId < cutoffId) {
          byAge += p.records + n((await this.rows(`SELECT count(*) AS c FROM m${p.n}`))[0]!.c);
          if (p.hasRecords) await this.drop(`r${p.n}`);
          await this.drop(`m${p.n}`);
          this.parts.splice(this.parts.indexOf(p), 1);
        } else if (p.firstId < cutoffId) {
          if (p.hasRecords) byAge += n((await this.c.run(`DELETE FROM r${p.n} WHERE id < ${cutoffId}`)).rowsChanged);
          byAge += n((await this.c.run(`DELETE FROM m${p.n} WHERE minute < ${Math.floor(cutoffId / MINUTE_IDS)}`)).rowsChanged);
          p.firstId = cutoffId;
        }
      }
      const cur = this.parts.at(-1)!;
      if (cur.firstId < cutoffId && cur.records > 0) {
        byAge += n((await this.c.run(`DELETE FROM r${cur.n} WHERE id < ${cutoffId}`)).rowsChanged);
        byAge += n((await this.c.run(`DELETE FROM m${cur.n} WHERE minute < ${Math.floor(cutoffId / MINUTE_IDS)}`)).rowsChanged);
      }
      if (byAge > 0) await this.c.run('CHECKPOINT');
      const limit = this.opts.maxBytes * 0.9;
      for (let round = 0; round < 10_000 && (await this.usage()).usedBytes > limit; round++) {
        const withRecords = this.parts.find((p) => p.hasRecords && p !== this.parts.at(-1));
        const minutesOnly = this.parts.find((p) => !p.hasRecords && p !== this.parts.at(-1));
        if (withRecords) {
          bySize += withRecords.records;
          await this.drop(`r${withRecords.n}`);
          withRecords.hasRecords = false;
          withRecords.records = 0;
          this.trimmedUntil = Math.max(this.trimmedUntil, Math.floor(withRecords.lastId / ID_SHIFT) + 1);
          await this.c.run(`INSERT OR REPLACE INTO meta VALUES ('records_trimmed_until', '${this.trimmedUntil}')`);
        } else if (minutesOnly) {
          bySize += n((await this.rows(`SELECT count(*) AS c FROM m${minutesOnly.n}`))[0]!.c);
          await this.drop(`m${minutesOnly.n}`);
          this.parts.splice(this.parts.indexOf(minutesOnly), 1);
        } else if (cur.records > 0) {
          // Everything is in the partition being written: start a new one, so that the next
          // round can drop this one.
          cur.dirty = true;
          await this.newPart();
          continue;
        } else {
          break; // nothing left to drop: the limit is below an empty database
        }
        await this.c.run('CHECKPOINT');
      }
      if (byAge + bySize > 0) await this.cleanProcs();
    } catch (err) {
      throw classify(err);
    }
    return { byAge, bySize };
  }

  /** Forgets processes no record or minute points to any more (a rewrite: see the header). */
  private async cleanProcs(): Promise<void> {
    const used = this.parts.flatMap((p) => [...(p.hasRecords ? [`SELECT proc FROM r${p.n}`] : []), `SELECT proc FROM m${p.n}`]).join(' UNION ');
    await this.c.run(`CREATE OR REPLACE TABLE procs AS SELECT * FROM procs WHERE id IN (${used})`);
    await this.loadProcs();
  }

  /** Oldest and newest record (or minute) times (ms), null when empty. */
  async span(): Promise<{ oldest: number | null; newest: number | null }> {
    const live = this.parts.filter((p) => p.firstId !== Infinity);
    if (!live.length) return { oldest: null, newest: null };
    return { oldest: Math.floor(Math.min(...live.map((p) => p.firstId)) / ID_SHIFT), newest: Math.floor(Math.max(...live.map((p) => p.lastId)) / ID_SHIFT) };
  }

  async checkpoint(): Promise<void> {
    try {
      await this.c.run('CHECKPOINT');
    } catch (err) {
      throw classify(err);
    }
  }

  close(): void {
    try {
      this.c.closeSync();
    } finally {
      this.inst.closeSync();
    }
  }

  /** The records (or minutes) of the partitions that overlap ids [lo, hi), as one relation. */
  private from(kind: 'r' | 'm', lo: number, hi: number): string {
    const cur = this.parts.at(-1)!;
    const ps = this.parts.filter((p) => (kind === 'm' || p.hasRecords) && (p === cur || (p.lastId >= lo && p.firstId < hi)));
    if (!ps.length) return kind === 'r' ? `(SELECT * FROM r${cur.n} WHERE false)` : `(SELECT * FROM m${cur.n} WHERE false)`;
    return `(${ps.map((p) => `SELECT * FROM ${kind}${p.n}`).join(' UNION ALL ')})`;
  }

  // --- queries ----------------------------------------------------------------------------------

  /** Runs a validated query, restricted to what `scope` may see. */
  async query(q: HistoryQuery, scope: HistoryScope): Promise<HistoryResult> {
    // Minute resolution: the window is widened to whole minutes, for records and minutes alike.
    const m0 = Math.floor(q.since / 60_000);
    const m1 = Math.ceil(q.until / 60_000);
    const procConds: SqlPart[] = [];
    if (q.pid !== undefined) procConds.push({ sql: 'pid = ?', args: [q.pid] });
    if (q.comm !== undefined) procConds.push({ sql: 'comm = ?', args: [q.comm] });
    if (q.uid !== undefined) procConds.push({ sql: 'uid = ?', args: [q.uid] });
    if (q.unit !== undefined) procConds.push(isGlob(q.unit) ? { sql: 'unit GLOB ?', args: [q.unit] } : { sql: 'unit = ?', args: [q.unit] });
    if (scope !== 'all') procConds.push({ sql: 'uid = ?', args: [scope.uid] });
    const procFilter: SqlPart | null = procConds.length
      ? { sql: `proc IN (SELECT id FROM procs WHERE ${procConds.map((c) => c.sql).join(' AND ')})`, args: procConds.flatMap((c) => c.args) }
      : null;
    const flowConds: SqlPart[] = [];
    if (q.remote) {
      const { lo, hi } = cidrRange({ ...q.remote, bytes: Buffer.from(q.remote.bytes) });
      flowConds.push(q.remote.family === 4
        ? { sql: 'raddr4 BETWEEN ? AND ?', args: [Number(lo), Number(hi)] }
        : { sql: 'raddr6 BETWEEN CAST(? AS UHUGEINT) AND CAST(? AS UHUGEINT)', args: [String(lo), String(hi)] });
    }
    if (q.name !== undefined) flowConds.push(isGlob(q.name) ? { sql: 'remote_name GLOB ?', args: [q.name] } : { sql: 'remote_name = ?', args: [q.name] });
    const useMinutes = flowConds.length === 0 && (q.by === 'process' || q.by === 'hour' || q.by === 'day');
    const where: SqlPart[] = useMinutes
      ? [{ sql: 'minute >= ? AND minute < ?', args: [m0, m1] }]
      : [{ sql: 'id >= ? AND id < ?', args: [BigInt(m0) * BigInt(MINUTE_IDS), BigInt(m1) * BigInt(MINUTE_IDS)] }];
    if (procFilter) where.push(procFilter);
    where.push(...flowConds);
    const w = { sql: where.map((p) => `(${p.sql})`).join(' AND '), args: where.flatMap((p) => p.args) };
    const lo = m0 * MINUTE_IDS;
    const hi = m1 * MINUTE_IDS;
    const records = this.from('r', lo, hi);
    const minutes = this.from('m', lo, hi);
    const trimmed = this.trimmedUntil > m0 * 60_000 && !useMinutes ? iso(this.trimmedUntil) : null;
    const base = {
      since: iso(m0 * 60_000), until: iso(m1 * 60_000), by: q.by ?? null, source: (useMinutes ? 'minutes' : 'records') as HistoryResult['source'],
      recordsSince: trimmed,
    };
    try {
      if (!q.by) return { ...base, ...(await this.flows(records, w, q.limit)) };
      if (q.by === 'hour' || q.by === 'day') return { ...base, ...(await this.buckets(useMinutes ? minutes : records, w, useMinutes, q.by)) };
      return { ...base, ...(await this.groups(useMinutes ? minutes : records, w, useMinutes, q.by, q.limit)) };
    } catch (err) {
      throw classify(err);
    }
  }

  private async run(sql: string, args: DuckDBValue[]): Promise<Array<Record<string, unknown>>> {
    // DuckDB's numbered parameters: ? in order.
    return this.rows(sql, args);
  }

  private static totalsOf(r: Record<string, unknown>, prefix = ''): HistoryTotals {
    return { txBytes: n(r[`${prefix}tx`]), rxBytes: n(r[`${prefix}rx`]), txPackets: n(r[`${prefix}txp`]), rxPackets: n(r[`${prefix}rxp`]), connections: n(r[`${prefix}conns`]) };
  }

  private static readonly SUMS = 'sum(tx_bytes) AS tx, sum(rx_bytes) AS rx, sum(tx_packets) AS txp, sum(rx_packets) AS rxp, sum(conns) AS conns';
  private static readonly OVER = 'count(*) OVER () AS matched, sum(tx) OVER () AS ttx, sum(rx) OVER () AS trx, sum(txp) OVER () AS ttxp, sum(rxp) OVER () AS trxp, sum(conns) OVER () AS tconns';

  private static finish<T>(rows: Array<Record<string, unknown>>, limit: number, map: (r: Record<string, unknown>) => T): { items: T[]; totals: HistoryTotals; matched: number; truncated: boolean } {
    const first = rows[0];
    const matched = first ? n(first.matched) : 0;
    return {
      items: rows.map(map),
      totals: first ? HistoryStore.totalsOf(first, 't') : { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 },
      matched,
      truncated: matched > limit,
    };
  }

  /** One row per flow (per roll-up record for roll-ups). A flow's records point to at most
   * two process rows, one without executable and cgroup (from a close event) and one with
   * (from a listing): the lowest and highest process ids of the flow cover both. */
  private async flows(from: string, w: SqlPart, limit: number): Promise<Pick<HistoryResult, 'flows' | 'totals' | 'matched' | 'truncated'>> {
    const rows = await this.run(`
      WITH f AS (
        SELECT CASE WHEN flow = 0 THEN -id ELSE flow END AS fk, ${HistoryStore.SUMS},
          arg_min(proc, id) AS proc, max(proc) AS proc2, arg_min(proto, id) AS proto, arg_min(family, id) AS family, arg_min(laddr4, id) AS laddr4, arg_min(laddr6, id) AS laddr6, arg_min(lport, id) AS lport,
          arg_min(raddr4, id) AS raddr4, arg_min(raddr6, id) AS raddr6, arg_min(rport, id) AS rport, arg_max(iface, id) AS iface, arg_max(direction, id) AS direction,
          arg_max(attributed_by, id) AS attributed_by, min(first_ms) AS first_ms, max(id) AS last_id, max(end_ms) AS end_ms, arg_max(kind, id) AS kind,
          arg_max(remote_name, id) AS remote_name
        FROM ${from} WHERE ${w.sql} GROUP BY fk)
      SELECT f.*, p.pid, p.comm, p.uid, coalesce(p.exe, q.exe) AS exe, coalesce(p.cgroup_id, q.cgroup_id) AS cgroup_id, coalesce(p.unit, q.unit) AS unit, ${HistoryStore.OVER}
      FROM f LEFT JOIN procs p ON p.id = f.proc LEFT JOIN procs q ON q.id = f.proc2 ORDER BY tx + rx DESC, last_id DESC LIMIT ${limit}`, w.args);
    const r = HistoryStore.finish(rows, limit, (x): HistoryFlow => {
      const kind = n(x.kind) as RecordKind;
      return {
        state: RECORD_KIND_NAMES[kind] ?? 'closed',
        protocol: PROTO_NAMES[n(x.proto)] ?? String(n(x.proto)),
        family: n(x.family) === 4 ? 'ipv4' : 'ipv6',
        localAddr: fromStored(x.laddr4, x.laddr6),
        localPort: x.lport === null ? null : n(x.lport),
        remoteAddr: fromStored(x.raddr4, x.raddr6),
        remotePort: x.rport === null ? null : n(x.rport),
        remoteName: (x.remote_name as string | null) ?? null,
        interface: this.labelName(x.iface),
        direction: this.labelName(x.direction),
        attributedBy: this.labelName(x.attributed_by),
        pid: x.pid === null || x.pid === undefined ? null : n(x.pid),
        comm: (x.comm as string | null) ?? null,
        uid: x.uid === null || x.uid === undefined ? null : n(x.uid),
        exe: (x.exe as string | null) ?? null,
        cgroupId: (x.cgroup_id as string | null) ?? null,
        unit: (x.unit as string | null) ?? null,
        firstSeenAt: iso(n(x.first_ms)),
        lastRecordAt: iso(Math.floor(n(x.last_id) / ID_SHIFT)),
        closedAt: kind === RECORD_KIND.closed || kind === RECORD_KIND.late || kind === RECORD_KIND.rollup ? (x.end_ms === null ? null : iso(n(x.end_ms))) : null,
        ...HistoryStore.totalsOf(x),
      };
    });
    return { flows: r.items, totals: r.totals, matched: r.matched, truncated: r.truncated };
  }

  private async groups(from: string, w: SqlPart, useMinutes: boolean, by: 'process' | 'remote' | 'name', limit: number): Promise<Pick<HistoryResult, 'groups' | 'totals' | 'matched' | 'truncated'>> {
    const time = useMinutes ? 'min(minute)::BIGINT * 60000 AS t0, max(minute)::BIGINT * 60000 AS t1' : `min(id) // ${ID_SHIFT} AS t0, max(id) // ${ID_SHIFT} AS t1`;
    let sql: string;
    if (by === 'process') {
      // A process is its pid, command and user: its executable or cgroup may be missing
      // from some records (a close event carries neither), which must not split it.
      sql = `WITH g AS (SELECT proc, ${HistoryStore.SUMS}, ${time} FROM ${from} WHERE ${w.sql} GROUP BY proc),
        h AS (SELECT p.pid, p.comm, p.uid, max(p.exe) AS exe, max(p.unit) AS unit, sum(tx) AS tx, sum(rx) AS rx, sum(txp) AS txp, sum(rxp) AS rxp,
          sum(conns) AS conns, min(t0) AS t0, max(t1) AS t1 FROM g LEFT JOIN procs p ON p.id = g.proc GROUP BY p.pid, p.comm, p.uid)
        SELECT h.*, ${HistoryStore.OVER} FROM h ORDER BY tx + rx DESC LIMIT ${limit}`;
    } else if (by === 'remote') {
      sql = `WITH g AS (SELECT family, raddr4, raddr6, rport, proto, ${HistoryStore.SUMS}, ${time} FROM ${from} WHERE ${w.sql} GROUP BY ALL)
        SELECT g.*, ${HistoryStore.OVER} FROM g ORDER BY tx + rx DESC LIMIT ${limit}`;
    } else {
      sql = `WITH g AS (SELECT remote_name, ${HistoryStore.SUMS}, ${time} FROM ${from} WHERE ${w.sql} GROUP BY ALL)
        SELECT g.*, ${HistoryStore.OVER} FROM g ORDER BY tx + rx DESC LIMIT ${limit}`;
    }
    const rows = await this.run(sql, w.args);
    const r = HistoryStore.finish(rows, limit, (x): HistoryGroup => {
      const g: HistoryGroup = { ...HistoryStore.totalsOf(x), firstRecordAt: iso(n(x.t0)), lastRecordAt: iso(n(x.t1)) };
      if (by === 'process') {
        g.pid = x.pid === null || x.pid === undefined ? null : n(x.pid);
        g.comm = (x.comm as string | null) ?? null;
        g.uid = x.uid === null || x.uid === undefined ? null : n(x.uid);
        g.exe = (x.exe as string | null) ?? null;
        g.unit = (x.unit as string | null) ?? null;
      } else if (by === 'remote') {
        g.remoteAddr = fromStored(x.raddr4, x.raddr6);
        g.remotePort = x.rport === null ? null : n(x.rport);
        g.protocol = PROTO_NAMES[n(x.proto)] ?? String(n(x.proto));
      } else {
        g.name = (x.remote_name as string | null) ?? null;
      }
      return g;
    });
    return { groups: r.items, totals: r.totals, matched: r.matched, truncated: r.truncated };
  }

  /** Hour or day buckets in the daemon's local time (summed per minute in SQL, folded into
   * buckets here: local days and DST are JavaScript's to know). */
  private async buckets(from: string, w: SqlPart, useMinutes: boolean, by: 'hour' | 'day'): Promise<Pick<HistoryResult, 'groups' | 'totals' | 'matched' | 'truncated'>> {
    const minute = useMinutes ? 'minute' : `id // ${MINUTE_IDS}`;
    const rows = await this.run(`SELECT ${minute} AS m, ${HistoryStore.SUMS} FROM ${from} WHERE ${w.sql} GROUP BY m ORDER BY m`, w.args);
    const out = new Map<number, HistoryGroup & { t0: number; t1: number }>();
    const totals: HistoryTotals = { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0 };
    for (const x of rows) {
      const ms = n(x.m) * 60_000;
      const d = new Date(ms);
      if (by === 'hour') d.setMinutes(0, 0, 0);
      else d.setHours(0, 0, 0, 0);
      const start = d.getTime();
      let g = out.get(start);
      if (!g) out.set(start, (g = { startsAt: iso(start), txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, connections: 0, firstRecordAt: '', lastRecordAt: '', t0: ms, t1: ms }));
      const t = HistoryStore.totalsOf(x);
      for (const k of ['txBytes', 'rxBytes', 'txPackets', 'rxPackets', 'connections'] as const) {
        g[k] += t[k];
        totals[k] += t[k];
      }
      g.t0 = Math.min(g.t0, ms);
      g.t1 = Math.max(g.t1, ms);
    }
    const groups = [...out.values()].map(({ t0, t1, ...g }) => ({ ...g, firstRecordAt: iso(t0), lastRecordAt: iso(t1 + 59_999) }));
    return { groups, totals, matched: groups.length, truncated: false };
  }
}

const utcDay = (id: number): number => Math.floor(id / ID_SHIFT / 86_400_000);

/** procKey()'s fields but the pid, and the procs id they have with that pid. */
interface ProcMemo {
  comm: string | null;
  uid: number | null;
  exe: string | null;
  cgroupId: string | null;
  unit: string | null;
  id: number;
}

function procKey(pid: number | null, comm: string | null, uid: number | null, exe: string | null, cgroupId: string | null, unit: string | null): string {
  return `${pid}\0${comm}\0${uid}\0${exe}\0${cgroupId}\0${unit}`;
}

