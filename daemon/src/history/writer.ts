// SPDX-License-Identifier: Apache-2.0
// The writer: owns the store and the accountant, in the writer thread (worker.ts) or, for
// tests, in the caller's. Each batch from the event loop is appended to the journal
// (journal.ts) and accounted; every `commitIntervalMs` (or sooner: size, a query, a flush)
// what the accountant made is drained into a write set and committed in one transaction,
// with the journal's sequence number; a kill -9 in between is repaired at the next open by
// replaying the journal. Write sets wait in a bounded queue. A full disk or an I/O error never throws
// out of here: the queue keeps what it can, the state says `degraded`, and writing resumes
// by itself. A file DuckDB cannot read is moved aside and a new one started.
import v8 from 'node:v8';
import { Accountant, DEFAULT_ACCOUNTANT_OPTIONS, PROTO_NUMBERS, RecordIds, flowHash, flowKey, type AccountantOptions, type WriteSet } from './accountant.js';
import { CHANGES_ONLY, F, NO_CLOSED, NO_LPORT, NO_PID, NO_RPORT, NO_UID, OP, ObservationReader, ROW, tupleHash, type PackedBatch } from './pack.js';
import { Journal } from './journal.js';
import { HistoryStore, StoreError, classify, isInvalidated, type StoreOptions } from './store.js';
import type { HistoryError, HistoryQuery, HistoryResult, HistoryScope, HistoryState, HistoryStatus } from './types.js';

export interface WriterOptions extends StoreOptions {
  accountant?: Partial<AccountantOptions>;
  /** Records waiting to be written, at most (beyond: the oldest are dropped and counted). */
  maxPending?: number;
  /** How often per-minute rows are merged (tables rewritten): at most this often. */
  compactEveryMs?: number;
  /** Between retries while the disk is full or the file cannot be opened. */
  retryMs?: number;
  /** DuckDB commits at most this often on its own (a query, a flush or the thresholds
   * below commit sooner); the journal keeps what is not committed yet. */
  commitIntervalMs?: number;
  /** Commit once this many records wait (drained or not). */
  commitRecords?: number;
  /** Commit once the journal is half this size; beyond it (commits failing), batches are no
   * longer journaled (counted: journal.unjournaled) but still kept in memory. */
  journalMaxBytes?: number;
  /** false: no journal (a commit per hand-over, the bound of the previous design). */
  journal?: boolean;
  /** Flush each journal append to the disk (fdatasync; journal.ts). Default true. */
  journalSync?: boolean;
  /** Write sets of at least this many rows (records and open-flow rows) are followed by
   * collections of the heap (collectGarbage); default LARGE_WRITE_ROWS. */
  collectAfterRows?: number;
  now?: () => number;
}

const iso = (ms: number) => new Date(ms).toISOString();

export const WRITER_DEFAULTS = { commitIntervalMs: 10_000, commitRecords: 20_000, journalMaxBytes: 64 << 20 } as const;

/** A write set this large is followed by a collection of the thread's heap (collectGarbage). */
export const LARGE_WRITE_ROWS = 50_000;
const COLLECT_DELAY_MS = 1000;
const COLLECT_EVERY_MS = 60_000;

