// SPDX-License-Identifier: Apache-2.0
// A live per-process bandwidth view, like nethogs: rates are the difference between two
// snapshots of the daemon's cumulative per-process totals. `--by unit|container|app` shows
// the daemon's totals per group instead (each the sum of the group's processes). Per
// process, the daemon sends only the rows that changed since the previous refresh (`since`,
// docs/api.md); the rest are kept here (processrows.ts).
import { Command, Option } from 'commander';
import type { ProcessesListParams, ProcessTotals } from '../../../daemon/src/contract/flows.js';
import { PROCESS_GROUPINGS, type GroupTotals } from '../../../daemon/src/contract/identity.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { bytes, rate, userName } from '../render/format.js';
import { appLabel, containerLabel, identityColumns } from '../render/identity.js';
import { renderTable, type Column } from '../render/table.js';
import { addIdentityOptions, choiceArg, CLEAR, identityParams, intArg } from './common.js';
import { placeText } from '../render/place.js';
import { follow, reconnectOption, sleepUnless } from './follow.js';
import { processKey, ProcessRows } from '../processrows.js';
import { CliError, EXIT } from '../exit.js';
import type { DaemonClient } from '../rpc.js';

interface Rates {
  txRate: number;
  rxRate: number;
}
type ProcessRow = ProcessTotals & Rates;
type GroupRow = GroupTotals & Rates;

const RATE_COLUMNS = <T extends Rates & { txBytes: number; rxBytes: number; openFlows: number; flows: number }>(): Column<T>[] => [
  { header: 'SENT/s', value: (r) => rate(r.txRate), align: 'right' },
  { header: 'RECV/s', value: (r) => rate(r.rxRate), align: 'right' },
  { header: 'SENT', value: (r) => bytes(r.txBytes), align: 'right' },
  { header: 'RECV', value: (r) => bytes(r.rxBytes), align: 'right' },
  { header: 'FLOWS', value: (r) => `${r.openFlows}/${r.flows}`, align: 'right' },
];

const GROUP_HEADER: Record<GroupTotals['by'], string> = { unit: 'UNIT', container: 'CONTAINER', app: 'APP' };

/** Rows with rates from the previous snapshot of the same keys, busiest first. */
function withRates<T extends { txBytes: number; rxBytes: number }>(rows: T[], key: (r: T) => string, prev: Map<string, T>, dt: number): Array<T & Rates> {
  const out = rows.map((r) => {
    const before = prev.get(key(r));
    return { ...r, txRate: before ? Math.max(0, r.txBytes - before.txBytes) / dt : 0, rxRate: before ? Math.max(0, r.rxBytes - before.rxBytes) / dt : 0 };
  });
  return out.sort((a, b) => b.txRate + b.rxRate - (a.txRate + a.rxRate) || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
}

/**
 * Every process's totals: an incremental reply merged into `kept`, or (`legacy.on`: a daemon
 * from before `since`, which refuses the param or answers without a cursor) a full reply.
 */
async function processList(c: DaemonClient, params: ProcessesListParams, kept: ProcessRows, legacy: { on: boolean }): Promise<ProcessTotals[]> {
  if (!legacy.on) {
    try {
      if (kept.apply(await c.call(METHODS.processesList, { ...params, since: kept.cursor }))) return kept.list();
      legacy.on = true;
      return kept.list();
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === EXIT.USAGE && err.message.includes('params.since'))) throw err;
      legacy.on = true;
      kept.reset();
    }
  }
  return (await c.call(METHODS.processesList, params)).processes;
}

export function topCommand(): Command {
  return addIdentityOptions(new Command('top'))
    .description('live per-process bandwidth (or per unit, container or app), refreshed every second')
    .addOption(new Option('--by <what>', 'one row per process (default), unit, container or app').argParser(choiceArg(PROCESS_GROUPINGS)).default('process'))
    .option('--interval <s>', 'refresh interval in seconds', intArg(1, 3600), 1)
    .option('--count <n>', 'stop after n refreshes', intArg(1, 1_000_000))
    .option('--json', 'one JSON array of rows per refresh')
    .addOption(reconnectOption())
    .action(async (o, cmd: Command) => {
      const by = o.by as (typeof PROCESS_GROUPINGS)[number];
      let prevProcs = new Map<string, ProcessTotals>();
      let prevGroups = new Map<string, GroupTotals>();
      let prevAt = Date.now();
      let i = 0;
      const kept = new ProcessRows();
      await follow(cmd, { reconnectSec: o.reconnect }, async ({ client: c, signal }) => {
        // A new connection may be another daemon (restarted, upgraded): start a new stream.
        kept.reset();
        const legacy = { on: false };
        for (; !signal.aborted; i++) {
          const params: ProcessesListParams = { ...identityParams(o), ...(by !== 'process' ? { by } : { places: 1 }) };
          const r = by === 'process' ? { processes: await processList(c, params, kept, legacy) } : await c.call(METHODS.processesList, params);
          const now = Date.now();
          const dt = Math.max(1, now - prevAt) / 1000;
          prevAt = now;
          const height = Math.max(5, (process.stdout.rows || 40) - 4);
          let rows: ProcessRow[] | GroupRow[];
          let table: () => string;
          if (by === 'process') {
            const procRows = withRates(r.processes, processKey, prevProcs, dt);
            prevProcs = new Map(r.processes.map((p) => [processKey(p), p]));
            rows = procRows;
            table = () => renderTable(procRows.slice(0, height), [
              { header: 'PID', value: (p) => (p.pid === null ? '-' : String(p.pid)), align: 'right' },
              { header: 'USER', value: (p) => userName(p.uid) },
              { header: 'PROGRAM', value: (p) => p.comm ?? '(unknown process)', flex: true },
              ...identityColumns(procRows),
              ...RATE_COLUMNS<ProcessRow>(),
              // Only when some process made HTTP requests (L7 on): the table stays narrow otherwise.
              ...(procRows.some((p) => p.http) ? [{ header: 'REQ', value: (p: ProcessRow) => (p.http ? String(p.http.requests) : '-'), align: 'right' as const }] : []),
              { header: 'MOSTLY TO', value: (p) => placeText(p.places[0]), flex: true },
            ]);
          } else {
            const groups = r.groups ?? [];
            const groupRows = withRates(groups, (g) => `${g.key}`, prevGroups, dt);
            prevGroups = new Map(groups.map((g) => [`${g.key}`, g]));
            rows = groupRows;
            table = () => renderTable(groupRows.slice(0, height), [
              { header: GROUP_HEADER[by], value: (g) => (by === 'container' && g.container ? containerLabel(g.container) : by === 'app' && g.app ? appLabel(g.app) : g.label), flex: true },
              { header: 'PROCS', value: (g) => String(g.pids.length), align: 'right' },
              ...RATE_COLUMNS<GroupRow>(),
            ]);
          }
          if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
          else {
            if (process.stdout.isTTY) process.stdout.write(CLEAR);
            const totalTx = (rows as Rates[]).reduce((s, x) => s + x.txRate, 0);
            const totalRx = (rows as Rates[]).reduce((s, x) => s + x.rxRate, 0);
            process.stdout.write(`ebpfmon top${by !== 'process' ? ` by ${by}` : ''} - ${new Date(now).toLocaleTimeString()} - total sent ${rate(totalTx)}, received ${rate(totalRx)}\n\n`);
            process.stdout.write(`${table()}\n`);
          }
          if (o.count !== undefined && i + 1 >= o.count) return;
          await sleepUnless(o.interval * 1000, signal);
        }
      });
    });
}
