// SPDX-License-Identifier: Apache-2.0
// Export rate into ClickHouse: how fast ClickHouseExporter (daemon/src/export/clickhouse.ts)
// delivers flow records to a real clickhouse-server (Debian 12's 18.16, started here on
// free local ports from a temp dir), and what it costs in CPU per 1,000 rows, next to
// baselines measured in the same run on the same rows and batches:
//
//   serialize -> /dev/null     JSON.stringify of the rows into JSONEachRow batch bodies,
//                              written to /dev/null: the floor any JSON exporter pays
//   exporter -> HTTP sink      the exporter unchanged, POSTing to a local Node server (in
//                              another process) that discards the bodies: the exporter's
//                              own cost without ClickHouse's answer times
//   exporter -> ClickHouse     gzip on (the default) and off
//
//   sudo node build/js/bench/export/main.js [--rows 100000] [--batch 10000] [--runs 3]
//
// rows/s: rows offered until ClickHouse acknowledged the last INSERT (end to end).
// CPU: this process's user+system time (process.cpuUsage) per 1,000 rows, and the
// server's (its /proc/PID/stat, 10 ms ticks). Medians of --runs runs; each run inserts
// into a fresh table and checks the row count ClickHouse reports.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import Table from 'cli-table3';
import { withLab } from '../lib/lab.js';
import { machine, median, numArg } from '../lib/harness.js';
import { cpuMs } from '../lib/proc.js';
import { ClickHouseServer, freePort } from '../../test/helpers/servers.js';
import { ClickHouseExporter } from '../../daemon/src/export/clickhouse.js';
import { ClickHouseHttp } from '../../daemon/src/export/clickhouse-http.js';
import type { FlowRecord } from '../../daemon/src/export/api-types.js';

const ROWS = numArg('rows', 100_000);
const BATCH = numArg('batch', 10_000);
const RUNS = numArg('runs', 3);

/** Rows shaped like a busy host's: many remotes, a few dozen commands, mostly short TCP. */
function makeRows(n: number): FlowRecord[] {
  const comms = ['curl', 'firefox', 'sshd', 'nginx', 'postgres', 'node', 'python3', 'apt', 'chrome', 'systemd-resolve'];
  const t = Math.floor(Date.now() / 1000);
  return Array.from({ length: n }, (_, i) => ({
    at: t + Math.floor(i / 1000), host: 'bench-host-01', machine_id: '0123456789abcdef0123456789abcdef', kind: i % 10 === 0 ? 'update' : 'close',
    first_seen_at: t - (i % 600), duration_ms: (i * 37) % 60_000, protocol: i % 7 === 0 ? 'udp' : 'tcp', family: 'ipv4',
    local_addr: '198.18.0.1', local_port: 32768 + (i % 28000), remote_addr: `198.19.${(i >> 8) & 255}.${i & 255}`, remote_port: [443, 80, 53, 5432, 22][i % 5]!,
    direction: 'outbound', interface: 'eth0', pid: 1000 + (i % 5000), comm: comms[i % comms.length]!, uid: 1000 + (i % 3), unit: i % 3 === 0 ? 'nginx.service' : '', container: '',
    attributed_by: 'connect', tx_bytes: 200 + ((i * 7919) % 1_000_000), rx_bytes: 1000 + ((i * 104729) % 5_000_000), tx_packets: 5 + (i % 900), rx_packets: 6 + (i % 1200),
    payload_sent: (i * 31) % 100_000, payload_received: (i * 17) % 900_000,
  }));
}

interface Result { rowsPerS: number; cpuPer1k: number; serverCpuPer1k: number | null; wireBytesPerRow: number }

function cpuNowMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The floor: the same bodies, serialized and written to /dev/null. */
function serializeToDevNull(rows: FlowRecord[]): Result {
  const fd = fs.openSync('/dev/null', 'w');
  const c0 = cpuNowMs();
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < rows.length; i += BATCH) {
    const body = Buffer.from(rows.slice(i, i + BATCH).map((r) => `${JSON.stringify(r)}\n`).join(''));
    fs.writeSync(fd, body);
    bytes += body.length;
  }
  const wall = performance.now() - t0;
  const cpu = cpuNowMs() - c0;
  fs.closeSync(fd);
  return { rowsPerS: (rows.length * 1000) / wall, cpuPer1k: (cpu * 1000) / rows.length, serverCpuPer1k: null, wireBytesPerRow: bytes / rows.length };
}

