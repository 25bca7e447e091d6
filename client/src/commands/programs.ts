// SPDX-License-Identifier: Apache-2.0
import { Command } from 'commander';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { renderTable } from '../render/table.js';
import { withClient } from './common.js';

export function programsCommand(): Command {
  return new Command('programs')
    .description('what ebpfmon has loaded, attached and pinned')
    .option('--json', 'print programs and links as JSON')
    .action(async (o, cmd: Command) => {
      const r = await withClient(cmd, (c) => c.call(METHODS.programsList));
      if (o.json) return void process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      process.stdout.write(`${renderTable(r.programs, [
        { header: 'ID', value: (p) => String(p.id), align: 'right' },
        { header: 'TYPE', value: (p) => p.type },
        { header: 'NAME', value: (p) => p.name },
        { header: 'COMPONENT', value: (p) => p.component },
        { header: 'HOOKS', value: (p) => p.hooks.join(', ') || '-', flex: true },
        { header: 'RUNS', value: (p) => (p.runCount ? String(p.runCount) : '-'), align: 'right' },
        { header: 'NS/RUN', value: (p) => (p.runCount ? (p.runTimeNs / p.runCount).toFixed(0) : '-'), align: 'right' },
        { header: 'MISSED', value: (p) => String(p.recursionMisses), align: 'right' },
        { header: 'VERIFIED', value: (p) => (p.verifiedInsns ? String(p.verifiedInsns) : '-'), align: 'right' },
      ])}\n`);
      if (!r.programs.some((p) => p.runCount)) process.stdout.write('(run counts need kernel.bpf_stats_enabled=1)\n');
    });
}
