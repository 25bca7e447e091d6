// SPDX-License-Identifier: Apache-2.0
// Configuration of the exports: `metrics.*` (the Prometheus endpoint) and
// `export.clickhouse.*` (flow records into ClickHouse), as a convict schema fragment that
// schema.ts spreads into the daemon's schema, plus the checks of those values shared with
// the options of export/metrics.ts and export/clickhouse.ts. Here, in the config
// service, so that config/schema.ts imports nothing of the export feature. docs/export.md
// and docs/configuration.md document the keys.
import convict from 'convict';
import net from 'node:net';

function intFormat(name: string, min: number, max: number) {
  return {
    name,
    validate(v: unknown) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`must be an integer from ${min} to ${max}`);
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v),
  };
}

/** "HOST:PORT" with HOST an IP literal ("[::1]" for IPv6) or `localhost`; "" is off. */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(v);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || (host !== 'localhost' && net.isIP(host) === 0) || (m[1] !== undefined && net.isIP(host) !== 6) || port < 1 || port > 65535) {
    throw new Error(`must be "ADDRESS:PORT" (e.g. "127.0.0.1:9417", "[::1]:9417", "0.0.0.0:9417"), or "" for off; got ${JSON.stringify(v)}`);
  }
  return { host, port };
}

/** http(s) URL without credentials (they go in the credentials file, not in a config that `status` echoes). */
export function checkClickHouseUrl(v: string): URL {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`must be an http:// or https:// URL such as "http://clickhouse.example:8123", or "" for off; got ${JSON.stringify(v)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`must be an http:// or https:// URL (ClickHouse's HTTP interface), got ${JSON.stringify(u.protocol)}`);
  if (u.username || u.password) throw new Error('must not carry credentials: put "USER:PASSWORD" in export.clickhouse.credentialsFile');
  if (u.search || u.hash) throw new Error('must not carry a query string or fragment (settings are the exporter\'s)');
  return u;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

convict.addFormats({
  'listen-address': {
    validate(v: unknown) {
      if (typeof v !== 'string') throw new Error('must be a string "ADDRESS:PORT", or "" for off');
      if (v !== '') parseListen(v);
    },
  },
  'clickhouse-url': {
    validate(v: unknown) {
      if (typeof v !== 'string') throw new Error('must be a string URL, or "" for off');
      if (v !== '') checkClickHouseUrl(v);
    },
  },
  identifier: {
    validate(v: unknown) {
      if (typeof v !== 'string' || !IDENTIFIER.test(v)) throw new Error('must be a ClickHouse identifier: a letter or _, then letters, digits or _ (at most 64)');
    },
  },
  'optional-identifier': {
    validate(v: unknown) {
      if (typeof v !== 'string' || (v !== '' && !IDENTIFIER.test(v))) throw new Error('must be "" or a ClickHouse identifier: a letter or _, then letters, digits or _ (at most 64)');
    },
  },
  'optional-file': {
    validate(v: unknown) {
      if (typeof v !== 'string' || (v !== '' && !v.startsWith('/'))) throw new Error('must be an absolute path, or "" for none');
    },
  },
  'top-processes': intFormat('top-processes', 1, 1000),
  'batch-rows': intFormat('batch-rows', 1, 1_000_000),
  'buffer-rows': intFormat('buffer-rows', 1, 10_000_000),
  'export-seconds': intFormat('export-seconds', 1, 24 * 3600),
});

/** Spread into config/schema.ts's `schema`. */
export const EXPORT_SCHEMA = {
  metrics: {
    listen: {
      doc: 'Serve Prometheus metrics at http://ADDRESS:PORT/metrics ("" = off), e.g. "127.0.0.1:9417"',
      format: 'listen-address', default: '', env: 'EBPFMON_METRICS_LISTEN',
    },
    topProcesses: {
      doc: 'Traffic series by command/unit/container: at most this many, the rest summed in one "[other]" series',
      format: 'top-processes', default: 50, env: 'EBPFMON_METRICS_TOP_PROCESSES',
    },
  },
  export: {
    clickhouse: {
      url: { doc: 'ClickHouse HTTP interface receiving flow records ("" = off), e.g. "http://clickhouse:8123"', format: 'clickhouse-url', default: '', env: 'EBPFMON_EXPORT_CLICKHOUSE_URL' },
      database: { doc: 'ClickHouse database (created when absent)', format: 'identifier', default: 'ebpfmon', env: 'EBPFMON_EXPORT_CLICKHOUSE_DATABASE' },
      table: { doc: 'Table receiving the records (created when absent)', format: 'identifier', default: 'flows', env: 'EBPFMON_EXPORT_CLICKHOUSE_TABLE' },
      cluster: { doc: 'Cluster name: insert through a Distributed table over TABLE_local on this cluster ("" = a plain MergeTree table)', format: 'optional-identifier', default: '', env: 'EBPFMON_EXPORT_CLICKHOUSE_CLUSTER' },
      credentialsFile: { doc: 'File holding "USER:PASSWORD" ("" = the default user, no password)', format: 'optional-file', default: '', env: 'EBPFMON_EXPORT_CLICKHOUSE_CREDENTIALS_FILE' },
      batchRows: { doc: 'Rows per INSERT at most', format: 'batch-rows', default: 10000, env: 'EBPFMON_EXPORT_CLICKHOUSE_BATCH_ROWS' },
      flushIntervalSec: { doc: 'Send buffered rows at least this often', format: 'export-seconds', default: 5, env: 'EBPFMON_EXPORT_CLICKHOUSE_FLUSH_INTERVAL_SEC' },
      bufferRows: { doc: 'Rows kept while ClickHouse is unreachable; beyond, new rows are dropped and counted', format: 'buffer-rows', default: 100000, env: 'EBPFMON_EXPORT_CLICKHOUSE_BUFFER_ROWS' },
      updateIntervalSec: { doc: 'Open flows get a record of their new bytes this often', format: 'export-seconds', default: 60, env: 'EBPFMON_EXPORT_CLICKHOUSE_UPDATE_INTERVAL_SEC' },
      compress: { doc: 'gzip the INSERT bodies', format: Boolean, default: true, env: 'EBPFMON_EXPORT_CLICKHOUSE_COMPRESS' },
      timeoutSec: { doc: 'One request\'s time limit', format: 'export-seconds', default: 30, env: 'EBPFMON_EXPORT_CLICKHOUSE_TIMEOUT_SEC' },
      spoolFile: { doc: 'Undelivered rows and per-flow export state are kept here across a restart ("" = dropped at stop and counted)', format: 'optional-file', default: '/var/lib/ebpfmon/clickhouse-spool.json', env: 'EBPFMON_EXPORT_CLICKHOUSE_SPOOL_FILE' },
      retryMaxSec: { doc: 'Longest wait between two attempts while ClickHouse fails (the wait doubles from 1 s up to this)', format: 'export-seconds', default: 60, env: 'EBPFMON_EXPORT_CLICKHOUSE_RETRY_MAX_SEC' },
    },
  },
};

/** The keys above, as loaded (config/schema.ts's Config has them once spread in). */
export interface ExportConfig {
  metrics: { listen: string; topProcesses: number };
  export: {
    clickhouse: {
      url: string; database: string; table: string; cluster: string; credentialsFile: string;
      batchRows: number; flushIntervalSec: number; bufferRows: number; updateIntervalSec: number; compress: boolean; timeoutSec: number; retryMaxSec: number; spoolFile: string;
    };
  };
}
