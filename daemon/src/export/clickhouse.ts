// SPDX-License-Identifier: Apache-2.0
// Flow records into ClickHouse (`export.clickhouse.*`, docs/export.md).
//
// ClickHouseExporter: a bounded buffer of rows, sent in batches of `batchRows` (or
// whatever waits after `flushIntervalMs`) as `INSERT ... FORMAT JSONEachRow` over HTTP,
// one request at a time. A batch that fails is retried, the same bytes, after an
// exponential backoff (with jitter, capped); rows offered while the buffer is full are
// dropped and counted (status().dropped.bufferFull); rows the server refuses as malformed
// are dropped and counted (rejected) instead of blocking the queue for ever. The schema
// is created when absent (at start, and again if the table disappears). Delivery is at
// least once: a batch whose answer was lost is sent again.
//
// ClickHouseFlowExport: the exporter fed with close events and periodic snapshots of the
// flow table (flow-records.ts), which is what the daemon wires.
import type { Logger } from 'pino';
import type { ClickHouseExportStatus, CloseEventInput, FlowInput, FlowRecord } from './api-types.js';
import { ClickHouseHttp } from './clickhouse-http.js';
import { COLUMNS, createStatements, missingColumnsQuery, tableNames } from './clickhouse-schema.js';
import { readCredentials } from './credentials.js';
import { ClickHouseError, ExportConfigError } from './errors.js';
import { FlowRecordTracker } from './flow-records.js';
import { SPOOL_VERSION, takePending, takeSpool, writePending, writeSpool, type SpoolContent } from './spool.js';
import type { HostIdentity } from './host.js';

export interface ClickHouseExportOptions {
  url: string;
  database: string;
  table: string;
  /** Insert through a Distributed table over this cluster ("" or absent: one server). */
  cluster?: string;
  /** "USER:PASSWORD" file, read at start and again after the server refused the credentials. */
  credentialsFile?: string;
  batchRows: number;
  flushIntervalMs: number;
  bufferRows: number;
  compress: boolean;
  timeoutMs: number;
  /** First and longest wait between failed attempts (default 1 s, 60 s). */
  backoff?: { initialMs: number; maxMs: number };
  logger?: Logger;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Unknown user, wrong password (old servers), authentication failed (new): re-read the file. */
const AUTH_CODES = new Set([192, 193, 516]);

interface Batch {
  body: Buffer;
  /** The body is gzipped (it stays as first sent: retries are byte-identical). */
  gzipped: boolean;
  rows: number;
  /** The rows as queued (newline-terminated JSON lines): what a spool keeps. */
  raw: Buffer;
}

export class ClickHouseExporter {
  private readonly http: ClickHouseHttp;
  private readonly insertTable: string;
  private readonly log: Logger | undefined;
  private readonly backoff: { initialMs: number; maxMs: number };
  // The queue: serialized rows from `head` on (an array with a moving head: O(1) dequeue).
  private lines: string[] = [];
  private head = 0;
  private inflight: Batch | null = null;
  private sending: Promise<boolean> | null = null;
  private lastSendAt = Date.now();
  private nextAttemptAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private schemaReady = false;
  private readonly st: ClickHouseExportStatus;

  constructor(private readonly opts: ClickHouseExportOptions) {
    for (const [key, v] of [['database', opts.database], ['table', opts.table], ['cluster', opts.cluster ?? '']] as const) {
      if (v !== '' && !IDENT.test(v)) throw new ExportConfigError(`export.clickhouse.${key}: ${JSON.stringify(v)} is not a ClickHouse identifier (a letter or _, then letters, digits or _)`);
    }
    for (const [key, v] of [['batchRows', opts.batchRows], ['bufferRows', opts.bufferRows], ['flushIntervalMs', opts.flushIntervalMs], ['timeoutMs', opts.timeoutMs]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new ExportConfigError(`export.clickhouse: ${key} must be a positive integer, got ${v}`);
    }
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new ExportConfigError(`export.clickhouse.url: ${JSON.stringify(opts.url)} is not a URL`);
    }
    this.log = opts.logger?.child({ component: 'clickhouse' });
    this.backoff = opts.backoff ?? { initialMs: 1000, maxMs: 60_000 };
    this.http = new ClickHouseHttp({ url, timeoutMs: opts.timeoutMs, credentials: opts.credentialsFile ? readCredentials(opts.credentialsFile) : null });
    const names = { database: opts.database, table: opts.table, cluster: opts.cluster ?? '' };
    this.insertTable = tableNames(names).insert;
    this.st = {
      url: this.http.safeUrl,
      table: `${opts.database}.${opts.table}`,
      state: 'starting',
      serverVersion: null,
      buffered: 0,
      bufferCapacity: opts.bufferRows,
      sent: { rows: 0, batches: 0, bytes: 0 },
      dropped: { bufferFull: 0, rejected: 0, shutdown: 0, crash: 0 },
      retries: 0,
      consecutiveFailures: 0,
      lastSuccessAt: null,
      lastError: null,
      nextAttemptAt: null,
      schema: { ready: false, missingColumns: [] },
      spool: { file: null, restoredRows: 0, restoredUncertainRows: 0, restoredFlows: 0, savedRows: 0, error: null },
      trackedFlows: 0,
      trackerOverflow: 0,
    };
  }

