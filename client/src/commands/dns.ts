// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl dns`: the DNS questions processes asked and what came back (dns.list).
import { Command } from 'commander';
import type { DnsListParams, DnsListResult, DnsQuery } from '../../../daemon/src/contract/l7.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { userName } from '../render/format.js';
import { renderTable, type Column } from '../render/table.js';
import { intArg, withClient } from './common.js';

const COLUMNS: Column<DnsQuery>[] = [
  { header: 'TIME', value: (q) => q.at.slice(11, 23) },
  { header: 'PID', value: (q) => (q.pid === null ? '-' : String(q.pid)), align: 'right' },
  { header: 'COMM', value: (q) => q.comm ?? '(unknown)' },
  { header: 'USER', value: (q) => userName(q.uid) },
  { header: 'NAME', value: (q) => q.name, flex: true },
  { header: 'TYPE', value: (q) => q.recordType },
  { header: 'RCODE', value: (q) => q.rcode ?? '(none)' },
  { header: 'ANSWERS', value: (q) => q.answers.map((a) => a.data ?? a.recordType).join(' ') || '-', flex: true },
  { header: 'MS', value: (q) => (q.latencyMs === null ? '-' : q.latencyMs.toFixed(1)), align: 'right' },
  { header: 'SERVER', value: (q) => (q.via ? `${q.server} via ${q.via.comm ?? q.via.pid ?? '?'}` : q.server) },
];

export function dnsCommand(): Command {
  return new Command('dns')
    .description('list DNS queries per process: name, type, answers, rcode, latency (needs l7.dns)')
    .option('--pid <n>', 'queries of this process', intArg(0, 0x7fffffff))
    .option('--uid <n>', 'queries of this user id', intArg(0, 0xfffffffe))
    .option('--name <glob>', 'names matching this glob (`*.example.com`)')
    .option('--limit <n>', 'at most this many queries, newest first', intArg(1, 100000))
    .option('--json', 'print a JSON array of query objects (docs/cli.md)')
    .action(async (o, cmd: Command) => {
      const params: DnsListParams = { pid: o.pid, uid: o.uid, name: o.name, limit: o.limit };
      await withClient(cmd, async (c) => printQueries(await c.call(METHODS.dnsList, params), o));
    });
}

function printQueries(r: DnsListResult, o: { json?: boolean }): void {
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r.queries, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${r.queries.length ? renderTable(r.queries, COLUMNS) : 'no DNS queries match'}\n`);
  if (r.matched > r.queries.length) process.stdout.write(`(${r.matched - r.queries.length} more; raise --limit)\n`);
}
