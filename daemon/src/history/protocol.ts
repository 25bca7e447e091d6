// SPDX-License-Identifier: Apache-2.0
// Messages between the event loop (history.ts) and the writer thread (worker.ts).
import type { PackedBatch } from './pack.js';
import type { HistoryQuery, HistoryResult, HistoryScope, HistoryStatus } from './types.js';

export type ToWorker =
  | { type: 'batch'; batch: PackedBatch; ack?: number }
  | { type: 'query'; id: number; q: HistoryQuery; scope: HistoryScope }
  | { type: 'flush'; id: number }
  | { type: 'maintain'; id: number }
  | { type: 'limits'; id: number; retentionDays: number; maxBytes: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'status'; status: HistoryStatus }
  | { type: 'result'; id: number; result?: HistoryResult; error?: { code: string; message: string } }
  | { type: 'flushed'; id: number }
  /** A batch's buffer, read and sent back for the packer to reuse (transferred). */
  | { type: 'buffer'; rows: ArrayBuffer }
  /** The store is open and the accountant restored: closes beyond the budget of flows it
   * cannot track may be summed on the event loop from now on (overbudget.ts). */
  | { type: 'opened' }
  | { type: 'log'; level: 'warn' | 'error'; msg: string }
  | { type: 'closed' };
