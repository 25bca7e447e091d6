// SPDX-License-Identifier: Apache-2.0
// History on the event loop's side: what the daemon calls. recordClose() is on the hot path
// (a close event): it packs the observation into a buffer and returns. Every `flushMs` the
// buffer is handed to the writer thread (worker.ts), which accounts, writes, enforces
// retention and answers queries. Nothing here throws at the caller because of the disk:
// problems show in status(), and live monitoring does not depend on any of it.
import { Worker } from 'node:worker_threads';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILD_DIR } from '../version.js';
import { DEFAULT_ACCOUNTANT_OPTIONS, type AccountantOptions } from './accountant.js';
import { CloseRollups, endpointsPerHandover } from './overbudget.js';
import { CHANGES_ONLY, OP, ObservationPacker } from './pack.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { FlowObservation, GoneObservation, HistoryQuery, HistoryResult, HistoryScope, HistoryStatus } from './types.js';

export interface HistoryOptions {
  /** Directory of the database (the unit's StateDirectory=, /var/lib/ebpfmon). */
  dir: string;
  maxBytes: number;
  retentionDays: number;
  /** Short flows per second kept in detail, in bursts of ten times that (more are rolled
   * up per process, protocol, family and minute). */
  detailFlowsPerSec?: number;
  accountant?: Partial<AccountantOptions>;
  /** How often packed observations go to the writer (a kill -9 loses at most this plus one write). */
  flushMs?: number;
  /** Retention and compaction period. */
  maintainMs?: number;
  statusMs?: number;
  maxPending?: number;
  retryMs?: number;
  /** DuckDB commits at most this often on its own (the journal keeps the rest; writer.ts). */
  commitIntervalMs?: number;
  commitRecords?: number;
  journalMaxBytes?: number;
  /** false: no journal, a commit per hand-over (benchmarks compare the two). */
  journal?: boolean;
  /** Flush each journal append to the disk (history.journalSync; journal.ts). Default true. */
  journalSync?: boolean;
  threads?: number;
  memoryLimit?: string;
  /** Write sets of this many rows are followed by collections of the writer's heap (writer.ts; tests lower it). */
  collectAfterRows?: number;
  /** Told about problems once each (pino's warn/error fit). */
  log?: { warn(msg: string): void; error(msg: string): void };
}

/** What a listing in progress is handed (History.beginListing()). */
export interface ListingSink {
  /** A flow that left the table since the previous listing (before the first listed()). */
  gone(g: GoneObservation): void;
  listed(o: FlowObservation): void;
  /** The reading ended (`now`: when). */
  end(now?: number): void;
  /** The reading failed part way. */
  abort(): void;
}

/** Rows of a listing packed before they go to the writer without waiting for the hand-over
 * (512 KiB of rows: a full listing of a million flows is not held whole). It was 65,536
 * rows (8 MiB) until December 2026: growing the packer's buffer that far, and making a new
 * one as large at each hand-over, held the event loop 16-21 ms at a time during listings
 * at 10k connections/s (docs/benchmarks.md, "The stall's longest tasks"). */
const LISTING_ROWS_PER_POST = 4096;

export const HISTORY_DEFAULTS = { flushMs: 500, maintainMs: 60_000, statusMs: 1000, maxPending: 200_000, retryMs: 5000, stopMs: 2500 } as const;

export class HistoryError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'HistoryError';
  }
}

/** The writer's budget: detailFlowsPerSec with a burst of ten seconds' worth (the default:
 * 1000/s, 10,000), overridden by `accountant`. The event loop applies the same. */
function budgetOptions(o: HistoryOptions): Partial<AccountantOptions> {
  return { ...(o.detailFlowsPerSec !== undefined ? { detailPerSec: o.detailFlowsPerSec, detailBurst: 10 * o.detailFlowsPerSec } : {}), ...o.accountant };
}

/**
 * The writer thread's entry. Run from the daemon's bundle, this module sits in its
 * directory, next to the worker's own bundle (daemon/bundle.mjs): one file instead of the
 * compiled tree's 17. Run from the compiled tree (unit tests), the compiled tree's worker.js.
 */