  private get queued(): number {
    return this.lines.length - this.head;
  }

  get buffered(): number {
    return this.queued + (this.inflight?.rows ?? 0);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.kick(true), this.opts.flushIntervalMs);
    this.timer.unref();
    this.kick(true); // creates the schema at once
  }

  /** Queues rows; returns how many were accepted (the rest are counted as dropped). */
  offer(records: readonly FlowRecord[]): number {
    if (this.stopped) {
      this.st.dropped.shutdown += records.length;
      return 0;
    }
    const room = Math.max(0, this.opts.bufferRows - this.buffered);
    const n = Math.min(room, records.length);
    // One flat string per row (a template with "\n" would keep a 32-byte cons string per row).
    for (let i = 0; i < n; i++) this.lines.push(JSON.stringify(records[i]));
    if (n < records.length) {
      const lost = records.length - n;
      if (this.st.dropped.bufferFull === 0) this.log?.warn({ bufferRows: this.opts.bufferRows }, `export buffer full: dropping new rows until ClickHouse accepts (counted in status)`);
      this.st.dropped.bufferFull += lost;
    }
    if (this.queued >= this.opts.batchRows) this.kick(false);
    return n;
  }

  /**
   * Rows a previous run left undelivered (spool.ts), queued ahead of anything new. Beyond
   * the buffer they are dropped and counted as bufferFull, like any row that finds no room.
   */
  restore(rows: readonly string[]): number {
    const n = Math.min(rows.length, Math.max(0, this.opts.bufferRows - this.buffered));
    this.lines = [...rows.slice(0, n), ...this.lines.slice(this.head)];
    this.head = 0;
    this.st.dropped.bufferFull += rows.length - n;
    return n;
  }

  /** Starts a send if one is due and none is running. */
  private kick(intervalDue: boolean): void {
    if (this.sending || this.stopped) return;
    if (Date.now() < this.nextAttemptAt) return;
    const due = this.inflight !== null || !this.schemaReady || this.queued >= this.opts.batchRows || (intervalDue && this.queued > 0);
    if (!due) return;
    this.sending = this.sendOne().finally(() => {
      this.sending = null;
      // More full batches waiting: go on at once.
      if (this.queued >= this.opts.batchRows || (this.inflight && Date.now() >= this.nextAttemptAt)) setImmediate(() => this.kick(false));
    });
  }

