// SPDX-License-Identifier: Apache-2.0
// The Prometheus endpoint: daemon health, every loss counter, map fill, the load
// balancer's per-VIP and per-backend counters, the ClickHouse export's buffer, and traffic
// by process with bounded cardinality (topn.ts). Metric names and labels are listed in
// docs/export.md; packaging/grafana/ebpfmon.json charts them.
//
// Inputs are plain functions (MetricsSources): the exporter never reaches into the
// monitor. Each scrape refreshes from them (at most once per `minRefreshMs`, so that
// several scrapers share one refresh), and a background refresh every
// `refreshIntervalMs` keeps per-process deltas exact even when nobody scrapes: the daemon
// forgets an exited process's totals a few minutes after it exits.
//
// Served with node:http rather than fastify: one read-only GET route needs no router,
// schema validation or plugins, and node:http adds no dependency to a root daemon.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { DaemonStatusInput, LbStatsInput, MetricsSources, MetricsStatus } from './api-types.js';
import { ProcessSeries, type SeriesLabels, type TrafficValues } from './topn.js';

export interface MetricsOptions {
  /** Identities with a traffic series of their own (`metrics.topProcesses`). */
  topProcesses: number;
  /** Decay of the process ranking (default 10 min). */
  halfLifeMs?: number;
  /** Background refresh (default 15 s; 0: only on scrape). */
  refreshIntervalMs?: number;
  /** Scrapes closer together than this share one refresh (default 1 s). */
  minRefreshMs?: number;
  /** Node.js process metrics (CPU, memory, event-loop lag): default true. */
  defaultMetrics?: boolean;
  logger?: Logger;
}

const LOSS_KINDS = ['ringbufFull', 'probeMisses', 'flowsEvicted', 'subscriberDropped', 'undecodable'] as const;
const PROCESS_LABELS = ['comm', 'unit', 'container'] as const;
const LB_COUNTERS = [
  ['packets', 'packets', 'Packets to the VIP'],
  ['bytes', 'bytes', 'Bytes to the VIP'],
  ['replyPackets', 'reply_packets', 'nat mode: reply packets translated back to clients'],
  ['replyBytes', 'reply_bytes', 'nat mode: reply bytes translated back to clients'],
  ['flows', 'flows', 'New flows scheduled'],
] as const;
const PROCESS_COUNTERS: Array<[keyof TrafficValues, string, string]> = [
  ['txBytes', 'transmit_bytes', 'IP-layer bytes sent'],
  ['rxBytes', 'receive_bytes', 'IP-layer bytes received'],
  ['txPackets', 'transmit_packets', 'Packets sent'],
  ['rxPackets', 'receive_packets', 'Packets received'],
  ['flows', 'flows', 'Flows (connections, UDP/ICMP conversations) seen'],
];

export class MetricsExporter {
  readonly registry = new Registry();
  private readonly processes: ProcessSeries;
  private readonly log: Logger | undefined;
  private refreshing: Promise<void> | null = null;
  private lastRefresh = 0;
  private timer: NodeJS.Timeout | null = null;
  private scrapes = 0;
  private lastError: string | null = null;
  /** Highest value seen per loss counter: flowsEvicted is derived and may dip by a few. */
  private readonly lossHigh = new Map<string, number>();
  private readonly m;