const BUNDLED_WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ebpfmon-history-worker.js');
const WORKER = fs.existsSync(BUNDLED_WORKER) ? BUNDLED_WORKER : path.join(BUILD_DIR, 'js/daemon/src/history/worker.js');

export class History {
  private worker: Worker | null = null;
  private packer = new ObservationPacker();
  /** Closes beyond the detail budget, summed here rather than packed one by one. */
  private readonly rollups: CloseRollups;
  /** The minute of the last close: the sums go to the packer when it changes. */
  private minute = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly listTimers: NodeJS.Timeout[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private cached: HistoryStatus;
  private stopping = false;
  private restarts = 0;
  /** Observations packed while no writer thread was there to take them. */
  private lostWhileDown = 0;
  /** Observations in each batch posted and not yet read by the writer (it sends the buffer
   * back once the batch is journaled and accounted), oldest first. */
  private readonly unread: number[] = [];
  private readonly listings: NonNullable<HistoryStatus['listings']> = { full: 0, changesOnly: 0, flows: 0, gone: 0, last: null };

  private constructor(readonly opts: HistoryOptions) {
    const a = { ...DEFAULT_ACCOUNTANT_OPTIONS, ...budgetOptions(opts) };
    this.rollups = new CloseRollups(a.detailPerSec, a.detailBurst, Date.now(), endpointsPerHandover(a.detailPerSec, opts.flushMs ?? HISTORY_DEFAULTS.flushMs));
    this.cached = {
      state: 'starting', engine: 'duckdb', file: opts.dir, sizeBytes: 0, maxBytes: opts.maxBytes, retentionDays: opts.retentionDays,
      oldestRecordAt: null, newestRecordAt: null, records: { written: 0, rolledUp: 0, pending: 0, maxPending: opts.maxPending ?? HISTORY_DEFAULTS.maxPending, dropped: 0, lagMs: 0 },
      openFlowsTracked: 0, lastWriteAt: null, lastWriteMs: null, retention: { lastRunAt: null, deletedByAge: 0, deletedBySize: 0 }, lastError: null, movedAside: [],
    };
  }

  /** Starts the writer thread; returns at once (the database opens in the background). */
  static start(opts: HistoryOptions): History {
    const h = new History(opts);
    h.spawn();
    h.timer = setInterval(() => h.post(), opts.flushMs ?? HISTORY_DEFAULTS.flushMs);
    h.timer.unref();
    return h;
  }

  private spawn(): void {
    const o = this.opts;
    const w = new Worker(WORKER, {
      workerData: {
        dir: o.dir, maxBytes: o.maxBytes, retentionDays: o.retentionDays, threads: o.threads, memoryLimit: o.memoryLimit,
        accountant: budgetOptions(o),
        maxPending: o.maxPending ?? HISTORY_DEFAULTS.maxPending, retryMs: o.retryMs ?? HISTORY_DEFAULTS.retryMs,
        commitIntervalMs: o.commitIntervalMs, commitRecords: o.commitRecords, journalMaxBytes: o.journalMaxBytes, journal: o.journal, journalSync: o.journalSync,
        maintainMs: o.maintainMs ?? HISTORY_DEFAULTS.maintainMs, statusMs: o.statusMs ?? HISTORY_DEFAULTS.statusMs,
        collectAfterRows: o.collectAfterRows,
      },
    });
    w.unref();
    w.on('message', (m: FromWorker) => this.onMessage(m));
    w.on('error', (err) => {
      this.cached = { ...this.cached, state: 'failed', lastError: { at: new Date().toISOString(), code: 'worker', message: `writer thread failed: ${err.message}` } };
      this.opts.log?.error(`history writer thread failed: ${err.message}`);
    });
    w.on('exit', () => {
      if (this.worker !== w) return;
      this.worker = null;
      for (const [, p] of this.waiting) p.reject(new HistoryError('worker', 'history writer thread exited'));
      this.waiting.clear();
      this.unread.length = 0;
      if (this.stopping) return;
      // Start over with a new thread (it reopens the file); what was packed for the old
      // one refers to its string table: count it as lost.
      this.lostWhileDown += this.packer.observations;
      this.packer = new ObservationPacker();
      this.rollups.writerGone();
      const delay = Math.min(60_000, 1000 * 2 ** Math.min(6, this.restarts++));
      setTimeout(() => !this.stopping && this.spawn(), delay).unref();
    });
    this.worker = w;
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'status': {
        const prev = this.cached.lastError;
        this.cached = m.status;
        this.cached.records.dropped += this.lostWhileDown;
        const e = m.status.lastError;
        if (e && (prev === null || e.at !== prev.at)) (e.code === 'corrupt' || e.code === 'internal' ? this.opts.log?.error : this.opts.log?.warn)?.call(this.opts.log, `history: ${e.message}`);
        break;
      }
      case 'result': {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.error) p?.reject(new HistoryError(m.error.code, m.error.message));
        else p?.resolve(m.result);
        break;
      }
      case 'flushed': {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        p?.resolve(undefined);
        break;
      }
      case 'log':
        this.opts.log?.[m.level](m.msg);
        break;
      case 'opened':
        this.rollups.writerReady();
        break;
      case 'buffer':
        this.unread.shift();
        this.packer.recycle(m.rows);
        break;
      case 'closed':
        break;
    }
  }

  private post(ack?: number): void {
    this.rollups.drain(this.packer);
    const observations = this.packer.observations;
    const b = this.packer.take();
    if (!this.worker) {
      if (b) this.lostWhileDown += observations;
      return;
    }
    if (b) {
      this.unread.push(observations);
      this.send({ type: 'batch', batch: b, ...(ack !== undefined ? { ack } : {}) }, [b.rows]);
    }
    else if (ack !== undefined) this.send({ type: 'flush', id: ack });
  }

  private send(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker?.postMessage(m, transfer);
  }

  private request<T>(make: (id: number) => ToWorker): Promise<T> {
    if (!this.worker) return Promise.reject(new HistoryError('worker', 'history writer thread is not running'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send(make(id));
    });
  }

  // --- feeding (hot path) -----------------------------------------------------------------

  /** A flow closed; `o` carries its final counts. */
  recordClose(o: FlowObservation, now = Date.now()): void {
    // A new minute: the last minute's sums are packed first. A record's minute is its id's
    // (ids only grow within a batch), so a sum packed after rows of the next minute would
    // be counted in that minute.
    const minute = Math.floor((o.closedMs ?? now) / 60_000);
    if (minute !== this.minute) {
      this.rollups.drain(this.packer);
      this.minute = minute;
    }
    if (!this.rollups.close(o, now)) this.packer.add(OP.close, o, now);
  }

  /** A full listing of the flow table (every open flow and recently closed one), read from
   * `listingStart` on. Lets history record long flows minute by minute and notice flows
   * that left the table. */
  recordListing(flows: Iterable<FlowObservation>, listingStart: number, now = Date.now()): void {
    const l = this.beginListing(listingStart, true);
    for (const o of flows) l.listed(o);
    l.end(now);
  }

  /**
   * A listing read over time (startListings()): `full` lists every flow of the table;
   * otherwise only the flows that changed since the previous listing, after `gone()` for
   * each flow that left the table since then (docs/history.md "Listings"). Rows go to the
   * writer as they come (with the next hand-over, or every LISTING_ROWS_PER_POST rows), so a
   * full listing of a large table is never held whole.
   */
  beginListing(listingStart: number, full: boolean): ListingSink {
    // The sums first: the writer reads them (and moves its watermark past them) before
    // the listing, which may show some of those flows closed.
    this.rollups.drain(this.packer);
    this.rollups.beginListing();
    const flags = full ? 0 : CHANGES_ONLY;
    let ended = false;
    let flows = 0;
    let gone = 0;
    return {
      gone: (g) => {
        gone++;
        this.packer.addGone(g, listingStart);
      },
      listed: (o) => {
        flows++;
        this.packer.add(OP.listed, o, listingStart, flags);
        if (this.packer.pending >= LISTING_ROWS_PER_POST) this.post();
      },
      end: (now = Date.now()) => {
        if (ended) return;
        ended = true;
        this.packer.endListing(listingStart, now, !full);
        this.rollups.endListing(now);
        if (full) this.listings.full++;
        else this.listings.changesOnly++;
        this.listings.flows += flows;
        this.listings.gone += gone;
        this.listings.last = { full, flows, gone, at: new Date(listingStart).toISOString(), ms: Math.max(0, now - listingStart) };
      },
      abort: () => {
        // What was read stays (records of what was seen are right); absence means nothing:
        // ended as an incremental listing.
        if (ended) return;
        ended = true;
        this.packer.endListing(listingStart, Date.now(), true);
        this.rollups.endListing(Date.now());
      },
    };
  }

  /** Lists the flow table every `everyMs` through `list` (the daemon passes its flow
   * table's listChanges(), mapped with feed.ts): `list` calls `begin` once, then hands over
   * what it reads. A listing never overlaps the next. */
  startListings(list: (begin: (full: boolean) => ListingSink) => Promise<unknown>, everyMs = 60_000): void {
    let busy = false;
    const t = setInterval(() => {
      if (busy || this.stopping) return;
      busy = true;
      const start = Date.now();
      let sink: ListingSink | null = null;
      list((full) => (sink = this.beginListing(start, full)))
        .then(
          () => (sink as ListingSink | null)?.end(),
          (err: Error) => {
            (sink as ListingSink | null)?.abort();
            this.opts.log?.warn(`history: listing the flow table failed: ${err.message}`);
          },
        )
        .finally(() => (busy = false));
    }, everyMs);
    t.unref();
    this.listTimers.push(t);
  }

  /** Hands what is packed to the writer and resolves once it is written (or the writer
   * gave up on it for now: see status()). For shutdown and tests. */
  async flush(): Promise<void> {
    if (!this.worker) return;
    const id = this.nextId++;
    const done = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve: () => resolve(), reject }));
    this.post(id);
    return done;
  }

  /** New retention limits (SIGHUP): the writer applies them at once (retention runs now). */
  setLimits(retentionDays: number, maxBytes: number): Promise<void> {
    this.opts.retentionDays = retentionDays;
    this.opts.maxBytes = maxBytes;
    return this.request((id) => ({ type: 'limits', id, retentionDays, maxBytes }));
  }

  /** Runs retention and compaction now (the writer does it every `maintainMs` anyway). */
  maintain(): Promise<void> {
    return this.request((id) => ({ type: 'maintain', id }));
  }

  // --- reading ------------------------------------------------------------------------------

  query(q: HistoryQuery, scope: HistoryScope): Promise<HistoryResult> {
    // Answer with what was observed up to now: hand the writer the packed buffer first.
    this.post();
    return this.request<HistoryResult>((id) => ({ type: 'query', id, q, scope }));
  }

  status(): HistoryStatus {
    return {
      ...this.cached, records: { ...this.cached.records, pending: this.cached.records.pending + this.packer.observations + this.rollups.pendingRows },
      listings: { ...this.listings, last: this.listings.last && { ...this.listings.last } },
    };
  }

  /**
   * Writes what is pending and closes the database; the writer thread ends. Within
   * `timeoutMs`: a writer still opening the database (seconds on a slow machine, or replaying
   * a long journal) or stuck on the disk is ended there, so that the daemon's stop keeps its
   * deadline. What it had journaled is replayed at the next start; the observations it had
   * not read yet are lost, and the warning counts them.
   */
  async stop(timeoutMs: number = HISTORY_DEFAULTS.stopMs): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.listTimers) clearInterval(t);
    const w = this.worker;
    if (!w) return;
    this.post();
    let timer: NodeJS.Timeout | undefined;
    const closed = await new Promise<boolean>((resolve) => {
      w.on('message', (m: FromWorker) => m.type === 'closed' && resolve(true));
      w.once('exit', () => resolve(true));
      timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
      this.send({ type: 'close' });
    });
    clearTimeout(timer);
    if (!closed) {
      const lost = this.unread.reduce((a, b) => a + b, 0);
      const opening = this.cached.state === 'starting';
      this.opts.log?.warn(`history: the writer did not close within ${timeoutMs} ms (${opening ? 'still opening the database' : 'still writing'}); ended it: `
        + `${lost} observation(s) it had not read are lost, what it journaled is replayed at the next start`);
    }
    this.worker = null;
    await w.terminate();
  }
}
