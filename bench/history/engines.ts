// SPDX-License-Identifier: Apache-2.0
// The two candidate engines for issue 16's embedded history, behind one small interface,
// with the same logical schema (processes, flow records, per-minute per-process totals),
// and a JSON-lines file as the baseline that any store must be compared with. Used by
// bench/history only: the chosen engine's production code is daemon/src/history/.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { BIGINT, blobValue, DuckDBDataChunk, DuckDBInstance, INTEGER, UINTEGER, USMALLINT, UTINYINT, VARCHAR, BLOB, type DuckDBConnection, type DuckDBType } from '@duckdb/node-api';
import { parseIp } from '../../daemon/src/net/ip.js';
import type { FlowSample } from './gen.js';
import { ID_SHIFT } from '../../daemon/src/history/types.js';

/** One flow record (a closed flow here) ready for any engine. */
export interface Rec {
  ts: number;
  flow: number;
  proc: number;
  firstMs: number;
  endMs: number;
  kind: number;
  conns: number;
  proto: number;
  family: number;
  laddr: Buffer;
  lport: number;
  raddr: Buffer;
  rport: number;
  iface: number;
  dir: number;
  how: number;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
}

export interface ProcRow { id: number; pid: number; comm: string; uid: number; exe: string; cgroupId: string }
export interface MinuteRow { minute: number; proc: number; txBytes: number; rxBytes: number; txPackets: number; rxPackets: number; conns: number }

export interface Batch {
  recs: Rec[];
  minutes: MinuteRow[];
  procs: ProcRow[];
}

/** FlowSamples -> a Batch: process and interface ids, address bytes, per-minute sums. */
export class Batcher {
  private readonly procIds = new Map<string, number>();
  private readonly ifaceIds = new Map<string, number>();
  private nextFlow = 1;
  private seq = 0;

  build(samples: FlowSample[]): Batch {
    const recs: Rec[] = [];
    const procs: ProcRow[] = [];
    const mins = new Map<number, MinuteRow>();
    for (const s of samples) {
      const pk = `${s.pid}\0${s.comm}\0${s.uid}\0${s.exe}\0${s.cgroupId}`;
      let proc = this.procIds.get(pk);
      if (proc === undefined) {
        proc = this.procIds.size + 1;
        this.procIds.set(pk, proc);
        procs.push({ id: proc, pid: s.pid, comm: s.comm, uid: s.uid, exe: s.exe, cgroupId: s.cgroupId });
      }
      let iface = this.ifaceIds.get(s.interface);
      if (iface === undefined) this.ifaceIds.set(s.interface, (iface = this.ifaceIds.size + 1));
      const v4 = s.family === 'ipv4';
      const la = parseIp(s.localAddr)!.bytes;
      const ra = parseIp(s.remoteAddr)!.bytes;
      recs.push({
        ts: s.lastMs, flow: this.nextFlow++, proc, firstMs: s.firstMs, endMs: s.closedMs, kind: 1, conns: 1,
        proto: s.proto === 'tcp' ? 6 : 17, family: v4 ? 4 : 6,
        laddr: v4 ? la.subarray(0, 4) : la, lport: s.localPort, raddr: v4 ? ra.subarray(0, 4) : ra, rport: s.remotePort,
        iface, dir: s.direction === 'outbound' ? 1 : 2, how: s.attributedBy === 'connect' ? 2 : 3,
        txBytes: s.txBytes, rxBytes: s.rxBytes, txPackets: s.txPackets, rxPackets: s.rxPackets,
      });
      const minute = Math.floor(s.lastMs / 60_000);
      const mk = minute * 1_000_000 + proc;
      let m = mins.get(mk);
      if (!m) mins.set(mk, (m = { minute, proc, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, conns: 0 }));
      m.txBytes += s.txBytes;
      m.rxBytes += s.rxBytes;
      m.txPackets += s.txPackets;
      m.rxPackets += s.rxPackets;
      m.conns++;
    }
    this.seq += recs.length;
    return { recs, minutes: [...mins.values()], procs };
  }
}

export interface Window { from: number; to: number }