export class HistoryWriter {
  private store: HistoryStore | null = null;
  private journal: Journal | null = null;
  /** Sequence number of the last batch received, accounted, drained into the queue, committed. */
  private seq = 0;
  private ingestedSeq = 0;
  private drainedSeq = 0;
  private committedSeq = 0;
  /** Journal seq of each queued write set (queue[i]). */
  private readonly queuedSeq: number[] = [];
  private lastCommitAt = 0;
  /** Not journaled (an append failed): handed over at this time (wall ms), at batch unsafeSeq. */
  private unsafeSince: number | null = null;
  private unsafeSeq = 0;
  /** How long the last batch waited between the hand-over and its journal append. */
  private lastIngestLag = 0;
  private readonly jstats = { appended: 0, failed: 0, unjournaled: 0, replayedBatches: 0, replayedRecords: 0, droppedBytes: 0, damaged: 0 };
  private accountant: Accountant | null = null;
  private readonly reader = new ObservationReader();
  /** Rows of a listing were read and its end not yet (ingest()). */
  private inListing = false;
  private readonly queue: WriteSet[] = [];
  /** When each queued write set was queued (queue[i]). */
  private readonly queuedAt: number[] = [];
  private queued = 0;
  private state: HistoryState = 'starting';
  private lastError: HistoryError | null = null;
  private readonly movedAside: HistoryStatus['movedAside'] = [];
  private written = 0;
  private dropped = 0;
  private lastWriteAt: number | null = null;
  private lastWriteMs: number | null = null;
  private readonly retention = { lastRunAt: null as string | null, deletedByAge: 0, deletedBySize: 0 };
  private usage = { usedBytes: 0, fileBytes: 0 };
  private engineMemory: { usedBytes: number; limit: string } | null = null;
  private span: { oldest: number | null; newest: number | null } = { oldest: null, newest: null };
  private retryAt = 0;
  /** Every database call runs on this chain: DuckDB calls on one connection must not interleave. */
  private chain: Promise<unknown> = Promise.resolve();
  private failedAttempts = 0;
  /** close() was called: nothing reopens the database any more. */
  private closed = false;
  private compactedAt = -Infinity;
  private readonly now: () => number;
  /** Called whenever the store is (re)opened and the accountant restored (the worker tells
   * the event loop: overbudget.ts sums nothing before). */
  onOpen: (() => void) | null = null;
  /**
   * A full collection of this thread's heap (worker.ts sets V8's gc()). After a write set of
   * at least LARGE_WRITE_ROWS rows (the first listing of a big flow table) the heap is mostly
   * garbage that an idle thread never collects, and one collection leaves its pages resident
   * half-empty: two, a second apart, once a minute at most (docs/benchmarks.md: 1M flows,
   * 1,340 -> 421 MiB of RSS in a model of the writer).
   */
  collectGarbage: (() => void) | null = null;
  private collections = 0;
  private collectAt = -Infinity;
  private collectTimer: NodeJS.Timeout | null = null;

