// SPDX-License-Identifier: Apache-2.0
// The load balancer's own types beyond the contract (contract/lb.ts holds every shape
// clients see): what applying the configuration file's declarations reports, what a
// connection-table collection removed, and a weight change (no client method yet).
import type { BackendParams } from '../contract/lb.js';

export interface SetWeightParams extends BackendParams {
  weight: number;
}

export interface ApplyReport {
  vips: Array<{
    vip: string;
    /**
     * added: created from the declaration; unchanged: the same declaration was applied
     * before (live changes since then are kept); updated: the declaration changed, its
     * new backends and weights were applied; conflict: the declaration asks for a change
     * that needs `lb vip remove` first (mode, interface).
     */
    action: 'added' | 'unchanged' | 'updated' | 'conflict';
    detail?: string;
  }>;
}

export interface GcResult {
  longDeleted: number;
  natDeleted: number;
}