export interface Engine {
  readonly name: string;
  insert(b: Batch): Promise<void>;
  /** A window's per-process totals from the per-minute table. */
  processTotals(w: Window): Promise<unknown[]>;
  /** The same from the flow records (what a store without the minute table would do). */
  processTotalsFromFlows(w: Window): Promise<unknown[]>;
  /** What did `comm` talk to in the window: per remote address and port. */
  remotesOf(comm: string, w: Window): Promise<unknown[]>;
  /** Who talked to an IPv4 prefix [lo, hi] in the window: per process. */
  whoTalkedTo(lo: Buffer, hi: Buffer, w: Window): Promise<unknown[]>;
  /** A user's hourly totals in the window (per-minute table). */
  hourly(uid: number, w: Window): Promise<unknown[]>;
  /** Deletes records and minutes older than `ts`; returns when the space is reusable. */
  deleteBefore(ts: number): Promise<void>;
  /** Bytes on disk (database + its journal/WAL). */
  sizeBytes(): number;
  /** Integrity check after a crash: 'ok' or what is wrong. */
  check(): Promise<string>;
  count(): Promise<number>;
  close(): Promise<void>;
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

// --- SQLite (better-sqlite3) ------------------------------------------------------------

/** Record ids are ts * 1024 + n, as in the store: rows stay in time order in the table's
 * B-tree, so a time window is a range of the primary key and needs no index of its own. */
export { ID_SHIFT };

export class SqliteEngine implements Engine {
  readonly name = 'SQLite';
  private readonly db: Database.Database;
  private readonly insRec: Database.Statement;
  private readonly insProc: Database.Statement;
  private readonly upMin: Database.Statement;
  private lastId = 0;

  constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS procs (id INTEGER PRIMARY KEY, pid INTEGER, comm TEXT, uid INTEGER, exe TEXT, cgroup_id TEXT, unit TEXT);
      CREATE TABLE IF NOT EXISTS records (
        id INTEGER PRIMARY KEY, flow INTEGER, proc INTEGER, first_ms INTEGER, end_ms INTEGER, kind INTEGER, conns INTEGER,
        proto INTEGER, family INTEGER, laddr BLOB, lport INTEGER, raddr BLOB, rport INTEGER, iface INTEGER, dir INTEGER, how INTEGER,
        tx_bytes INTEGER, rx_bytes INTEGER, tx_packets INTEGER, rx_packets INTEGER, name TEXT, attrs TEXT);
      CREATE TABLE IF NOT EXISTS minutes (minute INTEGER, proc INTEGER, tx_bytes INTEGER, rx_bytes INTEGER, tx_packets INTEGER, rx_packets INTEGER, conns INTEGER,
        PRIMARY KEY (minute, proc)) WITHOUT ROWID;`);
    this.insRec = this.db.prepare('INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL)');
    this.insProc = this.db.prepare('INSERT OR IGNORE INTO procs VALUES (?,?,?,?,?,?,NULL)');
    this.lastId = (this.db.prepare('SELECT max(id) m FROM records').get() as { m: number | null }).m ?? 0;
    this.upMin = this.db.prepare(`INSERT INTO minutes VALUES (?,?,?,?,?,?,?) ON CONFLICT (minute, proc) DO UPDATE SET
      tx_bytes = tx_bytes + excluded.tx_bytes, rx_bytes = rx_bytes + excluded.rx_bytes, tx_packets = tx_packets + excluded.tx_packets,
      rx_packets = rx_packets + excluded.rx_packets, conns = conns + excluded.conns`);
  }

  /** Strictly increasing ids: a record older than the last one takes the last one's time
   * (records arrive in close order, so this moves a record by at most a batch's latency). */
  private id(ts: number): number {
    const id = Math.max(ts * ID_SHIFT, this.lastId + 1);
    this.lastId = id;
    return id;
  }

  async insert(b: Batch): Promise<void> {
    this.db.transaction(() => {
      for (const p of b.procs) this.insProc.run(p.id, p.pid, p.comm, p.uid, p.exe, p.cgroupId);
      for (const r of b.recs) {
        this.insRec.run(this.id(r.ts), r.flow, r.proc, r.firstMs, r.endMs, r.kind, r.conns, r.proto, r.family, r.laddr, r.lport, r.raddr, r.rport, r.iface, r.dir, r.how, r.txBytes, r.rxBytes, r.txPackets, r.rxPackets);
      }
      for (const m of b.minutes) this.upMin.run(m.minute, m.proc, m.txBytes, m.rxBytes, m.txPackets, m.rxPackets, m.conns);
    })();
  }

  private all(sql: string, ...args: unknown[]): Promise<unknown[]> {
    return Promise.resolve(this.db.prepare(sql).all(...args));
  }

  processTotals(w: Window) {
    return this.all(`SELECT p.pid, p.comm, p.uid, p.exe, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(tx_packets) txp, sum(rx_packets) rxp, sum(conns) conns
      FROM minutes WHERE minute >= ? AND minute < ? GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`,
    Math.floor(w.from / 60_000), Math.ceil(w.to / 60_000));
  }

  processTotalsFromFlows(w: Window) {
    return this.all(`SELECT p.pid, p.comm, p.uid, p.exe, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(tx_packets) txp, sum(rx_packets) rxp, sum(conns) conns
      FROM records WHERE id >= ? AND id < ? GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`, w.from * ID_SHIFT, w.to * ID_SHIFT);
  }

  remotesOf(comm: string, w: Window) {
    return this.all(`SELECT hex(raddr) raddr, rport, proto, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM records
      WHERE id >= ? AND id < ? AND proc IN (SELECT id FROM procs WHERE comm = ?) GROUP BY raddr, rport, proto ORDER BY tx + rx DESC LIMIT 100`,
    w.from * ID_SHIFT, w.to * ID_SHIFT, comm);
  }

  whoTalkedTo(lo: Buffer, hi: Buffer, w: Window) {
    return this.all(`SELECT p.pid, p.comm, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM records
      WHERE id >= ? AND id < ? AND family = 4 AND raddr BETWEEN ? AND ? GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`,
    w.from * ID_SHIFT, w.to * ID_SHIFT, lo, hi);
  }

  hourly(uid: number, w: Window) {
    return this.all(`SELECT minute / 60 hour, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM minutes
      WHERE minute >= ? AND minute < ? AND proc IN (SELECT id FROM procs WHERE uid = ?) GROUP BY hour ORDER BY hour`,
    Math.floor(w.from / 60_000), Math.ceil(w.to / 60_000), uid);
  }

  async deleteBefore(ts: number): Promise<void> {
    this.db.prepare('DELETE FROM records WHERE id < ?').run(ts * ID_SHIFT);
    this.db.prepare('DELETE FROM minutes WHERE minute < ?').run(Math.floor(ts / 60_000));
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  sizeBytes(): number {
    return fileSize(this.path) + fileSize(`${this.path}-wal`);
  }

  async check(): Promise<string> {
    const r = this.db.pragma('quick_check') as Array<{ quick_check: string }>;
    return r.map((x) => x.quick_check).join('; ');
  }

  async count(): Promise<number> {
    return (this.db.prepare('SELECT count(*) n FROM records').get() as { n: number }).n;
  }

  /** The pid's flows in the window, largest first. */
  flowsOf(pid: number, w: Window) {
    return this.all(`SELECT id, hex(raddr) raddr, rport, lport, tx_bytes, rx_bytes FROM records WHERE id >= ? AND id < ? AND proc IN (SELECT id FROM procs WHERE pid = ?)
      ORDER BY tx_bytes + rx_bytes DESC LIMIT 100`, w.from * ID_SHIFT, w.to * ID_SHIFT, pid);
  }

  /** Runs SQL (the bench's generated fills). */
  exec(sql: string): void {
    this.db.exec(sql);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

// --- DuckDB (@duckdb/node-api) ----------------------------------------------------------

const DUCK_REC_TYPES: DuckDBType[] = [
  BIGINT, BIGINT, INTEGER, BIGINT, BIGINT, UTINYINT, UINTEGER, UTINYINT, UTINYINT, BLOB, USMALLINT, BLOB, USMALLINT, USMALLINT, UTINYINT, UTINYINT,
  BIGINT, BIGINT, BIGINT, BIGINT, VARCHAR, VARCHAR,
];

export class DuckEngine implements Engine {
  readonly name = 'DuckDB';
  private constructor(readonly path: string, private readonly inst: DuckDBInstance, private readonly c: DuckDBConnection) {}

  static async open(path: string, threads = 1): Promise<DuckEngine> {
    // A daemon's embedded store must not take 80% of RAM (DuckDB's default) or every core.
    const inst = await DuckDBInstance.create(path, { threads: String(threads), memory_limit: '256MB' });
    const c = await inst.connect();
    await c.run(`
      CREATE TABLE IF NOT EXISTS procs (id INTEGER PRIMARY KEY, pid INTEGER, comm VARCHAR, uid INTEGER, exe VARCHAR, cgroup_id VARCHAR, unit VARCHAR);
      CREATE TABLE IF NOT EXISTS records (
        ts BIGINT, flow BIGINT, proc INTEGER, first_ms BIGINT, end_ms BIGINT, kind UTINYINT, conns UINTEGER,
        proto UTINYINT, family UTINYINT, laddr BLOB, lport USMALLINT, raddr BLOB, rport USMALLINT, iface USMALLINT, dir UTINYINT, how UTINYINT,
        tx_bytes BIGINT, rx_bytes BIGINT, tx_packets BIGINT, rx_packets BIGINT, name VARCHAR, attrs VARCHAR);
      CREATE TABLE IF NOT EXISTS minutes (minute INTEGER, proc INTEGER, tx_bytes BIGINT, rx_bytes BIGINT, tx_packets BIGINT, rx_packets BIGINT, conns BIGINT);`);
    return new DuckEngine(path, inst, c);
  }

  async insert(b: Batch): Promise<void> {
    const c = this.c;
    await c.run('BEGIN');
    try {
      if (b.procs.length) {
        const ap = await c.createAppender('procs');
        for (const p of b.procs) {
          ap.appendInteger(p.id); ap.appendInteger(p.pid); ap.appendVarchar(p.comm); ap.appendInteger(p.uid); ap.appendVarchar(p.exe); ap.appendVarchar(p.cgroupId); ap.appendNull();
          ap.endRow();
        }
        ap.closeSync();
      }
      const ap = await c.createAppender('records');
      const n = b.recs.length;
      for (let s = 0; s < n; s += 2048) {
        const part = b.recs.slice(s, s + 2048);
        const ch = DuckDBDataChunk.create(DUCK_REC_TYPES, part.length);
        ch.setColumns([
          part.map((r) => BigInt(r.ts)), part.map((r) => BigInt(r.flow)), part.map((r) => r.proc), part.map((r) => BigInt(r.firstMs)), part.map((r) => BigInt(r.endMs)),
          part.map((r) => r.kind), part.map((r) => r.conns), part.map((r) => r.proto), part.map((r) => r.family), part.map((r) => blobValue(r.laddr)), part.map((r) => r.lport),
          part.map((r) => blobValue(r.raddr)), part.map((r) => r.rport), part.map((r) => r.iface), part.map((r) => r.dir), part.map((r) => r.how),
          part.map((r) => BigInt(r.txBytes)), part.map((r) => BigInt(r.rxBytes)), part.map((r) => BigInt(r.txPackets)), part.map((r) => BigInt(r.rxPackets)),
          part.map(() => null), part.map(() => null),
        ]);
        ap.appendDataChunk(ch);
      }
      ap.closeSync();
      // Per-minute sums are appended as deltas and summed by queries: DuckDB updates in
      // place cost far more than appends (and an upsert needs an ART index).
      const am = await c.createAppender('minutes');
      for (const m of b.minutes) {
        am.appendInteger(m.minute); am.appendInteger(m.proc); am.appendBigInt(BigInt(m.txBytes)); am.appendBigInt(BigInt(m.rxBytes));
        am.appendBigInt(BigInt(m.txPackets)); am.appendBigInt(BigInt(m.rxPackets)); am.appendBigInt(BigInt(m.conns));
        am.endRow();
      }
      am.closeSync();
      await c.run('COMMIT');
    } catch (err) {
      await c.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  private async all(sql: string, ...args: Array<string | number | bigint | Uint8Array>): Promise<unknown[]> {
    const r = await this.c.runAndReadAll(sql, args.map((a) => (a instanceof Uint8Array ? blobValue(a) : a)));
    return r.getRowObjects();
  }

  processTotals(w: Window) {
    return this.all(`SELECT p.pid, p.comm, p.uid, p.exe, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(tx_packets) txp, sum(rx_packets) rxp, sum(conns) conns
      FROM minutes WHERE minute >= $1 AND minute < $2 GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`,
    Math.floor(w.from / 60_000), Math.ceil(w.to / 60_000));
  }

  processTotalsFromFlows(w: Window) {
    return this.all(`SELECT p.pid, p.comm, p.uid, p.exe, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(tx_packets) txp, sum(rx_packets) rxp, sum(conns) conns
      FROM records WHERE ts >= $1 AND ts < $2 GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`, BigInt(w.from), BigInt(w.to));
  }

  remotesOf(comm: string, w: Window) {
    return this.all(`SELECT hex(raddr) raddr, rport, proto, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM records
      WHERE ts >= $1 AND ts < $2 AND proc IN (SELECT id FROM procs WHERE comm = $3) GROUP BY raddr, rport, proto ORDER BY tx + rx DESC LIMIT 100`,
    BigInt(w.from), BigInt(w.to), comm);
  }

  whoTalkedTo(lo: Buffer, hi: Buffer, w: Window) {
    return this.all(`SELECT p.pid, p.comm, t.* FROM (SELECT proc, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM records
      WHERE ts >= $1 AND ts < $2 AND family = 4 AND raddr BETWEEN $3 AND $4 GROUP BY proc) t JOIN procs p ON p.id = t.proc ORDER BY tx + rx DESC`,
    BigInt(w.from), BigInt(w.to), lo, hi);
  }

  hourly(uid: number, w: Window) {
    return this.all(`SELECT minute // 60 AS hour, sum(tx_bytes) tx, sum(rx_bytes) rx, sum(conns) conns FROM minutes
      WHERE minute >= $1 AND minute < $2 AND proc IN (SELECT id FROM procs WHERE uid = $3) GROUP BY hour ORDER BY hour`,
    Math.floor(w.from / 60_000), Math.ceil(w.to / 60_000), uid);
  }

  async deleteBefore(ts: number): Promise<void> {
    await this.c.run('DELETE FROM records WHERE ts < $1', [BigInt(ts)]);
    await this.c.run('DELETE FROM minutes WHERE minute < $1', [Math.floor(ts / 60_000)]);
    await this.c.run('CHECKPOINT');
  }

  sizeBytes(): number {
    return fileSize(this.path) + fileSize(`${this.path}.wal`);
  }

  async check(): Promise<string> {
    // DuckDB checksums every block it reads: a full scan of every table is its check.
    await this.all('SELECT count(*), sum(tx_bytes), sum(octet_length(raddr)) FROM records');
    await this.all('SELECT count(*), sum(tx_bytes) FROM minutes');
    return 'ok';
  }

  async count(): Promise<number> {
    const r = (await this.all('SELECT count(*)::INTEGER n FROM records')) as Array<{ n: number }>;
    return r[0]!.n;
  }

  async close(): Promise<void> {
    this.c.closeSync();
    this.inst.closeSync();
  }
}

// --- JSON lines: the baseline ---------------------------------------------------------

/** Appends each record as a JSON line (what "just log it" costs); no queries. */
export class JsonlSink {
  private readonly fd: number;
  constructor(readonly path: string) {
    this.fd = fs.openSync(path, 'a');
  }
  insert(b: Batch): void {
    let s = '';
    for (const r of b.recs) s += `${JSON.stringify({ ...r, laddr: r.laddr.toString('hex'), raddr: r.raddr.toString('hex') })}\n`;
    fs.writeSync(this.fd, s);
  }
  sizeBytes(): number {
    return fileSize(this.path);
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

