// SPDX-License-Identifier: Apache-2.0
// processes.list rows kept client-side between incremental replies (`since`, docs/api.md):
// a full reply replaces them, an incremental one updates the rows it carries and drops the
// keys in `gone`. The key and the order are the contract's (contract/flows.ts processKey,
// compareProcessRows), the daemon's own.
import { compareProcessRows, processKey, type ProcessesListResult, type ProcessKey, type ProcessTotals } from '../../daemon/src/contract/flows.js';

export { processKey };
/** The daemon's order: bytes (sent + received) descending, ties by key. */
export const compareProcesses = compareProcessRows;

export class ProcessRows {
  private readonly rows = new Map<ProcessKey, ProcessTotals>();
  /** The cursor to send as `since` (null: start a stream). */
  cursor: string | null = null;

  /** Applies a reply to a call made with `since`; false when it carried no cursor (a daemon without incremental replies). */
  apply(r: ProcessesListResult): boolean {
    if (r.cursor === undefined) {
      this.reset();
      for (const p of r.processes) this.rows.set(processKey(p), p);
      return false;
    }
    if (r.full !== false) this.rows.clear();
    for (const k of r.gone ?? []) this.rows.delete(k);
    for (const p of r.processes) this.rows.set(processKey(p), p);
    this.cursor = r.cursor;
    return true;
  }

  /** Forgets everything (the next call starts a new stream). */
  reset(): void {
    this.rows.clear();
    this.cursor = null;
  }

  get size(): number {
    return this.rows.size;
  }

  /** The rows as a full reply lists them. */
  list(): ProcessTotals[] {
    return [...this.rows.values()].sort(compareProcesses);
  }
}
