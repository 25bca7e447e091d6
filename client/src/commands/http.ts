// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl http`: HTTP/1.x requests per process, plain and decrypted (http.list).
import { Command, Option } from 'commander';
import type { HttpListParams, HttpListResult, HttpRequest } from '../../../daemon/src/contract/l7.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { bytes, userName } from '../render/format.js';
import { renderTable, type Column } from '../render/table.js';
import { intArg, withClient } from './common.js';

const COLUMNS: Column<HttpRequest>[] = [
  { header: 'TIME', value: (h) => h.at.slice(11, 23) },
  { header: 'PID', value: (h) => (h.pid === null ? '-' : String(h.pid)), align: 'right' },
  { header: 'COMM', value: (h) => h.comm ?? '(unknown)' },
  { header: 'USER', value: (h) => userName(h.uid) },
  { header: 'METHOD', value: (h) => h.method },
  { header: 'HOST', value: (h) => h.host ?? h.remoteAddr ?? '-' },
  { header: 'PATH', value: (h) => h.path ?? '(too long)', flex: true },
  { header: 'STATUS', value: (h) => (h.status === null ? '-' : String(h.status)), align: 'right' },
  { header: 'REQ', value: (h) => bytes(h.requestBytes), align: 'right' },
  { header: 'RESP', value: (h) => bytes(h.responseBytes), align: 'right' },
  { header: 'TTFB MS', value: (h) => (h.timeToFirstByteMs === null ? '-' : h.timeToFirstByteMs.toFixed(1)), align: 'right' },
  { header: 'TLS', value: (h) => (h.tls ? 'yes' : '') },
];

/** Checked here so a typo is a usage error, not a round trip (the daemon checks again). */
function statusArg(v: string): string {
  if (!/^[1-5](xx|[0-9]{2})$/.test(v)) throw new Error(`--status must be an HTTP status (404) or a class (5xx), not "${v}"`);
  return v;
}

export function httpCommand(): Command {
  return new Command('http')
    .description('list HTTP/1.x requests per process: method, host, path, status, sizes, latency (needs l7.http; HTTPS through OpenSSL with l7.tls)')
    .option('--pid <n>', 'requests of this process', intArg(0, 0x7fffffff))
    .option('--uid <n>', 'requests of this user id', intArg(0, 0xfffffffe))
    .option('--host <glob>', 'Host header matching this glob (`*.example.com`)')
    .addOption(new Option('--status <s>', 'a status (404) or a class (5xx)').argParser(statusArg))
    .option('--method <m>', 'an HTTP method (GET)')
    .option('--tls', 'only requests decrypted through the OpenSSL uprobes')
    .option('--limit <n>', 'at most this many requests, newest first', intArg(1, 100000))
    .option('--json', 'print a JSON array of request objects (docs/cli.md)')
    .action(async (o, cmd: Command) => {
      const params: HttpListParams = { pid: o.pid, uid: o.uid, host: o.host, status: o.status, method: o.method?.toUpperCase(), tls: o.tls, limit: o.limit };
      await withClient(cmd, async (c) => printRequests(await c.call(METHODS.httpList, params), o));
    });
}

function printRequests(r: HttpListResult, o: { json?: boolean }): void {
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r.requests, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${r.requests.length ? renderTable(r.requests, COLUMNS) : 'no HTTP requests match'}\n`);
  if (r.matched > r.requests.length) process.stdout.write(`(${r.matched - r.requests.length} more; raise --limit)\n`);
}