  constructor(private readonly sources: MetricsSources, private readonly opts: MetricsOptions) {
    this.log = opts.logger?.child({ component: 'metrics' });
    this.processes = new ProcessSeries({ top: opts.topProcesses, halfLifeMs: opts.halfLifeMs });
    const r = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers: r });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers: r });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.m = {
      up: gauge('ebpfmon_up', '1 when the last refresh read the daemon\'s status, else 0'),
      info: gauge('ebpfmon_build_info', 'Always 1; the daemon\'s version as a label', ['version']),
      startTime: gauge('ebpfmon_start_time_seconds', 'When the daemon started (Unix time)'),
      uptime: gauge('ebpfmon_uptime_seconds', 'Seconds since the daemon started'),
      loss: counter('ebpfmon_loss_total', 'Things ebpfmon lost, by kind (status.loss: events, program runs or flows)', ['kind']),
      events: counter('ebpfmon_events_total', 'Events read from the kernel, by type', ['type']),
      flowsCreated: counter('ebpfmon_flows_created_total', 'Flow entries the classifier created'),
      closesInferred: counter('ebpfmon_closes_inferred_total', 'TCP closes the kernel did not report, delivered all the same, by who inferred them (socket-table: the daemon, the socket gone from the kernel\'s socket table; tuple-reuse: the classifier, a new connection on the tuple)', ['by']),
      mapEntries: gauge('ebpfmon_map_entries', 'Entries in a BPF map', ['map']),
      mapMax: gauge('ebpfmon_map_max_entries', 'Capacity of a BPF map', ['map']),
      proc: Object.fromEntries(PROCESS_COUNTERS.map(([k, n, h]) => [k, counter(`ebpfmon_process_${n}_total`, `${h}, by command, systemd unit and container (top N; the rest in comm="[other]")`, PROCESS_LABELS)])) as Record<keyof TrafficValues, Counter<(typeof PROCESS_LABELS)[number]>>,
      procLimit: gauge('ebpfmon_process_series_limit', 'Identities that get series of their own (metrics.topProcesses)'),
      procEvictions: counter('ebpfmon_process_series_evictions_total', 'Series retired to make room for a bigger talker'),
      vip: Object.fromEntries(LB_COUNTERS.map(([k, n, h]) => [k, counter(`ebpfmon_lb_vip_${n}_total`, h, ['vip'])])) as Record<(typeof LB_COUNTERS)[number][0], Counter<'vip'>>,
      backend: Object.fromEntries(LB_COUNTERS.map(([k, n, h]) => [k, counter(`ebpfmon_lb_backend_${n}_total`, `${h}, per backend`, ['vip', 'backend'])])) as Record<(typeof LB_COUNTERS)[number][0], Counter<'vip' | 'backend'>>,
      lbDrops: counter('ebpfmon_lb_drops_total', 'Packets the load balancer dropped, by reason', ['reason']),
      lbCounters: counter('ebpfmon_lb_counter_total', 'Load-balancer data-path counters (lb.stats counters)', ['counter']),
      lbTableEntries: gauge('ebpfmon_lb_table_entries', 'Entries in a load-balancer table', ['table']),
      lbTableCapacity: gauge('ebpfmon_lb_table_capacity', 'Capacity of a load-balancer table', ['table']),
      lbConnsEvicted: counter('ebpfmon_lb_conns_evicted_total', 'Load-balancer flows the LRU table evicted'),
      exportRows: counter('ebpfmon_export_rows_total', 'Rows delivered to an export sink', ['sink']),
      exportDropped: counter('ebpfmon_export_dropped_rows_total', 'Rows an export sink lost, by reason', ['sink', 'reason']),
      exportBuffered: gauge('ebpfmon_export_buffered_rows', 'Rows waiting to be delivered', ['sink']),
      exportCapacity: gauge('ebpfmon_export_buffer_capacity_rows', 'Rows that may wait before new ones are dropped', ['sink']),
      exportRetries: counter('ebpfmon_export_retries_total', 'Failed delivery attempts (retried with backoff)', ['sink']),
    };
    this.m.procLimit.set(opts.topProcesses);
  }

  /** Starts the background refresh. */
  start(): void {
    const every = this.opts.refreshIntervalMs ?? 15_000;
    if (every <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.refresh(true).catch(() => undefined), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reads every source and updates the registry (shared by callers that overlap). */
  refresh(force = false): Promise<void> {
    if (this.refreshing) return this.refreshing;
    if (!force && Date.now() - this.lastRefresh < (this.opts.minRefreshMs ?? 1000)) return Promise.resolve();
    this.refreshing = this.doRefresh().finally(() => {
      this.refreshing = null;
      this.lastRefresh = Date.now();
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    // Read everything first, then apply in one synchronous step: a scrape never sees half.
    let status: DaemonStatusInput | null = null;
    try {
      const [s, procs, lb] = await Promise.all([this.sources.status(), this.sources.processes(), this.sources.lbStats?.() ?? null]);
      status = s;
      this.processes.update(procs);
      this.applyLb(lb);
      this.lastError = null;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log?.warn({ err }, `metrics refresh failed: ${this.lastError}`);
    }
    this.m.up.set(status ? 1 : 0);
    if (status) this.applyStatus(status);
    this.applyProcesses();
    this.applyExport();
  }

  private applyStatus(s: DaemonStatusInput): void {
    this.m.info.reset();
    this.m.info.set({ version: s.version }, 1);
    this.m.startTime.set(Date.parse(s.startedAt) / 1000);
    this.m.uptime.set(s.uptimeMs / 1000);
    this.m.loss.reset();
    for (const k of LOSS_KINDS) {
      const v = Math.max(s.loss[k], this.lossHigh.get(k) ?? 0);
      this.lossHigh.set(k, v);
      this.m.loss.inc({ kind: k }, v);
    }
    this.m.events.reset();
    for (const [type, n] of Object.entries(s.events.received)) this.m.events.inc({ type }, n);
    this.m.flowsCreated.reset();
    this.m.flowsCreated.inc(s.counters.flowsCreated ?? 0);
    this.m.closesInferred.reset();
    this.m.closesInferred.inc({ by: 'socket-table' }, s.counters.closesInferred ?? 0);
    this.m.closesInferred.inc({ by: 'tuple-reuse' }, s.counters.closesInferredAtReuse ?? 0);
    this.m.mapEntries.reset();
    this.m.mapMax.reset();
    for (const map of s.maps) {
      this.m.mapMax.set({ map: map.name }, map.maxEntries);
      if (map.entries !== null) this.m.mapEntries.set({ map: map.name }, map.entries);
    }
  }

  private applyProcesses(): void {
    const series = this.processes.series();
    for (const [k] of PROCESS_COUNTERS) {
      const c = this.m.proc[k];
      c.reset(); // evicted identities disappear
      for (const s of series) c.inc(s.labels as SeriesLabels & Record<string, string>, s.values[k]);
    }
    this.m.procEvictions.reset();
    this.m.procEvictions.inc(this.processes.evictions);
  }

  private applyLb(lb: LbStatsInput | null): void {
    const all = [...Object.values(this.m.vip), ...Object.values(this.m.backend), this.m.lbDrops, this.m.lbCounters, this.m.lbConnsEvicted];
    for (const c of all) c.reset();
    this.m.lbTableEntries.reset();
    this.m.lbTableCapacity.reset();
    if (!lb) return;
    // A VIP removed and added again restarts from 0 in the kernel: Prometheus reads a reset.
    for (const v of lb.vips) {
      for (const [k] of LB_COUNTERS) this.m.vip[k].inc({ vip: v.vip }, v[k]);
      for (const b of v.backends) for (const [k] of LB_COUNTERS) this.m.backend[k].inc({ vip: v.vip, backend: b.backend }, b[k]);
    }
    for (const [reason, n] of Object.entries(lb.drops)) this.m.lbDrops.inc({ reason }, n);
    for (const [counter, n] of Object.entries(lb.counters)) this.m.lbCounters.inc({ counter }, n);
    for (const [table, t] of Object.entries(lb.tables)) {
      this.m.lbTableEntries.set({ table }, t.entries);
      this.m.lbTableCapacity.set({ table }, t.capacity);
    }
    this.m.lbConnsEvicted.inc(lb.tables.conns?.evicted ?? 0);
  }

  private applyExport(): void {
    const ch = this.sources.clickhouse?.() ?? null;
    for (const g of [this.m.exportRows, this.m.exportDropped, this.m.exportRetries]) g.reset();
    this.m.exportBuffered.reset();
    this.m.exportCapacity.reset();
    if (!ch) return;
    const sink = 'clickhouse';
    this.m.exportRows.inc({ sink }, ch.sent.rows);
    for (const [reason, n] of Object.entries(ch.dropped)) this.m.exportDropped.inc({ sink, reason }, n);
    this.m.exportRetries.inc({ sink }, ch.retries);
    this.m.exportBuffered.set({ sink }, ch.buffered);
    this.m.exportCapacity.set({ sink }, ch.bufferCapacity);
  }

  /** The exposition text, refreshed. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.scrapes++;
    await this.refresh();
    const body = await this.registry.metrics();
    this.processes.markExposed();
    return { contentType: this.registry.contentType, body };
  }

  status(listen: string): MetricsStatus {
    const { limit, admitted, candidates, evictions } = this.processes.stats();
    return { listen, scrapes: this.scrapes, processSeries: { limit, admitted, candidates, evictions }, lastError: this.lastError };
  }
}

export interface MetricsServer {
  /** "ADDRESS:PORT" actually bound (port 0 picks one). */
  address: string;
  port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on `host:port` (`metrics.listen`). */
export async function serveMetrics(exporter: MetricsExporter, listen: { host: string; port: number }, logger?: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('ebpfmon: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET and HEAD\n');
      return;
    }
    exporter.render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: Error) => {
        logger?.warn({ err }, `metrics scrape failed: ${err.message}`);
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`ebpfmon: ${err.message}\n`);
      },
    );
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`metrics.listen ${listen.host}:${listen.port}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.message}`, { cause: err })),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  logger?.info({ listen: address }, `Prometheus metrics on http://${address}/metrics`);
  return {
    address,
    port: a.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