  constructor(readonly opts: WriterOptions) {
    this.now = opts.now ?? Date.now;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private fail(code: HistoryError['code'], message: string): void {
    this.lastError = { at: iso(this.now()), code, message };
  }

  /** Opens the store (moving a corrupt file aside) and restores the accountant. Never
   * throws: on failure the state is `failed` or `degraded` and ensureOpen() retries. */
  open(): Promise<void> {
    return this.exclusive(() => this.openNow());
  }

  private async openNow(): Promise<void> {
    if (this.closed) return;
    const storeOpts: StoreOptions = this.opts;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        this.store = await HistoryStore.open(storeOpts);
        break;
      } catch (err) {
        const e = classify(err);
        if (e.code === 'corrupt' && attempt === 0) {
          this.setAside(e.message);
          continue;
        }
        this.fail(e.code === 'disk-full' ? 'disk-full' : 'open', `cannot open ${this.opts.dir}: ${e.message}`);
        this.state = e.code === 'disk-full' || e.code === 'io' ? 'degraded' : 'failed';
        this.retryAt = this.now() + (this.opts.retryMs ?? 5000);
        return;
      }
    }
    if (!this.store) return;
    const st = await this.store.restoreState();
    if (!this.accountant) {
      this.accountant = new Accountant(new RecordIds(st.lastId), { ...DEFAULT_ACCOUNTANT_OPTIONS, ...this.opts.accountant }, st.watermark);
      this.accountant.restore(st.open, this.now());
      if (this.opts.journal !== false) this.replay(st.journalSeq);
    }
    // After a move aside the accountant keeps its state; ids stay increasing either way.
    this.state = 'ok';
    this.lastCommitAt = this.now();
    // What a replay made goes into DuckDB before anything else.
    if (this.queue.length) await this.writeQueued();
    this.onOpen?.();
    await this.refreshUsage();
  }

  /** Replays the journal a previous writer left (killed, or its thread died): batches after
   * `committed` (the last one the database holds) are accounted as they were the first time
   * and queued; earlier ones only bring their strings. Then a new journal file starts. */
  private replay(committed: number): void {
    const dir = this.opts.dir;
    const { entries, stats } = Journal.read(dir);
    const r = new ObservationReader();
    let last = committed;
    let records = 0;
    for (const e of entries) {
      if (e.kind === 'strings') {
        r.setTable(e.strings);
        continue;
      }
      last = Math.max(last, e.seq);
      try {
        r.load(e.batch);
      } catch {
        stats.damaged++; // strings out of step: its file lost a record before it
        continue;
      }
      if (e.seq <= committed) continue;
      records += e.batch.count;
      this.account(e.batch, r);
      this.jstats.replayedBatches++;
    }
    this.inListing = false; // a listing the dead writer was reading will not end
    this.jstats.replayedRecords += records;
    this.jstats.droppedBytes += stats.droppedBytes;
    this.jstats.damaged += stats.damaged;
    if (stats.damaged) this.fail('corrupt', `journal: ${stats.damaged} damaged or torn record(s) (${stats.droppedBytes} bytes) dropped at replay`);
    // Batch numbers carry on past everything seen, committed or only journaled.
    this.seq = this.ingestedSeq = this.drainedSeq = last;
    this.committedSeq = committed;
    this.journal = new Journal(dir, this.opts.journalSync ?? true);
    if (last > committed) {
      const ws = this.accountant!.drain();
      this.enqueue(ws, last);
    }
    this.rotateJournal();
  }

  /** Starts the journal file the next batch goes to (its string table: the reader's now). */
  private rotateJournal(): void {
    if (!this.journal) return;
    try {
      this.journal.rotate(this.seq + 1, this.reader.strings);
    } catch (err) {
      this.journal.abandon();
      this.journalFailed(err);
    }
  }

  private journalFailed(err: unknown): void {
    const e = classify(err);
    this.jstats.failed++;
    this.fail(e.code === 'disk-full' ? 'disk-full' : 'io', `journal: ${e.message}`);
    if (this.state === 'ok') this.state = 'degraded';
  }

  /** After a fatal error DuckDB refuses every call on this instance: let it go, and reopen
   * at the next retry (what was not written stays queued). True when that was the case. */
  private dropIfInvalidated(err: unknown, code: HistoryError['code']): boolean {
    if (!isInvalidated(err)) return false;
    try {
      this.store?.close();
    } catch {
      /* it is broken */
    }
    this.store = null;
    this.fail(code, `${(err as Error).message ?? String(err)} (reopening the file)`);
    this.state = 'degraded';
    this.retryAt = this.now() + (this.opts.retryMs ?? 5000);
    return true;
  }

  private setAside(reason: string): void {
    try {
      this.store?.close();
    } catch {
      /* it is broken */
    }
    this.store = null;
    try {
      const to = HistoryStore.moveAside(this.opts.dir, this.now());
      this.movedAside.push({ path: to, at: iso(this.now()), reason });
      this.fail('corrupt', `${reason}; moved aside to ${to}, started a new file`);
    } catch (err) {
      this.fail('corrupt', `${reason}; could not move it aside: ${(err as Error).message}`);
    }
  }

  /** Takes a packed batch from the event loop: journaled, then accounted (what the
   * accountant makes waits in it for the next commit). */
  ingest(batch: PackedBatch): void {
    if (!this.accountant) {
      // Not open yet (or never opened): nothing can be accounted without the restored
      // state; the batch is lost, and counted.
      this.dropped += batch.count;
      this.reader.load(batch); // keep the string table in step
      return;
    }
    const seq = ++this.seq;
    this.lastIngestLag = Math.max(0, Date.now() - batch.sentAt);
    if (this.journal) {
      if (this.journal.bytes >= (this.opts.journalMaxBytes ?? WRITER_DEFAULTS.journalMaxBytes)) {
        this.jstats.unjournaled++;
        this.journal.abandon(); // the next append starts a file with the whole string table
        this.markUnsafe(batch, seq);
      } else {
        try {
          // A file after a failed write starts with the string table as this batch expects it.
          if (!this.journal.isOpen) this.journal.rotate(seq, this.reader.strings);
          this.journal.append(seq, batch);
          this.jstats.appended++;
        } catch (err) {
          this.journal.abandon();
          this.journalFailed(err);
          this.markUnsafe(batch, seq);
        }
      }
    }
    this.reader.load(batch);
    this.account(batch, this.reader);
    this.ingestedSeq = seq;
  }

  private markUnsafe(batch: PackedBatch, seq: number): void {
    if (this.unsafeSince === null) this.unsafeSince = Math.min(batch.sentAt, Date.now());
    this.unsafeSeq = seq;
  }

  /** The batch's rows into the accountant (`r`: its strings loaded). */
  private account(batch: PackedBatch, r: ObservationReader): void {
    const a = this.accountant!;
    const v = new DataView(batch.rows);
    for (let i = 0, off = 0; i < batch.count; i++, off += ROW) {
      const op = v.getUint8(off + F.op);
      if (op === OP.rollup) {
        this.rollupRow(a, r, v, off);
        continue;
      }
      if (op === OP.close && this.closeFast(a, r, v, off)) continue;
      const u = r.at(v, off);
      const full = (v.getUint16(off + F.flags, true) & CHANGES_ONLY) === 0;
      if (u.op === OP.close) a.close(u.obs, u.now);
      else if (u.op === OP.listed) {
        this.inListing = true;
        a.listed(u.obs, u.now, u.now, full); // a listing's rows carry its start time
      } else if (u.op === OP.gone) a.leftTable(flowKey(u.obs), u.obs.firstMs, u.now, flowHash(u.obs));
      else {
        a.endListing(u.obs.firstMs, u.now, full);
        this.inListing = false;
      }
    }
    // A listing arrives in several batches (history.ts hands rows over as they are read):
    // a commit waits for its end (drain() below), so its records go in one write set.
  }

  /** What the accountant made so far, queued with the journal seq it covers (the next
   * batch goes to a new journal file, so files are released whole). `force`: even in the
   * middle of a listing (a flush asked for by the event loop, shutdown): the rest of it
   * follows in a write set of its own. */
  private drain(force: boolean): void {
    if (!this.accountant || (this.inListing && !force)) return;
    if (this.ingestedSeq === this.drainedSeq && this.accountant.pendingRecords === 0) return;
    this.inListing = false;
    const ws = this.accountant.drain();
    this.drainedSeq = this.ingestedSeq;
    this.enqueue(ws, this.ingestedSeq);
    if (this.journal) this.rotateJournal();
  }

  /** See drain(force). */
  endPending(): void {
    if (this.inListing) this.drain(true);
  }

  /** Records waiting: queued write sets and what the accountant holds. */
  private get waiting(): number {
    return this.queued + (this.accountant?.pendingRecords ?? 0);
  }

  /** Whether a commit is due now (time, size), or a retry of a failed one. */
  private commitDue(): boolean {
    // Without a journal, or not open yet (flushNow retries the open when its time comes).
    if (this.opts.journal === false || !this.store) return true;
    if (this.queue.length && this.state !== 'ok') return true;
    if (this.inListing || (this.ingestedSeq === this.drainedSeq && !this.queue.length)) return false;
    return this.now() - this.lastCommitAt >= (this.opts.commitIntervalMs ?? WRITER_DEFAULTS.commitIntervalMs)
      || this.waiting >= (this.opts.commitRecords ?? WRITER_DEFAULTS.commitRecords)
      || (this.journal !== null && this.journal.bytes >= (this.opts.journalMaxBytes ?? WRITER_DEFAULTS.journalMaxBytes) / 2);
  }

  /** Commits if due (the writer thread calls it after each batch and every second). Never throws. */
  commitIfDue(): Promise<void> {
    return this.exclusive(async () => {
      if (!this.commitDue()) return;
      await this.flushNow(false);
    });
  }

  /** A close of a flow the accountant does not track, read in place from the packed row: no
   * object per flow but its record (Accountant.closeUntracked: in detail within the budget,
   * rolled up beyond). False: the general path takes it. */
  private closeFast(a: Accountant, r: ObservationReader, v: DataView, off: number): boolean {
    const S = r.strings;
    const H = r.hashes;
    const flags = v.getUint16(off + F.flags, true);
    const protoId = v.getUint32(off + F.proto, true);
    const laddr = v.getUint32(off + F.laddr, true);
    const raddr = v.getUint32(off + F.raddr, true);
    const lport = flags & NO_LPORT ? null : v.getUint16(off + F.lport, true);
    const rport = flags & NO_RPORT ? null : v.getUint16(off + F.rport, true);
    const hash = tupleHash(H[protoId]!, H[laddr]!, lport ?? 65536, H[raddr]!, rport ?? 65536);
    const now = v.getFloat64(off + F.now, true);
    // String fields by id (0: none; ids index S). Written out, not through a helper closure:
    // this runs for every close and must allocate nothing it does not keep.
    const comm = v.getUint32(off + F.comm, true);
    const exe = v.getUint32(off + F.exe, true);
    const cgroup = v.getUint32(off + F.cgroup, true);
    const unit = v.getUint32(off + F.unit, true);
    const iface = v.getUint32(off + F.iface, true);
    const dir = v.getUint32(off + F.dir, true);
    const how = v.getUint32(off + F.how, true);
    const name = v.getUint32(off + F.name, true);
    const attrs = v.getUint32(off + F.attrs, true);
    return a.closeUntracked(hash, flags & NO_PID ? null : v.getUint32(off + F.pid, true), comm ? S[comm]! : null, flags & NO_UID ? null : v.getUint32(off + F.uid, true),
      exe ? S[exe]! : null, cgroup ? S[cgroup]! : null, unit ? S[unit]! : null, S[protoId] ?? '', v.getUint8(off + F.family) === 4 ? 4 : 6,
      laddr ? S[laddr]! : '', lport, raddr ? S[raddr]! : '', rport,
      iface ? S[iface]! : null, dir ? S[dir]! : null, how ? S[how]! : null, name ? S[name]! : null, attrs ? S[attrs]! : null,
      flags & NO_CLOSED ? now : v.getFloat64(off + F.closed, true), v.getFloat64(off + F.first, true),
      v.getFloat64(off + F.tx, true), v.getFloat64(off + F.rx, true), v.getFloat64(off + F.txp, true), v.getFloat64(off + F.rxp, true), now);
  }

  /** Closes the event loop summed beyond the budget (OP.rollup, pack.ts addRollup). */
  private rollupRow(a: Accountant, r: ObservationReader, v: DataView, off: number): void {
    const S = r.strings;
    const flags = v.getUint16(off + F.flags, true);
    const str = (o: number): string | null => {
      const id = v.getUint32(off + o, true);
      return id ? S[id]! : null;
    };
    const proto = str(F.proto) ?? '';
    a.addRollup(flags & NO_PID ? null : v.getUint32(off + F.pid, true), str(F.comm), flags & NO_UID ? null : v.getUint32(off + F.uid, true), str(F.exe), str(F.cgroup), str(F.unit),
      PROTO_NUMBERS[proto] ?? (Number(proto) || 0), v.getUint8(off + F.family) === 4 ? 4 : 6, str(F.iface), str(F.dir), str(F.how),
      str(F.raddr), flags & NO_LPORT ? null : v.getUint16(off + F.lport, true), flags & NO_RPORT ? null : v.getUint16(off + F.rport, true), str(F.name),
      v.getFloat64(off + F.now, true), v.getFloat64(off + F.closed, true), v.getFloat64(off + F.first, true), v.getFloat64(off + F.last, true),
      v.getFloat64(off + F.tx, true), v.getFloat64(off + F.rx, true), v.getFloat64(off + F.txp, true), v.getFloat64(off + F.rxp, true));
  }

  /** Lower-level entry for tests and the in-thread use: the accountant itself. */
  get accounting(): Accountant | null {
    return this.accountant;
  }

  /** How long the oldest observation that a kill -9 would lose has waited since the event
   * loop handed it over (wall clock, as sentAt): not journaled and not committed, or (the
   * thread behind) the last batch's wait before its journal append. Without a journal, the
   * oldest not committed. */
  lagMs(): number {
    if (!this.journal) return this.queuedAt.length ? Math.max(0, Date.now() - this.queuedAt[0]!) : 0;
    return this.unsafeSince !== null ? Math.max(0, Date.now() - this.unsafeSince) : this.lastIngestLag;
  }

  enqueue(ws: WriteSet, seq = this.ingestedSeq, since = Date.now()): void {
    if (!ws.records.length && !ws.open.size && !ws.forget.length && seq <= this.committedSeq) return;
    this.queue.push(ws);
    this.queuedAt.push(since);
    this.queuedSeq.push(seq);
    this.queued += ws.records.length;
    const max = this.opts.maxPending ?? 200_000;
    while (this.queued > max && this.queue.length > 1) {
      this.queuedAt.shift();
      this.queuedSeq.shift();
      const old = this.queue.shift()!;
      this.queued -= old.records.length;
      this.dropped += old.records.length;
    }
  }

  /** Commits everything the accountant made (a listing being read included) and what is
   * queued. Never throws. */
  flush(): Promise<void> {
    return this.exclusive(() => this.flushNow(true));
  }

  /** `force`: drain even in the middle of a listing (else that waits for its end). */
  private async flushNow(force: boolean): Promise<void> {
    if (this.closed) return;
    if (!this.store) {
      if (this.now() < this.retryAt) return;
      await this.openNow();
      if (!this.store) return;
    }
    this.drain(force);
    await this.writeQueued();
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length) {
      if (this.state === 'degraded' && this.now() < this.retryAt) return;
      // Everything that waits goes in one transaction: a commit costs about as much as
      // thousands of rows, so a writer that fell behind catches up instead of paying it per
      // batch. A failed write leaves the merged set queued as one.
      if (this.queue.length > 1) this.merge();
      const ws = this.queue[0]!;
      const seq = this.queuedSeq[0]!;
      const t0 = performance.now();
      try {
        await this.store!.write(ws, this.journal ? seq : undefined);
      } catch (err) {
        const e = err instanceof StoreError ? err : classify(err);
        if (this.dropIfInvalidated(err, e.code === 'disk-full' ? 'disk-full' : 'io')) return;
        if (e.code === 'corrupt') {
          this.setAside(e.message);
          await this.openNow();
          if (!this.store) return;
          continue;
        }
        if (e.code === 'internal' && ++this.failedAttempts >= 3) {
          // Not the disk: something in this batch the database refuses. Do not block the
          // rest behind it.
          this.queue.shift();
          this.queuedAt.shift();
          this.queuedSeq.shift();
          this.queued -= ws.records.length;
          this.dropped += ws.records.length;
          this.failedAttempts = 0;
          this.fail('internal', `a batch of ${ws.records.length} records could not be written and was dropped: ${e.message}`);
          continue;
        }
        this.fail(e.code === 'disk-full' ? 'disk-full' : e.code === 'io' ? 'io' : 'internal', e.message);
        this.state = 'degraded';
        this.retryAt = this.now() + (this.opts.retryMs ?? 5000);
        return;
      }
      this.failedAttempts = 0;
      this.queue.shift();
      this.queuedAt.shift();
      this.queuedSeq.shift();
      this.queued -= ws.records.length;
      this.written += ws.records.length;
      if (ws.records.length + ws.open.size >= (this.opts.collectAfterRows ?? LARGE_WRITE_ROWS)) this.scheduleCollection();
      this.lastWriteAt = this.now();
      this.lastCommitAt = this.now();
      this.lastWriteMs = performance.now() - t0;
      if (this.state !== 'ok') this.state = 'ok';
      this.committedSeq = Math.max(this.committedSeq, seq);
      if (this.unsafeSince !== null && this.unsafeSeq <= this.committedSeq) this.unsafeSince = null;
      if (this.journal) {
        try {
          this.journal.release(this.committedSeq);
        } catch {
          /* a file left is replayed and skipped (its seqs are committed) */
        }
      }
    }
  }

  /** The queued write sets as one, in order (records appended; for open-flow state the
   * later word wins, as within one set). */
  private merge(): void {
    const records: WriteSet['records'] = [];
    const open: WriteSet['open'] = new Map();
    const forget: number[] = [];
    for (const ws of this.queue) {
      for (const r of ws.records) records.push(r);
      for (const f of ws.forget) forget.push(f);
      for (const [k, v] of ws.open) {
        open.delete(k);
        open.set(k, v);
      }
    }
    const at = this.queuedAt[0]!;
    const seq = Math.max(...this.queuedSeq);
    this.queue.length = 0;
    this.queuedAt.length = 0;
    this.queuedSeq.length = 0;
    this.queue.push({ records, open, forget });
    this.queuedAt.push(at);
    this.queuedSeq.push(seq);
  }

  /** New retention limits (a reload): applied from the next maintain() on, which the
   * caller may run at once. The store reads them from the same options object. */
  setLimits(l: { retentionDays: number; maxBytes: number }): void {
    this.opts.retentionDays = l.retentionDays;
    this.opts.maxBytes = l.maxBytes;
  }

  /** Retention by age and size, and compaction of finished minutes. Never throws. */
  maintain(): Promise<void> {
    return this.exclusive(async () => {
      if (!this.store || this.closed) return;
      const now = this.now();
      try {
        const r = await this.store.enforceRetention(now);
        this.retention.deletedByAge += r.byAge;
        this.retention.deletedBySize += r.bySize;
        this.retention.lastRunAt = iso(now);
        if (now - this.compactedAt >= (this.opts.compactEveryMs ?? 600_000)) {
          await this.store.compact();
          this.compactedAt = now;
        }
        await this.refreshUsage();
      } catch (err) {
        const e = classify(err);
        if (this.dropIfInvalidated(err, e.code === 'disk-full' ? 'disk-full' : 'io')) return;
        if (e.code === 'corrupt') {
          this.setAside(e.message);
          await this.openNow();
          return;
        }
        this.fail(e.code === 'disk-full' ? 'disk-full' : e.code === 'io' ? 'io' : 'internal', `retention: ${e.message}`);
      }
    });
  }

  /** Size and span for status (cheap: DuckDB answers min/max of `id` from its per-row-group
   * statistics). Never throws. */
  refresh(): Promise<void> {
    return this.exclusive(() => this.refreshUsage().catch((err: unknown) => void this.dropIfInvalidated(err, 'io')));
  }

  private async refreshUsage(): Promise<void> {
    if (!this.store) return;
    const u = await this.store.usage();
    this.usage = { usedBytes: u.usedBytes, fileBytes: u.fileBytes };
    this.engineMemory = await this.store.engineMemory();
    this.span = await this.store.span();
  }

  query(q: HistoryQuery, scope: HistoryScope): Promise<HistoryResult> {
    return this.exclusive(async () => {
      if (!this.store || this.closed) throw new StoreError('open', `history is not available: ${this.lastError?.message ?? 'not open'}`);
      // Everything handed over is answered: what waits in the accountant is committed first
      // (a listing being read waits for its end, as its records always did).
      await this.flushNow(false);
      if (!this.store) throw new StoreError('io', `history is reopening its file after an error: ${this.lastError?.message ?? ''}`);
      try {
        return await this.store.query(q, scope);
      } catch (err) {
        const e = classify(err);
        if (this.dropIfInvalidated(err, 'io')) throw new StoreError('io', `history is reopening its file after an error: ${e.message}`);
        if (e.code === 'corrupt') {
          this.setAside(e.message);
          await this.openNow();
        }
        throw e;
      }
    });
  }

  status(): HistoryStatus {
    // This isolate's heap: the writer thread's own (status.resources has the event loop's).
    const heap = v8.getHeapStatistics();
    return {
      state: this.state,
      engine: 'duckdb',
      file: this.store?.file ?? this.opts.dir,
      sizeBytes: this.usage.usedBytes,
      maxBytes: this.opts.maxBytes,
      retentionDays: this.opts.retentionDays,
      oldestRecordAt: this.span.oldest === null ? null : iso(this.span.oldest),
      newestRecordAt: this.span.newest === null ? null : iso(this.span.newest),
      records: {
        written: this.written, rolledUp: this.accountant?.stats.rolledUp ?? 0,
        pending: this.waiting, maxPending: this.opts.maxPending ?? 200_000, dropped: this.dropped, lagMs: this.lagMs(),
      },
      ...(this.journal
        ? {
          journal: {
            bytes: this.journal.bytes, files: this.journal.fileCount, batches: this.jstats.appended, uncommittedBatches: this.seq - this.committedSeq,
            failed: this.jstats.failed, unjournaled: this.jstats.unjournaled,
            sync: this.journal.sync, syncs: this.journal.syncs, syncMs: Math.round(this.journal.syncMs * 10) / 10,
            replayed: { batches: this.jstats.replayedBatches, observations: this.jstats.replayedRecords, droppedBytes: this.jstats.droppedBytes, damaged: this.jstats.damaged },
            lastCommitAt: this.lastWriteAt === null ? null : iso(this.lastWriteAt), commitIntervalMs: this.opts.commitIntervalMs ?? WRITER_DEFAULTS.commitIntervalMs,
          },
        }
        : {}),
      openFlowsTracked: this.accountant?.trackedCount ?? 0,
      writerHeapBytes: heap.used_heap_size,
      writerExternalBytes: heap.external_memory,
      writerCollections: this.collections,
      ...(this.engineMemory ? { engineMemory: { ...this.engineMemory } } : {}),
      lastWriteAt: this.lastWriteAt === null ? null : iso(this.lastWriteAt),
      lastWriteMs: this.lastWriteMs === null ? null : Math.round(this.lastWriteMs * 10) / 10,
      retention: { ...this.retention },
      lastError: this.lastError,
      movedAside: [...this.movedAside],
    };
  }

  /** Two collections (collectGarbage) a second apart, unless some ran within the minute. */
  private scheduleCollection(): void {
    const gc = this.collectGarbage;
    const now = performance.now();
    if (!gc || this.collectTimer || now - this.collectAt < COLLECT_EVERY_MS) return;
    this.collectAt = now;
    const run = (left: number) => {
      this.collectTimer = setTimeout(() => {
        gc();
        this.collections++;
        if (left > 1) run(left - 1);
        else this.collectTimer = null;
      }, COLLECT_DELAY_MS);
      this.collectTimer.unref();
    };
    run(2);
  }

  /** Writes what is queued, then closes the database. */
  close(): Promise<void> {
    return this.exclusive(async () => {
      await this.flushNow(true);
      try {
        await this.store?.checkpoint();
      } catch {
        /* the WAL is replayed at the next open */
      }
      // Everything committed: no journal left to replay (else it stays, and the next open
      // replays what is not committed).
      if (this.journal && !this.queue.length && this.committedSeq >= this.seq) this.journal.removeAll();
      this.journal?.close();
      this.store?.close();
      this.store = null;
      this.closed = true;
      if (this.collectTimer) clearTimeout(this.collectTimer);
      this.collectTimer = null;
      this.state = 'disabled';
    });
  }
}
