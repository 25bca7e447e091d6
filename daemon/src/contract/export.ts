// SPDX-License-Identifier: Apache-2.0
// `status.export`: the Prometheus endpoint and the ClickHouse flow export, when configured
// (`metrics.listen`, `export.clickhouse.url`; docs/export.md). Every row the export could
// not deliver is counted here, by reason.

export interface MetricsStatus {
  /** "ADDRESS:PORT" the endpoint is bound to (http://ADDRESS:PORT/metrics). */
  listen: string;
  scrapes: number;
  /** Identities (command, unit, container) with a series of their own / tracked for ranking. */
  processSeries: { limit: number; admitted: number; candidates: number; evictions: number };
  /** Why the last refresh of the metrics failed (null: it worked). */
  lastError: string | null;
}

export const CLICKHOUSE_STATES = ['starting', 'ok', 'retrying', 'stopped'] as const;
export type ClickHouseState = (typeof CLICKHOUSE_STATES)[number];

export interface ClickHouseExportStatus {
  /** Without credentials. */
  url: string;
  /** `database.table` the rows are inserted into (the Distributed table with a cluster). */
  table: string;
  state: ClickHouseState;
  serverVersion: string | null;
  /** Rows waiting (including the batch being sent) and the most that may wait. */
  buffered: number;
  bufferCapacity: number;
  sent: { rows: number; batches: number; bytes: number };
  dropped: {
    /** Rows refused because the buffer was full (ClickHouse slow or unreachable). */
    bufferFull: number;
    /** Rows ClickHouse refused as malformed (the batch is not retried). */
    rejected: number;
    /** Rows still buffered when the daemon stopped. */
    shutdown: number;
    /** Rows that were waiting when the previous run ended without a clean stop (kill -9,
     * a crash): as its last record said, at most a second old (`spoolFile` set). */
    crash: number;
  };
  /** Failed attempts since the start, and in a row now. */
  retries: number;
  consecutiveFailures: number;
  lastSuccessAt: string | null;
  lastError: { message: string; code: number | null; at: string } | null;
  nextAttemptAt: string | null;
  schema: { ready: boolean; missingColumns: string[] };
  /**
   * The spool (`export.clickhouse.spoolFile`) that carries undelivered rows and the flow
   * tracker across a restart: rows and flows taken over at this start, rows of those that
   * were a batch cut off at the previous stop (sent again: ClickHouse may hold them twice),
   * rows kept at stop, and why the spool could not be read or written.
   */
  spool: { file: string | null; restoredRows: number; restoredUncertainRows: number; restoredFlows: number; savedRows: number; error: string | null };
  /** Open flows whose exported counts are remembered (for update deltas). */
  trackedFlows: number;
  /** Flows forgotten because the tracker was full: their next record repeats counts. */
  trackerOverflow: number;
}

/** `status.export`: present when an export is configured; each part when it runs. */
export interface ExportStatus {
  metrics?: MetricsStatus;
  clickhouse?: ClickHouseExportStatus;
}
