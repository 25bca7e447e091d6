// SPDX-License-Identifier: Apache-2.0
// The /metrics endpoint over real HTTP: every value in the exposition is the value the
// sources gave (the test's own inputs), loss counters never go down, a failing source
// shows as ebpfmon_up 0 without failing the scrape; and the dashboard and docs name only
// metrics the exporter has, docs all of them.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetricsExporter, serveMetrics, type MetricsServer } from '../../../../daemon/src/export/metrics.js';
import { parseListen } from '../../../../daemon/src/config/export.js';
import type { ClickHouseExportStatus, DaemonStatusInput, LbStatsInput, ProcessTrafficInput } from '../../../../daemon/src/export/api-types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../../..');

let status: DaemonStatusInput = {
  version: '9.8.7', startedAt: '2026-12-01T10:00:00.000Z', uptimeMs: 1_234_000,
  maps: [{ name: 'emon_flows', maxEntries: 65536, entries: 100 }, { name: 'emon_frags', maxEntries: 1024, entries: null }],
  counters: { flowsCreated: 4242, flowsDeleted: 10, closesInferred: 3, closesInferredAtReuse: 2 },
  loss: { ringbufFull: 5, probeMisses: 6, flowsEvicted: 7, subscriberDropped: 8, undecodable: 9 },
  events: { received: { connect: 11, close: 12 } },
};
let procs: ProcessTrafficInput[] = [
  { pid: 10, comm: 'curl', flows: 2, txBytes: 1000, rxBytes: 5000, txPackets: 10, rxPackets: 20 },
  { pid: 11, comm: 'curl', flows: 1, txBytes: 500, rxBytes: 0, txPackets: 5, rxPackets: 0 },
  { pid: 12, comm: 'nginx', unit: 'nginx.service', flows: 3, txBytes: 70, rxBytes: 80, txPackets: 1, rxPackets: 2 },
];
const lb: LbStatsInput = {
  counters: { pass: 3, connNew: 4 },
  drops: { noBackend: 2 },
  tables: { conns: { entries: 5, capacity: 100, evicted: 1 }, nat: { entries: 0, capacity: 50 } },
  vips: [{ vip: '198.19.0.1:80/tcp', packets: 100, bytes: 6000, replyPackets: 90, replyBytes: 50_000, flows: 7, backends: [{ backend: '198.19.1.1:80', packets: 60, bytes: 3600, replyPackets: 50, replyBytes: 30_000, flows: 4 }] }],
};
const chStatus = { sent: { rows: 77, batches: 2, bytes: 999 }, dropped: { bufferFull: 3, rejected: 1, shutdown: 0 }, retries: 4, buffered: 6, bufferCapacity: 100 } as ClickHouseExportStatus;
let failing = false;

const exporter = new MetricsExporter(
  {
    status: () => (failing ? Promise.reject(new Error('daemon gone')) : status),
    processes: () => procs,
    lbStats: () => lb,
    clickhouse: () => chStatus,
  },
  { topProcesses: 5, refreshIntervalMs: 0, minRefreshMs: 0 },
);
let server: MetricsServer;
after(() => server?.close());