async function runExporter(rows: FlowRecord[], url: string, table: string, compress: boolean, serverPid: number | null, count?: () => Promise<number>): Promise<Result> {
  const x = new ClickHouseExporter({ url, database: 'bench', table, batchRows: BATCH, flushIntervalMs: 60_000, bufferRows: rows.length, compress, timeoutMs: 60_000 });
  if (!(await x.flush())) throw new Error(`schema: ${JSON.stringify(x.status().lastError)}`); // schema first, outside the timing
  const s0 = serverPid ? cpuMs(serverPid) : 0;
  const c0 = cpuNowMs();
  const t0 = performance.now();
  // Offered as the daemon offers them: in small groups (a snapshot, a burst of closes).
  for (let i = 0; i < rows.length; i += 500) x.offer(rows.slice(i, i + 500));
  if (!(await x.flush())) throw new Error(`export failed: ${JSON.stringify(x.status().lastError)}`);
  const wall = performance.now() - t0;
  const cpu = cpuNowMs() - c0;
  const st = x.status();
  await x.stop(0);
  if (st.sent.rows !== rows.length) throw new Error(`sent ${st.sent.rows} of ${rows.length}`);
  if (count) {
    const n = await count();
    if (n !== rows.length) throw new Error(`ClickHouse holds ${n} rows, expected ${rows.length}`);
  }
  return {
    rowsPerS: (rows.length * 1000) / wall,
    cpuPer1k: (cpu * 1000) / rows.length,
    serverCpuPer1k: serverPid ? ((cpuMs(serverPid) - s0) * 1000) / rows.length : null,
    wireBytesPerRow: st.sent.bytes / rows.length,
  };
}

/** A local HTTP server in its own process that reads and discards bodies, answering 200. */
async function startSink(): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const code = `require('http').createServer((q, s) => { if (q.url.includes('version')) { q.resume(); q.on('end', () => s.end('sink')); return; } q.on('data', () => {}); q.on('end', () => s.end('')); }).listen(${port}, '127.0.0.1', () => console.log('ready'));`;
  const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`sink exited ${c}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => p.kill('SIGKILL') };
}

await withLab('export', async (lab) => {
  const ch = await ClickHouseServer.start(lab);
  const sink = await startSink();
  lab.onDestroy(() => sink.stop());
  const rows = makeRows(ROWS);
  // Warm-up (JIT, connections, the server's first parts), not measured.
  await runExporter(rows.slice(0, 20_000), ch.url, 'warmup', true, null);
  const http = new ClickHouseHttp({ url: new URL(ch.url), timeoutMs: 60_000 });
  const modes: Array<[string, (run: number) => Promise<Result>]> = [
    ['serialize -> /dev/null (floor)', async () => serializeToDevNull(rows)],
    ['exporter -> HTTP sink, gzip', async () => runExporter(rows, sink.url, 'sink', true, null)],
    ['exporter -> HTTP sink, no gzip', async () => runExporter(rows, sink.url, 'sink', false, null)],
    ['exporter -> ClickHouse 18.16, gzip (default)', async (run) => runExporter(rows, ch.url, `gz${run}`, true, ch.pid ?? null, async () => Number(await http.query(`SELECT count() FROM bench.gz${run}`)))],
    ['exporter -> ClickHouse 18.16, no gzip', async (run) => runExporter(rows, ch.url, `plain${run}`, false, ch.pid ?? null, async () => Number(await http.query(`SELECT count() FROM bench.plain${run}`)))],
  ];
  const results = new Map<string, Result[]>();
  // Interleaved runs: a load spike on the shared machine hits every mode, not one.
  for (let run = 0; run < RUNS; run++) {
    for (const [name, fn] of modes) {
      const r = await fn(run);
      results.set(name, [...(results.get(name) ?? []), r]);
    }
  }
  http.close();
  const table = new Table({ head: ['mode', 'rows/s', 'exporter CPU ms / 1k rows', 'server CPU ms / 1k rows', 'bytes/row sent', 'rows/s per run'], style: { head: [], border: [] } });
  const floor = median(results.get(modes[0]![0])!.map((r) => r.cpuPer1k));
  for (const [name] of modes) {
    const rs = results.get(name)!;
    const cpu = median(rs.map((r) => r.cpuPer1k));
    table.push([
      name,
      Math.round(median(rs.map((r) => r.rowsPerS))).toLocaleString('en-US'),
      `${cpu.toFixed(2)} (${(cpu / floor).toFixed(1)}x floor)`,
      rs[0]!.serverCpuPer1k === null ? '-' : median(rs.map((r) => r.serverCpuPer1k!)).toFixed(2),
      Math.round(median(rs.map((r) => r.wireBytesPerRow))).toString(),
      rs.map((r) => Math.round(r.rowsPerS).toLocaleString('en-US')).join(', '),
    ]);
  }
  console.log(`bench/export: ${ROWS.toLocaleString('en-US')} rows, batches of ${BATCH}, ${RUNS} runs (medians); ClickHouse ${(await ch.query('SELECT version()')).trim()}`);
  console.log(machine());
  console.log(table.toString());
});