  /** One attempt: schema if needed, then the batch at the head. True when it succeeded. */
  private async sendOne(): Promise<boolean> {
    try {
      if (!this.schemaReady) await this.ensureSchema();
      if (!this.inflight) {
        if (this.queued === 0) return true;
        await this.makeBatch();
      }
      const b = this.inflight!;
      await this.http.insert(this.insertTable, b.body, { gzipped: b.gzipped, settings: { input_format_skip_unknown_fields: 1 } });
      this.inflight = null;
      this.st.sent.rows += b.rows;
      this.st.sent.batches++;
      this.st.sent.bytes += b.body.length;
      this.succeeded();
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  /**
   * Moves the next rows from the queue into `inflight`, in the same synchronous step: while
   * the body is compressed (an await), the rows are already counted in `buffered` as the
   * batch's. (They were once in neither for that moment: `buffered` read 0 with a batch
   * still to send, so a drained-looking exporter could still lose it at stop, and a caller
   * that waited for 0 looked in ClickHouse too early.)
   */
  private async makeBatch(): Promise<void> {
    const n = Math.min(this.queued, this.opts.batchRows);
    const raw = Buffer.from(`${this.lines.slice(this.head, this.head + n).join('\n')}\n`);
    this.head += n;
    if (this.head > 4096 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
    this.lastSendAt = Date.now();
    const batch: Batch = { body: raw, gzipped: false, rows: n, raw };
    this.inflight = batch;
    if (this.opts.compress) {
      batch.body = await ClickHouseHttp.gzip(raw);
      batch.gzipped = true;
    }
  }

  private async ensureSchema(): Promise<void> {
    const version = (await this.http.query('SELECT version()')).trim();
    this.st.serverVersion = version;
    const names = { database: this.opts.database, table: this.opts.table, cluster: this.opts.cluster ?? '' };
    for (const sql of createStatements(names)) await this.http.query(sql);
    // An older table may lack newer columns: rows still go in (unknown fields are skipped),
    // those columns are simply not stored. Say which, once.
    const present = new Set((await this.http.query(missingColumnsQuery(names))).split('\n').filter(Boolean));
    const missing = COLUMNS.map(([c]) => c as string).filter((c) => !present.has(c));
    if (missing.length && missing.join() !== this.st.schema.missingColumns.join()) {
      this.log?.warn({ table: this.st.table, missing }, `ClickHouse table ${this.st.table} lacks columns ${missing.join(', ')}: add them (ALTER TABLE ... ADD COLUMN, docs/export.md) to store them`);
    }
    this.st.schema = { ready: true, missingColumns: missing };
    this.schemaReady = true;
    this.log?.info({ url: this.st.url, table: this.st.table, serverVersion: version }, 'ClickHouse export ready');
  }

  private succeeded(): void {
    this.st.state = 'ok';
    this.st.consecutiveFailures = 0;
    this.st.lastSuccessAt = new Date().toISOString();
    this.st.nextAttemptAt = null;
    this.nextAttemptAt = 0;
  }

  private failed(err: unknown): void {
    if (this.stopped) return; // stop() ended the request: not the server's failure
    const e = err instanceof ClickHouseError ? err : new ClickHouseError((err as Error).message, 'server', null, null, { cause: err });
    this.st.lastError = { message: e.message, code: e.code, at: new Date().toISOString() };
    if (e.kind === 'data' && this.inflight) {
      // These rows will never be accepted: drop them rather than block everything behind.
      this.log?.error({ err: e, rows: this.inflight.rows }, `ClickHouse refused a batch, dropping its ${this.inflight.rows} rows: ${e.message}`);
      this.st.dropped.rejected += this.inflight.rows;
      this.inflight = null;
      return;
    }
    if (e.kind === 'schema') this.schemaReady = false;
    if (e.code !== null && AUTH_CODES.has(e.code) && this.opts.credentialsFile) {
      try {
        this.http.setCredentials(readCredentials(this.opts.credentialsFile));
      } catch (re) {
        this.log?.warn({ err: re }, (re as Error).message);
      }
    }
    this.st.retries++;
    this.st.consecutiveFailures++;
    this.st.state = 'retrying';
    const n = this.st.consecutiveFailures;
    const wait = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (n - 1)) * (0.5 + Math.random() / 2);
    this.nextAttemptAt = Date.now() + wait;
    this.st.nextAttemptAt = new Date(this.nextAttemptAt).toISOString();
    if (n === 1 || n % 10 === 0) this.log?.warn({ err: e, failures: n, retryInMs: Math.round(wait) }, `ClickHouse export failed, retrying: ${e.message}`);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.kick(true), wait + 5);
    this.retryTimer.unref();
  }

  /**
   * Sends everything queued now, ignoring the interval and the backoff; false as soon as
   * an attempt fails (what is left stays queued).
   */
  async flush(): Promise<boolean> {
    while (this.buffered > 0 || !this.schemaReady) {
      if (this.sending) await this.sending;
      if (this.stopped) return false;
      if (this.buffered === 0 && this.schemaReady) break;
      this.nextAttemptAt = 0;
      this.sending = this.sendOne();
      const ok = await this.sending;
      this.sending = null;
      if (!ok) return false;
    }
    return true;
  }

  status(): ClickHouseExportStatus {
    return { ...this.st, buffered: this.buffered, sent: { ...this.st.sent }, dropped: { ...this.st.dropped }, spool: { ...this.st.spool }, schema: { ...this.st.schema, missingColumns: [...this.st.schema.missingColumns] } };
  }

  /** Rows lost outside the exporter's own paths (the previous run's, at a crash). */
  countDropped(reason: keyof ClickHouseExportStatus['dropped'], n: number): void {
    this.st.dropped[reason] += n;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** The spool's part of the status (ClickHouseFlowExport fills it in). */
  get spoolStatus(): ClickHouseExportStatus['spool'] {
    return this.st.spool;
  }

  /**
   * Tries to deliver what is buffered for up to `drainMs`, then stops. What is left goes to
   * `keep` (the spool) when given and it succeeds; otherwise it is counted as dropped.shutdown.
   */
  async stop(drainMs = 5000, keep?: (rows: string[], uncertainRows: number) => boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = this.retryTimer = null;
    if (!this.stopped && this.buffered > 0 && drainMs > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.flush(), new Promise((r) => (t = setTimeout(r, drainMs)))]);
      clearTimeout(t);
    }
    this.stopped = true;
    // A request still running (the drain ran out of time) ends now: its batch is counted
    // below. Whether ClickHouse stored it is unknown: a spool sends it again (counted).
    const cut = this.sending !== null && this.inflight !== null;
    this.http.close();
    if (this.sending) await this.sending;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // The spool is written even with no rows left: it also carries the flow tracker.
    const uncertain = cut && this.inflight ? this.inflight.rows : 0;
    const rows = [...(this.inflight ? this.inflight.raw.toString('utf8').split('\n').filter(Boolean) : []), ...this.lines.slice(this.head)];
    const kept = keep ? keep(rows, uncertain) : false;
    if (this.buffered > 0) {
      if (kept) {
        this.st.spool.savedRows = rows.length;
        this.log?.info({ rows: rows.length, uncertainRows: uncertain }, `stopping with ${rows.length} rows not yet delivered to ClickHouse: kept for the next start`);
      } else {
        this.log?.warn({ rows: this.buffered }, `stopping with ${this.buffered} rows not delivered to ClickHouse`);
        this.st.dropped.shutdown += this.buffered;
      }
      this.lines = [];
      this.head = 0;
      this.inflight = null;
    }
    this.st.state = 'stopped';
  }
}