async function scrape(): Promise<Map<string, number>> {
  const r = await fetch(`http://${server.address}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const m = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

test('every value is what the sources said', async () => {
  server = await serveMetrics(exporter, { host: '127.0.0.1', port: 0 });
  const m = await scrape();
  const want: Record<string, number> = {
    'ebpfmon_up': 1,
    'ebpfmon_build_info{version="9.8.7"}': 1,
    'ebpfmon_uptime_seconds': 1234,
    'ebpfmon_start_time_seconds': Date.parse(status.startedAt) / 1000,
    'ebpfmon_loss_total{kind="ringbufFull"}': 5,
    'ebpfmon_loss_total{kind="flowsEvicted"}': 7,
    'ebpfmon_loss_total{kind="undecodable"}': 9,
    'ebpfmon_events_total{type="close"}': 12,
    'ebpfmon_flows_created_total': 4242,
    'ebpfmon_closes_inferred_total{by="socket-table"}': 3,
    'ebpfmon_closes_inferred_total{by="tuple-reuse"}': 2,
    'ebpfmon_map_entries{map="emon_flows"}': 100,
    'ebpfmon_map_max_entries{map="emon_frags"}': 1024,
    'ebpfmon_process_transmit_bytes_total{comm="curl",unit="",container=""}': 1500,
    'ebpfmon_process_receive_bytes_total{comm="curl",unit="",container=""}': 5000,
    'ebpfmon_process_flows_total{comm="nginx",unit="nginx.service",container=""}': 3,
    'ebpfmon_process_transmit_bytes_total{comm="[other]",unit="",container=""}': 0,
    'ebpfmon_process_series_limit': 5,
    'ebpfmon_lb_vip_bytes_total{vip="198.19.0.1:80/tcp"}': 6000,
    'ebpfmon_lb_vip_reply_bytes_total{vip="198.19.0.1:80/tcp"}': 50_000,
    'ebpfmon_lb_backend_packets_total{vip="198.19.0.1:80/tcp",backend="198.19.1.1:80"}': 60,
    'ebpfmon_lb_backend_flows_total{vip="198.19.0.1:80/tcp",backend="198.19.1.1:80"}': 4,
    'ebpfmon_lb_drops_total{reason="noBackend"}': 2,
    'ebpfmon_lb_counter_total{counter="connNew"}': 4,
    'ebpfmon_lb_table_capacity{table="nat"}': 50,
    'ebpfmon_lb_conns_evicted_total': 1,
    'ebpfmon_export_rows_total{sink="clickhouse"}': 77,
    'ebpfmon_export_dropped_rows_total{sink="clickhouse",reason="bufferFull"}': 3,
    'ebpfmon_export_buffered_rows{sink="clickhouse"}': 6,
  };
  for (const [k, v] of Object.entries(want)) assert.equal(m.get(k), v, k);
  assert.equal(m.has('ebpfmon_map_entries{map="emon_frags"}'), false, 'unknown fill is absent, not 0');
  assert.ok([...m.keys()].some((k) => k.startsWith('nodejs_eventloop_lag_seconds')), 'event-loop lag');
  assert.ok(![...m.keys()].some((k) => /pid=|port=/.test(k)), 'no pid or port labels');
});

test('loss counters never go down (flowsEvicted is an estimate); process counters keep the bytes of exited processes', async () => {
  status = { ...status, loss: { ...status.loss, flowsEvicted: 3 } };
  procs = [{ pid: 12, comm: 'nginx', unit: 'nginx.service', flows: 4, txBytes: 90, rxBytes: 80, txPackets: 2, rxPackets: 2 }]; // the curls exited
  const m = await scrape();
  assert.equal(m.get('ebpfmon_loss_total{kind="flowsEvicted"}'), 7);
  assert.equal(m.get('ebpfmon_process_transmit_bytes_total{comm="curl",unit="",container=""}'), 1500);
  assert.equal(m.get('ebpfmon_process_transmit_bytes_total{comm="nginx",unit="nginx.service",container=""}'), 90);
});

test('a source that fails: ebpfmon_up 0, the last values stay, the scrape still answers', async () => {
  failing = true;
  const m = await scrape();
  assert.equal(m.get('ebpfmon_up'), 0);
  assert.equal(m.get('ebpfmon_uptime_seconds'), 1234);
  assert.equal(exporter.status('x').lastError, 'daemon gone');
  failing = false;
  assert.equal((await scrape()).get('ebpfmon_up'), 1);
});

test('other paths and methods are refused; a taken port or a bad address is a clear error', async () => {
  assert.equal((await fetch(`http://${server.address}/`)).status, 404);
  assert.equal((await fetch(`http://${server.address}/metrics`, { method: 'POST' })).status, 405);
  await assert.rejects(serveMetrics(exporter, { host: '127.0.0.1', port: server.port }), /metrics\.listen 127\.0\.0\.1:\d+: address already in use/);
  assert.throws(() => parseListen('9417'), /must be "ADDRESS:PORT"/);
  assert.throws(() => parseListen('[127.0.0.1]:9417'), /must be "ADDRESS:PORT"/);
  assert.deepEqual(parseListen('[::1]:9417'), { host: '::1', port: 9417 });
});

test('the Grafana dashboard and docs/export.md name exactly the metrics the endpoint has', async () => {
  const names = new Set((await exporter.registry.getMetricsAsJSON()).map((x) => x.name));
  const dash = fs.readFileSync(path.join(root, 'packaging/grafana/ebpfmon.json'), 'utf8');
  const exprs = [...dash.matchAll(/"expr": "((?:[^"\\]|\\.)*)"/g)].map((x) => JSON.parse(`"${x[1]}"`) as string);
  assert.ok(exprs.length > 10);
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\b((?:ebpfmon|nodejs|process)_[a-z0-9_]+)/g)].map((x) => x[1]!)));
  assert.deepEqual([...used].filter((n) => !names.has(n)), [], 'dashboard metrics the endpoint does not have');
  const doc = fs.readFileSync(path.join(root, 'docs/export.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/^\| `(ebpfmon_[a-z0-9_]+)` \|/gm)].map((x) => x[1]!));
  const ours = [...names].filter((n) => n.startsWith('ebpfmon_')).sort();
  assert.deepEqual([...documented].sort(), ours, 'docs/export.md metric table');
});
