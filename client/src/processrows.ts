// SPDX-License-Identifier: Apache-2.0
// processes.list rows kept client-side between incremental replies (`since`, docs/api.md):
// a full reply replaces them, an incremental one updates the rows it carries and drops the
// keys in `gone`. The key and the order are the contract's (contract/flows.ts ProcessKey),
// written out here because the contract holds no code (test/unit/client/processrows.test.ts
// checks them against the daemon's).
import { KERNEL_COMM } from '../../daemon/src/contract/common.js';
import { PROCESS_KEY_KERNEL, PROCESS_KEY_UNKNOWN, type ProcessesListResult, type ProcessKey, type ProcessTotals } from '../../daemon/src/contract/flows.js';

export function processKey(p: Pick<ProcessTotals, 'pid' | 'comm'>): ProcessKey {
  return p.pid !== null ? String(p.pid) : p.comm === KERNEL_COMM ? PROCESS_KEY_KERNEL : PROCESS_KEY_UNKNOWN;
}

const nullRank = (comm: string | null) => (comm === KERNEL_COMM ? 1 : 2);

/** The daemon's order: bytes (sent + received) descending, ties by key (pids ascending, then kernel, then unknown). */
export function compareProcesses(a: ProcessTotals, b: ProcessTotals): number {
  const d = b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes);
  if (d !== 0) return d;
  if (a.pid !== null && b.pid !== null) return a.pid - b.pid;
  if (a.pid !== null) return -1;
  if (b.pid !== null) return 1;
  return nullRank(a.comm) - nullRank(b.comm);
}

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
