// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl identity PID` (or --cgroup-id ID): who a process is (its cgroup, systemd unit
// and slice, container, desktop app) and its process tree up to the unit's main process.
import { Command, InvalidArgumentError } from 'commander';
import type { IdentityGetParams } from '../../../daemon/src/contract/identity.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { appLabel, containerLabel } from '../render/identity.js';
import { intArg, withClient } from './common.js';

export function identityCommand(): Command {
  return new Command('identity')
    .description('the cgroup, unit, container and app of a process, and its process tree')
    .argument('[pid]', 'a process id', intArg(1, 0x7fffffff))
    .option('--cgroup-id <id>', 'a cgroup id as flows carry it (root and the ebpfmon group)', (v: string) => {
      if (!/^[1-9]\d{0,19}$/.test(v)) throw new InvalidArgumentError('expected a cgroup id (decimal digits), as `flows --json` shows cgroupId');
      return v;
    })
    .option('--json', 'print the identity object')
    .action(async (pid: number | undefined, o, cmd: Command) => {
      if (pid === undefined && o.cgroupId === undefined) cmd.error('error: give a pid or --cgroup-id', { exitCode: 2 });
      const params: IdentityGetParams = { ...(pid !== undefined ? { pid } : {}), ...(o.cgroupId !== undefined ? { cgroupId: o.cgroupId } : {}) };
      const r = await withClient(cmd, (c) => c.call(METHODS.identityGet, params));
      if (o.json) return void process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      const c = r.container;
      const lines = [
        `cgroup     ${r.cgroupPath ?? '(unknown)'}${r.cgroupId ? ` (id ${r.cgroupId})` : ''}`,
        `unit       ${r.unit ?? '-'}${r.slice ? ` in ${r.slice}` : ''}`,
        ...(r.userUnit ? [`user unit  ${r.userUnit}`] : []),
        ...(c ? [`container  ${containerLabel(c)}, id ${c.id}${c.podUid ? `, pod ${c.podUid}` : ''}${c.qos ? `, ${c.qos}` : ''}`] : []),
        ...(r.app ? [`app        ${appLabel(r.app)} (${r.app.kind} ${r.app.id})`] : []),
      ];
      if (r.tree.length) lines.push('tree       ' + r.tree.map((t) => `${t.comm}[${t.pid}]`).join(' <- '));
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
