// SPDX-License-Identifier: Apache-2.0
// PROPOSED configuration keys (convict), to be merged into daemon/src/config/schema.ts as
// `history: HISTORY_CONFIG` by the lead; docs/history.md documents them.
export const HISTORY_CONFIG = {
  enabled: { doc: 'Keep a history of flows and per-process totals on disk', format: Boolean, default: true, env: 'EBPFMON_HISTORY_ENABLED' },
  path: {
    doc: "Directory of the history database (the unit's StateDirectory=)",
    format: 'absolute-path', default: '/var/lib/ebpfmon', env: 'EBPFMON_HISTORY_PATH',
  },
  retentionDays: {
    doc: 'Flow records and per-minute totals older than this are removed',
    format: 'history-days', default: 30, env: 'EBPFMON_HISTORY_RETENTION_DAYS',
  },
  maxBytes: {
    doc: 'Size limit of the database: the oldest flow records go first, per-minute totals last',
    format: 'history-bytes', default: 1024 ** 3, env: 'EBPFMON_HISTORY_MAX_BYTES',
  },
  detailFlowsPerSec: {
    doc: 'Short flows per second recorded one by one; beyond, they are summed per process, remote endpoint and minute',
    format: 'count', default: 1000, env: 'EBPFMON_HISTORY_DETAIL_FLOWS_PER_SEC',
  },
  snapshotIntervalSec: {
    doc: 'How often open flows are recorded (what they gained since the last time)',
    format: 'seconds', default: 60, env: 'EBPFMON_HISTORY_SNAPSHOT_INTERVAL_SEC',
  },
} as const;

/** Formats the keys above need, for convict.addFormats. */
export const HISTORY_FORMATS = {
  'history-days': {
    validate(v: unknown) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 3650) throw new Error('must be a whole number of days from 1 to 3650');
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  },
  'history-bytes': {
    validate(v: unknown) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 16 * 1024 * 1024) throw new Error('must be a number of bytes, at least 16777216 (16 MiB)');
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  },
};
