// SPDX-License-Identifier: Apache-2.0
// The writer: owns the store and the accountant, in the writer thread (worker.ts) or, for
// tests, in the caller's. Observations become write sets; write sets wait in a bounded
// queue and are written one transaction each. A full disk or an I/O error never throws
// out of here: the queue keeps what it can, the state says `degraded`, and writing resumes
// by itself. A file DuckDB cannot read is moved aside and a new one started.
import { Accountant, DEFAULT_ACCOUNTANT_OPTIONS, PROTO_NUMBERS, RecordIds, flowKey, type AccountantOptions, type WriteSet } from './accountant.js';
import { CHANGES_ONLY, F, NO_CLOSED, NO_LPORT, NO_PID, NO_RPORT, NO_UID, OP, ObservationReader, ROW, tupleHash, type PackedBatch } from './pack.js';
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
  now?: () => number;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class HistoryWriter {
  private store: HistoryStore | null = null;
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
    }
    // After a move aside the accountant keeps its state; ids stay increasing either way.
    this.state = 'ok';
    this.onOpen?.();
    await this.refreshUsage();
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

  /** Takes a packed batch from the event loop: observations -> write set -> queue. */
  ingest(batch: PackedBatch): void {
    if (!this.accountant) {
      // Not open yet (or never opened): nothing can be accounted without the restored
      // state; the batch is lost, and counted.
      this.dropped += batch.count;
      this.reader.load(batch); // keep the string table in step
      return;
    }
    const a = this.accountant;
    const r = this.reader;
    r.load(batch);
    const v = new DataView(batch.rows);
    for (let i = 0, off = 0; i < batch.count; i++, off += ROW) {
      const op = v.getUint8(off + F.op);
      if (op === OP.rollup) {
        this.rollupRow(a, v, off);
        continue;
      }
      if (op === OP.close && this.closeFast(a, v, off)) continue;
      const u = r.at(v, off);
      const full = (v.getUint16(off + F.flags, true) & CHANGES_ONLY) === 0;
      if (u.op === OP.close) a.close(u.obs, u.now);
      else if (u.op === OP.listed) {
        this.inListing = true;
        a.listed(u.obs, u.now, u.now, full); // a listing's rows carry its start time
      } else if (u.op === OP.gone) a.leftTable(flowKey(u.obs), u.obs.firstMs, u.now);
      else {
        a.endListing(u.obs.firstMs, u.now, full);
        this.inListing = false;
      }
    }
    // A listing arrives in several batches (history.ts hands rows over as they are read):
    // its records wait for its end and go in one write set, as when a listing was one batch.
    // The queue's bound drops whole write sets, oldest first: the pieces of a full listing
    // of 1M flows (1M new records) would otherwise be dropped as they came.
    if (this.inListing) return;
    const ws = a.drain();
    if (ws.records.length || ws.open.size) this.enqueue(ws, Math.min(batch.sentAt, Date.now()));
  }

  /** What a listing still being read has made so far, queued now (a flush asked for by
   * the event loop, shutdown): the rest of it follows in a write set of its own. */
  endPending(): void {
    if (!this.inListing || !this.accountant) return;
    this.inListing = false;
    const ws = this.accountant.drain();
    if (ws.records.length || ws.open.size) this.enqueue(ws);
  }

  /** A close beyond the detail budget, read in place from the packed row: no object per
   * flow (Accountant.closeOverBudget). False: the general path takes it. */
  private closeFast(a: Accountant, v: DataView, off: number): boolean {
    const r = this.reader;
    const S = r.strings;
    const H = r.hashes;
    const flags = v.getUint16(off + F.flags, true);
    const protoId = v.getUint32(off + F.proto, true);
    const hash = tupleHash(H[protoId]!, H[v.getUint32(off + F.laddr, true)]!, flags & NO_LPORT ? 65536 : v.getUint16(off + F.lport, true),
      H[v.getUint32(off + F.raddr, true)]!, flags & NO_RPORT ? 65536 : v.getUint16(off + F.rport, true));
    const now = v.getFloat64(off + F.now, true);
    // String fields by id (0: none; ids index S). Written out, not through a helper closure:
    // this runs for every close beyond the budget and must allocate nothing.
    const comm = v.getUint32(off + F.comm, true);
    const exe = v.getUint32(off + F.exe, true);
    const cgroup = v.getUint32(off + F.cgroup, true);
    const unit = v.getUint32(off + F.unit, true);
    const iface = v.getUint32(off + F.iface, true);
    const dir = v.getUint32(off + F.dir, true);
    const how = v.getUint32(off + F.how, true);
    const proto = S[protoId] ?? '';
    return a.closeOverBudget(hash, flags & NO_PID ? null : v.getUint32(off + F.pid, true), comm ? S[comm]! : null, flags & NO_UID ? null : v.getUint32(off + F.uid, true),
      exe ? S[exe]! : null, cgroup ? S[cgroup]! : null, unit ? S[unit]! : null, PROTO_NUMBERS[proto] ?? (Number(proto) || 0), v.getUint8(off + F.family) === 4 ? 4 : 6,
      iface ? S[iface]! : null, dir ? S[dir]! : null, how ? S[how]! : null, flags & NO_CLOSED ? now : v.getFloat64(off + F.closed, true), v.getFloat64(off + F.first, true),
      v.getFloat64(off + F.tx, true), v.getFloat64(off + F.rx, true), v.getFloat64(off + F.txp, true), v.getFloat64(off + F.rxp, true), now);
  }

  /** Closes the event loop summed beyond the budget (OP.rollup, pack.ts addRollup). */
  private rollupRow(a: Accountant, v: DataView, off: number): void {
    const S = this.reader.strings;
    const flags = v.getUint16(off + F.flags, true);
    const str = (o: number): string | null => {
      const id = v.getUint32(off + o, true);
      return id ? S[id]! : null;
    };
    const proto = str(F.proto) ?? '';
    a.addRollup(flags & NO_PID ? null : v.getUint32(off + F.pid, true), str(F.comm), flags & NO_UID ? null : v.getUint32(off + F.uid, true), str(F.exe), str(F.cgroup), str(F.unit),
      PROTO_NUMBERS[proto] ?? (Number(proto) || 0), v.getUint8(off + F.family) === 4 ? 4 : 6, str(F.iface), str(F.dir), str(F.how),
      v.getFloat64(off + F.now, true), v.getFloat64(off + F.closed, true), v.getFloat64(off + F.first, true), v.getFloat64(off + F.last, true),
      v.getFloat64(off + F.tx, true), v.getFloat64(off + F.rx, true), v.getFloat64(off + F.txp, true), v.getFloat64(off + F.rxp, true));
  }

  /** Lower-level entry for tests and the in-thread use: the accountant itself. */
  get accounting(): Accountant | null {
    return this.accountant;
  }

  /** How long the oldest unwritten observation has waited since the event loop handed it
   * over (wall clock, as sentAt, whatever clock records use; 0 when none waits). */
  lagMs(): number {
    return this.queuedAt.length ? Math.max(0, Date.now() - this.queuedAt[0]!) : 0;
  }

  enqueue(ws: WriteSet, since = Date.now()): void {
    this.queue.push(ws);
    this.queuedAt.push(since);
    this.queued += ws.records.length;
    const max = this.opts.maxPending ?? 200_000;
    while (this.queued > max && this.queue.length > 1) {
      this.queuedAt.shift();
      const old = this.queue.shift()!;
      this.queued -= old.records.length;
      this.dropped += old.records.length;
    }
  }

  /** Writes what is queued. Never throws. */
  flush(): Promise<void> {
    return this.exclusive(() => this.flushNow());
  }

  private async flushNow(): Promise<void> {
    if (this.closed) return;
    if (!this.store) {
      if (this.now() < this.retryAt) return;
      await this.openNow();
      if (!this.store) return;
    }
    while (this.queue.length) {
      if (this.state === 'degraded' && this.now() < this.retryAt) return;
      // Everything that waits goes in one transaction: a commit costs about as much as
      // thousands of rows, so a writer that fell behind catches up instead of paying it per
      // batch. A failed write leaves the merged set queued as one.
      if (this.queue.length > 1) this.merge();
      const ws = this.queue[0]!;
      const t0 = performance.now();
      try {
        await this.store!.write(ws);
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
      this.queued -= ws.records.length;
      this.written += ws.records.length;
      this.lastWriteAt = this.now();
      this.lastWriteMs = performance.now() - t0;
      if (this.state !== 'ok') this.state = 'ok';
    }
  }

  /** The queued write sets as one, in order (records appended; for open-flow state the
   * later word wins, as within one set). */
  private merge(): void {
    const records: WriteSet['records'] = [];
    const open: WriteSet['open'] = new Map();
    for (const ws of this.queue) {
      for (const r of ws.records) records.push(r);
      for (const [k, v] of ws.open) {
        open.delete(k);
        open.set(k, v);
      }
    }
    const at = this.queuedAt[0]!;
    this.queue.length = 0;
    this.queuedAt.length = 0;
    this.queue.push({ records, open });
    this.queuedAt.push(at);
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
    this.span = await this.store.span();
  }

  query(q: HistoryQuery, scope: HistoryScope): Promise<HistoryResult> {
    return this.exclusive(async () => {
      if (!this.store || this.closed) throw new StoreError('open', `history is not available: ${this.lastError?.message ?? 'not open'}`);
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
        pending: this.queued, maxPending: this.opts.maxPending ?? 200_000, dropped: this.dropped, lagMs: this.lagMs(),
      },
      openFlowsTracked: this.accountant?.trackedCount ?? 0,
      lastWriteAt: this.lastWriteAt === null ? null : iso(this.lastWriteAt),
      lastWriteMs: this.lastWriteMs === null ? null : Math.round(this.lastWriteMs * 10) / 10,
      retention: { ...this.retention },
      lastError: this.lastError,
      movedAside: [...this.movedAside],
    };
  }

  /** Writes what is queued, then closes the database. */
  close(): Promise<void> {
    this.endPending();
    return this.exclusive(async () => {
      await this.flushNow();
      try {
        await this.store?.checkpoint();
      } catch {
        /* the WAL is replayed at the next open */
      }
      this.store?.close();
      this.store = null;
      this.closed = true;
      this.state = 'disabled';
    });
  }
}