/** Where the flow export reads flows (the daemon's flows.list, closed flows included). */
export interface FlowSource {
  flows(): Promise<readonly FlowInput[]> | readonly FlowInput[];
}

export interface ClickHouseFlowExportOptions extends ClickHouseExportOptions {
  host: HostIdentity;
  /** Snapshots of the flow table this often (`updateIntervalSec`); 0: close events only. */
  updateIntervalMs: number;
  /** Flows whose exported counts are remembered at most (default 1M). */
  maxTrackedFlows?: number;
  /**
   * Flows of this process are not exported: the daemon's own, i.e. the export's connections
   * to ClickHouse and scrapes of its endpoint. Each batch would otherwise make rows of its
   * own (a new connection after the server's keep-alive timeout, refused connects during an
   * outage), which fill the buffer while ClickHouse is away.
   */
  excludePid?: number;
  /**
   * Undelivered rows and the flow tracker are written here at stop and taken over at the
   * next start (spool.ts), so a restart neither loses nor repeats rows; absent: dropped
   * at stop and counted (dropped.shutdown).
   */
  spoolFile?: string;
}

export class ClickHouseFlowExport {
  readonly exporter: ClickHouseExporter;
  readonly tracker: FlowRecordTracker;
  private timer: NodeJS.Timeout | null = null;
  private snapshotting = false;
  private started = false;
  private pendingTimer: NodeJS.Timeout | null = null;
  /** What the pending-rows record says now (spool.ts writePending). */
  private pendingWritten = 0;

  constructor(private readonly opts: ClickHouseFlowExportOptions, private readonly source?: FlowSource) {
    this.exporter = new ClickHouseExporter(opts);
    this.tracker = new FlowRecordTracker({ host: opts.host, maxTracked: opts.maxTrackedFlows, snapshots: source !== undefined });
  }

