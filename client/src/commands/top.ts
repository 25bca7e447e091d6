// SPDX-License-Identifier: Apache-2.0
// A live per-process bandwidth view, like nethogs: rates are the difference between two
// snapshots of the daemon's cumulative per-process totals.
import { Command } from 'commander';
import type { ProcessTotals } from '../../../daemon/src/contract/flows.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { bytes, rate, userName } from '../render/format.js';
import { placeText } from '../render/place.js';
import { renderTable } from '../render/table.js';
import { CLEAR, intArg } from './common.js';
import { follow, reconnectOption, sleepUnless } from './follow.js';

interface Row extends ProcessTotals {
  txRate: number;
  rxRate: number;
}

export function topCommand(): Command {
  return new Command('top')
    .description('live per-process bandwidth, refreshed every second')
    .option('--interval <s>', 'refresh interval in seconds', intArg(1, 3600), 1)
    .option('--count <n>', 'stop after n refreshes', intArg(1, 1_000_000))
    .option('--json', 'one JSON array of rows per refresh')
    .addOption(reconnectOption())
    .action(async (o, cmd: Command) => {
      let prev = new Map<string, ProcessTotals>();
      let prevAt = Date.now();
      let i = 0;
      await follow(cmd, { reconnectSec: o.reconnect }, async ({ client: c, signal }) => {
        for (; !signal.aborted; i++) {
          const { processes } = await c.call(METHODS.processesList, { places: 1 });
          const now = Date.now();
          const dt = Math.max(1, now - prevAt) / 1000;
          const rows: Row[] = processes.map((p) => {
            const before = prev.get(`${p.pid}`);
            return { ...p, txRate: before ? Math.max(0, p.txBytes - before.txBytes) / dt : 0, rxRate: before ? Math.max(0, p.rxBytes - before.rxBytes) / dt : 0 };
          });
          rows.sort((a, b) => b.txRate + b.rxRate - (a.txRate + a.rxRate) || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
          prev = new Map(processes.map((p) => [`${p.pid}`, p]));
          prevAt = now;
          const height = Math.max(5, (process.stdout.rows || 40) - 4);
          if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
          else {
            if (process.stdout.isTTY) process.stdout.write(CLEAR);
            const totalTx = rows.reduce((s, r) => s + r.txRate, 0);
            const totalRx = rows.reduce((s, r) => s + r.rxRate, 0);
            process.stdout.write(`ebpfmon top - ${new Date(now).toLocaleTimeString()} - total sent ${rate(totalTx)}, received ${rate(totalRx)}\n\n`);
            process.stdout.write(`${renderTable(rows.slice(0, height), [
              { header: 'PID', value: (r) => (r.pid === null ? '-' : String(r.pid)), align: 'right' },
              { header: 'USER', value: (r) => userName(r.uid) },
              { header: 'PROGRAM', value: (r) => r.comm ?? '(unknown process)', flex: true },
              { header: 'SENT/s', value: (r) => rate(r.txRate), align: 'right' },
              { header: 'RECV/s', value: (r) => rate(r.rxRate), align: 'right' },
              { header: 'SENT', value: (r) => bytes(r.txBytes), align: 'right' },
              { header: 'RECV', value: (r) => bytes(r.rxBytes), align: 'right' },
              { header: 'FLOWS', value: (r) => `${r.openFlows}/${r.flows}`, align: 'right' },
              { header: 'MOSTLY TO', value: (r) => placeText(r.places[0]), flex: true },
            ])}\n`);
          }
          if (o.count !== undefined && i + 1 >= o.count) return;
          await sleepUnless(o.interval * 1000, signal);
        }
      });
    });
}
