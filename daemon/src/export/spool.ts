// SPDX-License-Identifier: Apache-2.0
// The ClickHouse export's state across a daemon restart (`export.clickhouse.spoolFile`):
// the rows not yet delivered and what was exported per open flow. Written once, at stop,
// after the drain; read and removed at the next start. Without it a restart would lose
// what waited for an unreachable server, and re-export the full counts of every flow still
// in the (pinned, surviving) flow table: both the rows and the tracker are needed for
// "no loss, no duplicate".
//
// Why a file written at stop rather than a write-ahead log: rows wait only while
// ClickHouse is away and the buffer is bounded (`bufferRows`), so one JSON document is at
// most that size; a kill -9 loses what was buffered (docs/export.md says so), as it loses
// the close events in flight. That loss is counted, though: while rows wait, a small
// `<spool>.pending` file says how many (rewritten at most once a second, removed at a clean
// stop); the next start finds it and reports them as dropped.crash.
import fs from 'node:fs';
import path from 'node:path';
import type { TrackerState } from './flow-records.js';

export const SPOOL_VERSION = 1;

export interface SpoolContent {
  version: typeof SPOOL_VERSION;
  savedAt: string;
  /** `database.table` the rows were meant for (they go to the configured table either way). */
  table: string;
  machineId: string;
  /** JSONEachRow lines, oldest first (a batch cut off at stop comes first). */
  rows: string[];
  /** Rows of a batch whose request was cut off at stop: ClickHouse may have stored them. */
  uncertainRows: number;
  tracker: TrackerState | null;
}

/** Writes the spool atomically (a temp file renamed over it), 0600: rows name processes and peers. */
export function writeSpool(file: string, c: SpoolContent): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(c));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * The spool left by the previous run, removed from disk (its rows are then in memory: a
 * crash from here on loses them rather than delivering them twice). null when there is none.
 * Throws when it cannot be read or is not a spool (the caller reports it and moves it aside).
 */
export function takeSpool(file: string): SpoolContent | null {
  // A write cut short (the stop deadline, a crash) leaves its temp file: never a spool.
  try {
    const base = `${path.basename(file)}.`;
    for (const f of fs.readdirSync(path.dirname(file))) if (f.startsWith(base) && f.endsWith('.tmp')) fs.rmSync(path.join(path.dirname(file), f), { force: true });
  } catch {
    // no directory yet: nothing to clean
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let c: SpoolContent;
  try {
    c = JSON.parse(text) as SpoolContent;
    if (c.version !== SPOOL_VERSION || !Array.isArray(c.rows) || !c.rows.every((r) => typeof r === 'string')) throw new Error(`not a version ${SPOOL_VERSION} spool`);
  } catch (err) {
    const aside = `${file}.bad`;
    fs.renameSync(file, aside);
    throw new Error(`${file}: ${(err as Error).message}; moved to ${aside}`, { cause: err });
  }
  fs.unlinkSync(file);
  return c;
}

/** The pending-rows marker next to the spool. */
export const pendingFile = (spool: string): string => `${spool}.pending`;

/** Records that `rows` rows wait (0: removes the record). Not fsynced: it has to outlive
 * the process (a kill -9, a crash), for which the page cache is enough, and it is written
 * up to once a second. */
export function writePending(spool: string, rows: number): void {
  const file = pendingFile(spool);
  if (rows === 0) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ rows, at: new Date().toISOString(), pid: process.pid }), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** Rows the previous run recorded as waiting when it ended without a clean stop (the record
 * is removed); 0 when there is none. An unreadable record counts as 0 and is removed. */
export function takePending(spool: string): { rows: number; at: string | null } {
  const file = pendingFile(spool);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { rows: 0, at: null };
  }
  fs.rmSync(file, { force: true });
  try {
    const p = JSON.parse(text) as { rows?: unknown; at?: unknown };
    return { rows: typeof p.rows === 'number' && p.rows > 0 ? Math.floor(p.rows) : 0, at: typeof p.at === 'string' ? p.at : null };
  } catch {
    return { rows: 0, at: null };
  }
}