  /** Takes over what the previous run left in the spool (rows first in the queue, the tracker). */
  private restoreSpool(): void {
    const file = this.opts.spoolFile;
    if (!file) return;
    const sp = this.exporter.spoolStatus;
    sp.file = file;
    let c: SpoolContent | null;
    try {
      c = takeSpool(file);
    } catch (err) {
      sp.error = (err as Error).message;
      this.opts.logger?.error({ err }, `ClickHouse export spool unreadable, starting without it: ${sp.error}`);
      return;
    }
    if (!c) return;
    sp.restoredRows = this.exporter.restore(c.rows);
    this.recordPending();
    sp.restoredUncertainRows = Math.min(c.uncertainRows, sp.restoredRows);
    sp.restoredFlows = c.tracker ? this.tracker.load(c.tracker) : 0;
    this.opts.logger?.info({ file, rows: sp.restoredRows, uncertainRows: sp.restoredUncertainRows, flows: sp.restoredFlows, savedAt: c.savedAt }, 'ClickHouse export: took over the previous run\'s undelivered rows and flow state');
  }

  /** Rows that waited when the previous run was killed: counted as dropped.crash. */
  private countCrashLoss(): void {
    const file = this.opts.spoolFile;
    if (!file) return;
    try {
      const p = takePending(file);
      if (p.rows === 0) return;
      this.exporter.countDropped('crash', p.rows);
      this.opts.logger?.warn({ rows: p.rows, at: p.at }, `ClickHouse export: the previous run ended without a clean stop with ${p.rows} rows undelivered: lost (counted as dropped.crash)`);
    } catch (err) {
      this.opts.logger?.warn({ err }, `ClickHouse export: cannot read the previous run's pending-rows record: ${(err as Error).message}`);
    }
  }

  /** Keeps the pending-rows record in step with what waits (at most once a second). */
  private recordPending(): void {
    const file = this.opts.spoolFile;
    if (!file) return;
    const n = this.exporter.isStopped ? 0 : this.exporter.buffered;
    if (n === this.pendingWritten) return;
    try {
      writePending(file, n);
      this.pendingWritten = n;
    } catch (err) {
      this.opts.logger?.warn({ err }, `ClickHouse export: cannot record the pending rows: ${(err as Error).message}`);
    }
  }

  private saveSpool(rows: string[], uncertainRows: number): boolean {
    const file = this.opts.spoolFile;
    if (!file) return false;
    try {
      writeSpool(file, { version: SPOOL_VERSION, savedAt: new Date().toISOString(), table: this.exporter.status().table, machineId: this.opts.host.machineId, rows, uncertainRows, tracker: this.source ? this.tracker.save() : null });
      return true;
    } catch (err) {
      this.exporter.spoolStatus.error = (err as Error).message;
      this.opts.logger?.error({ err, file }, `cannot write the ClickHouse export spool: ${(err as Error).message}`);
      return false;
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.countCrashLoss();
    this.restoreSpool();
    this.exporter.start();
    if (this.opts.spoolFile) {
      this.pendingTimer = setInterval(() => this.recordPending(), 1000);
      this.pendingTimer.unref();
    }
    if (this.source && this.opts.updateIntervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => void this.snapshot().catch((err: Error) => this.opts.logger?.warn({ err }, `flow snapshot for ClickHouse failed: ${err.message}`)), this.opts.updateIntervalMs);
      this.timer.unref();
    }
  }

  /** A close event (subscribe to `close` events and call this). */
  onClose(e: CloseEventInput): void {
    if (e.pid !== null && e.pid === this.opts.excludePid) return;
    // Stopped: the tracker must not count as exported a row the exporter no longer takes
    // (the next run's snapshot finds the closed flow in the table instead).
    if (this.exporter.isStopped) return;
    const r = this.tracker.closed(e);
    if (r) this.exporter.offer([r]);
  }

  /** One snapshot of the flow table now. */
  async snapshot(): Promise<number> {
    if (!this.source || this.snapshotting) return 0;
    this.snapshotting = true;
    try {
      const own = this.opts.excludePid;
      const flows = await this.source.flows();
      if (this.exporter.isStopped) return 0; // as in onClose
      const recs = this.tracker.snapshot(own === undefined ? flows : flows.filter((f) => f.pid !== own));
      this.exporter.offer(recs);
      return recs.length;
    } finally {
      this.snapshotting = false;
    }
  }

  status(): ClickHouseExportStatus {
    return { ...this.exporter.status(), trackedFlows: this.tracker.size, trackerOverflow: this.tracker.overflow };
  }

  async stop(drainMs?: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    this.pendingTimer = null;
    // A snapshot still running adds nothing now; the tracker then says what was exported.
    await this.exporter.stop(drainMs, this.opts.spoolFile ? (rows, uncertain) => this.saveSpool(rows, uncertain) : undefined);
    // What waited is in the spool or counted as dropped.shutdown: no longer pending.
    this.recordPending();
  }
}
