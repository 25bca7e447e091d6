// SPDX-License-Identifier: Apache-2.0
// Real servers the export tests talk to, started by the test in the root namespace with
// their own configuration in a lab temp dir, and stopped by pid: Prometheus (Debian's
// `prometheus`, on 127.0.0.1; it scrapes a daemon in a lab host over a link to the root
// namespace) and ClickHouse (Debian's `clickhouse-server`, 18.16, on 127.0.0.1 or on the
// root end of such a link, where a daemon in a lab host reaches it). Both are in
// scripts/setup.sh's test packages.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Lab } from './lab.js';

/** A free TCP port on 127.0.0.1 (bound, read, released: another process could take it, rarely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>, child: ChildProcess, log: () => string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${log().slice(-3000)}`);
    if (await check().catch(() => false)) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not ready after ${timeoutMs} ms:\n${log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  process.kill(child.pid!, 'SIGTERM');
  const t = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  }, graceMs);
  await gone;
  clearTimeout(t);
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export class PrometheusServer {
  private out = '';
  private constructor(private readonly child: ChildProcess, readonly url: string) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.out += d));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get log(): string {
    return this.out;
  }

  /** Prometheus scraping `targets` ("host:port") every `scrapeIntervalS` seconds. */
  static async start(lab: Lab, targets: string[], scrapeIntervalS = 1): Promise<PrometheusServer> {
    const dir = lab.tmpdir();
    const port = await freePort();
    const cfg = [
      'global:',
      `  scrape_interval: ${scrapeIntervalS}s`,
      `  evaluation_interval: ${scrapeIntervalS}s`,
      'scrape_configs:',
      '  - job_name: ebpfmon',
      `    scrape_interval: ${scrapeIntervalS}s`,
      `    scrape_timeout: ${scrapeIntervalS}s`,
      '    static_configs:',
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), cfg);
    const child = lab.root.spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ]);
    const p = new PrometheusServer(child, `http://127.0.0.1:${port}`);
    lab.onDestroy(() => p.stop());
    await waitUntil('prometheus', async () => (await fetch(`${p.url}/-/ready`)).ok, child, () => p.out, 30_000);
    return p;
  }

  /** An instant PromQL query through the HTTP API. */
  async query(promql: string): Promise<PromSample[]> {
    const r = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await r.json()) as { status: string; error?: string; data: { resultType: string; result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error}`);
    return body.data.result;
  }

  /** Series in Prometheus' head block (its TSDB status API): every series it holds now. */
  async headSeries(): Promise<number> {
    const r = await fetch(`${this.url}/api/v1/status/tsdb`);
    const body = (await r.json()) as { data: { headStats: { numSeries: number } } };
    return body.data.headStats.numSeries;
  }

  /** The single value of a query that returns one sample (NaN when it returns none). */
  async scalar(promql: string): Promise<number> {
    const r = await this.query(promql);
    if (r.length > 1) throw new Error(`PromQL ${promql}: ${r.length} samples, expected one`);
    return r.length ? Number(r[0]!.value[1]) : NaN;
  }

  /** Polls `promql` until `ok(value)`; returns the last value (the caller asserts on it). */
  async waitFor(promql: string, ok: (v: number) => boolean, timeoutMs = 60_000): Promise<number> {
    const t0 = Date.now();
    let v = NaN;
    while (Date.now() - t0 < timeoutMs) {
      v = await this.scalar(promql);
      if (ok(v)) return v;
      await new Promise((r) => setTimeout(r, 500));
    }
    return v;
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

export interface ClickHouseServerOptions {
  /** Address to listen on (default 127.0.0.1); clients from its /24 are let in. */
  host?: string;
  /** A user with a password (besides `default` without one). */
  user?: { name: string; password: string };
  /** A cluster of one shard (this server) for Distributed tables. */
  cluster?: string;
}

export class ClickHouseServer {
  private child: ChildProcess | null = null;
  private out = '';
  readonly url: string;

  private constructor(private readonly lab: Lab, readonly dir: string, readonly host: string, readonly httpPort: number, readonly tcpPort: number) {
    this.url = `http://${host}:${httpPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(lab: Lab, opts: ClickHouseServerOptions = {}): Promise<ClickHouseServer> {
    const dir = lab.tmpdir();
    const host = opts.host ?? '127.0.0.1';
    const s = new ClickHouseServer(lab, dir, host, await freePort(), await freePort());
    const networks = `<networks><ip>127.0.0.1</ip>${host === '127.0.0.1' ? '' : `<ip>${host}/24</ip>`}</networks>`;
    const users = [
      `<default><password></password>${networks}<profile>default</profile><quota>default</quota></default>`,
      opts.user ? `<${opts.user.name}><password>${opts.user.password}</password>${networks}<profile>default</profile><quota>default</quota></${opts.user.name}>` : '',
    ].join('\n    ');
    fs.writeFileSync(path.join(dir, 'users.xml'), `<?xml version="1.0"?>\n<yandex>\n  <profiles><default></default></profiles>\n  <users>\n    ${users}\n  </users>\n  <quotas><default></default></quotas>\n</yandex>\n`);
    const cluster = opts.cluster
      ? `<remote_servers><${opts.cluster}><shard><replica><host>${host}</host><port>${s.tcpPort}</port></replica></shard></${opts.cluster}></remote_servers>`
      : '';
    fs.writeFileSync(path.join(dir, 'config.xml'), `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/server.log</log><errorlog>${dir}/error.log</errorlog></logger>
  <http_port>${s.httpPort}</http_port>
  <tcp_port>${s.tcpPort}</tcp_port>
  <listen_host>${host}</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  ${cluster}
</yandex>
`);
    lab.onDestroy(() => s.stop());
    await s.restart();
    return s;
  }

  /** Starts (again) on the same ports and data directory. */
  async restart(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) throw new Error('clickhouse-server is running');
    this.out = '';
    const child = this.lab.root.spawn('clickhouse-server', [`--config-file=${path.join(this.dir, 'config.xml')}`]);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    this.child = child;
    const errLog = () => {
      try {
        return this.out + fs.readFileSync(path.join(this.dir, 'error.log'), 'utf8');
      } catch {
        return this.out;
      }
    };
    await waitUntil('clickhouse-server', async () => (await this.query('SELECT 1')).trim() === '1', child, errLog, 60_000);
  }

  /** A statement through the HTTP interface (plain fetch: not the exporter's client). */
  async query(sql: string, settings = ''): Promise<string> {
    const r = await fetch(`${this.url}/${settings ? `?${settings}` : ''}`, { method: 'POST', body: sql });
    const text = await r.text();
    if (!r.ok) throw new Error(`ClickHouse ${r.status} for ${sql.slice(0, 80)}: ${text.trim()}`);
    return text;
  }

  /** Rows of a SELECT as objects (64-bit integers as numbers). */
  async rows<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    const text = await this.query(`${sql} FORMAT JSONEachRow`, 'output_format_json_quote_64bit_integers=0');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
  }

  stop(): Promise<void> {
    return this.child ? stopChild(this.child) : Promise.resolve();
  }
}
