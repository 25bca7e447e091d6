// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl history`: what was seen earlier, from the daemon's embedded store
// (JSON-RPC history.query; docs/history.md). Filters combine; --by groups.
import { Command, Option } from 'commander';
import { HISTORY_GROUP_BY, type HistoryFlow, type HistoryGroup, type HistoryQueryParams, type HistoryQueryResult } from '../../../daemon/src/contract/history.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { bytes, endpoint, userName } from '../render/format.js';
import { renderTable, type Column } from '../render/table.js';
import { choiceArg, intArg, withClient } from './common.js';

const COUNTS = <T extends { txBytes: number; rxBytes: number; connections: number }>(): Column<T>[] => [
  { header: 'SENT', value: (r) => bytes(r.txBytes), align: 'right' },
  { header: 'RECV', value: (r) => bytes(r.rxBytes), align: 'right' },
  { header: 'CONNS', value: (r) => String(r.connections), align: 'right' },
];

const FLOW_COLUMNS: Column<HistoryFlow>[] = [
  { header: 'FIRST SEEN', value: (f) => f.firstSeenAt.replace('T', ' ').slice(0, 19) },
  { header: 'PROTO', value: (f) => f.protocol },
  { header: 'LOCAL', value: (f) => endpoint(f.localAddr, f.localPort), flex: true },
  { header: 'REMOTE', value: (f) => (f.remoteName ? `${f.remoteName} (${endpoint(f.remoteAddr, f.remotePort)})` : endpoint(f.remoteAddr, f.remotePort)), flex: true },
  { header: 'PID', value: (f) => (f.pid === null ? '-' : String(f.pid)), align: 'right' },
  { header: 'COMM', value: (f) => f.comm ?? '(unknown)', flex: true },
  { header: 'USER', value: (f) => userName(f.uid) },
  { header: 'STATE', value: (f) => f.state },
  ...COUNTS<HistoryFlow>(),
];

const GROUP_COLUMNS: Record<(typeof HISTORY_GROUP_BY)[number], Column<HistoryGroup>[]> = {
  process: [
    { header: 'PID', value: (g) => (g.pid === null || g.pid === undefined ? '-' : String(g.pid)), align: 'right' },
    { header: 'COMM', value: (g) => g.comm ?? '(unknown)', flex: true },
    { header: 'USER', value: (g) => userName(g.uid ?? null) },
    { header: 'UNIT', value: (g) => g.unit ?? '-', flex: true },
    ...COUNTS<HistoryGroup>(),
  ],
  remote: [
    { header: 'PROTO', value: (g) => g.protocol ?? '-' },
    { header: 'REMOTE', value: (g) => endpoint(g.remoteAddr ?? '-', g.remotePort ?? null), flex: true },
    ...COUNTS<HistoryGroup>(),
  ],
  name: [{ header: 'NAME', value: (g) => g.name ?? '(no name)', flex: true }, ...COUNTS<HistoryGroup>()],
  hour: [{ header: 'HOUR', value: (g) => g.startsAt ?? '-' }, ...COUNTS<HistoryGroup>()],
  day: [{ header: 'DAY', value: (g) => g.startsAt ?? '-' }, ...COUNTS<HistoryGroup>()],
};

export function historyCommand(): Command {
  return new Command('history')
    .description('flows and per-process totals seen earlier (the daemon keeps them on disk)')
    .option('--since <t>', 'start: an ISO 8601 date-time or a duration back from now (90m, 24h, 7d)', '24h')
    .option('--until <t>', 'end: an ISO 8601 date-time or a duration back from now (default: now)')
    .option('--pid <n>', 'flows of this process', intArg(0, 0x7fffffff))
    .option('--comm <name>', 'flows of processes with this command name')
    .option('--user <u>', 'flows of this user (name or uid)')
    .option('--unit <u>', 'flows of this systemd unit (a name or a glob: "*.service")')
    .option('--remote <addr>', 'remote address or CIDR prefix')
    .option('--name <glob>', "remote's name (a glob)")
    .addOption(new Option('--by <key>', 'group by').argParser(choiceArg(HISTORY_GROUP_BY)))
    .option('--limit <n>', 'at most this many rows', intArg(1, 10_000))
    .option('--json', 'print the JSON-RPC result object (docs/cli.md)')
    .action(async (o, cmd: Command) => {
      const params: HistoryQueryParams = {
        since: o.since, until: o.until, pid: o.pid, comm: o.comm, user: o.user !== undefined && /^\d+$/.test(o.user) ? Number(o.user) : o.user,
        unit: o.unit, remote: o.remote, name: o.name, by: o.by, limit: o.limit,
      };
      for (const k of Object.keys(params) as Array<keyof HistoryQueryParams>) if (params[k] === undefined) delete params[k];
      await withClient(cmd, async (c) => printHistory(await c.call(METHODS.historyQuery, params), o));
    });
}

function printHistory(r: HistoryQueryResult, o: { json?: boolean }): void {
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return;
  }
  const rows = r.flows ?? r.groups ?? [];
  const table = r.flows ? renderTable(r.flows, FLOW_COLUMNS) : renderTable(r.groups ?? [], GROUP_COLUMNS[r.by ?? 'process']);
  process.stdout.write(`${rows.length ? table : 'nothing recorded matches'}\n`);
  if (r.truncated) process.stdout.write(`(${r.matched - rows.length} more; raise --limit)\n`);
  const t = r.totals;
  process.stdout.write(`${r.since} .. ${r.until}: sent ${bytes(t.txBytes)}, received ${bytes(t.rxBytes)}, ${t.connections} connection${t.connections === 1 ? '' : 's'}\n`);
  if (r.recordsSince) process.stdout.write(`(flow records before ${r.recordsSince} were removed by the size limit; per-process totals remain)\n`);
}
