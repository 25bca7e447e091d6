// SPDX-License-Identifier: Apache-2.0
import { Command, Option } from 'commander';
import { EVENT_TYPES, type MonitorEvent } from '../../../daemon/src/contract/events.js';
import { subscribeEvents } from '../events.js';
import { bytes, endpoint, userName } from '../render/format.js';
import { appLabel, containerLabel, unitLabel } from '../render/identity.js';
import { addIdentityOptions, identityParams, intArg, listArg } from './common.js';
import { follow, reconnectOption, untilClosed, type Gap } from './follow.js';

/** ` {unit, container, app}` after the process, for the kinds its owner has. */
function owner(e: MonitorEvent): string {
  if (e.type === 'lb' || e.type === 'dns' || e.type === 'http') return '';
  const parts = [e.unit !== null ? unitLabel(e) : null, e.container ? containerLabel(e.container) : null, e.app ? appLabel(e.app) : null].filter((x) => x !== null);
  return parts.length ? ` {${parts.join(', ')}}` : '';
}

function line(e: MonitorEvent): string {
  const who = `${e.comm ?? '?'}[${e.pid ?? '?'}] ${userName(e.uid)}${owner(e)}`;
  const t = e.at.slice(11, 23);
  switch (e.type) {
    case 'connect':
    case 'accept':
      return `${t} ${e.type.padEnd(7)} ${who} ${e.protocol} ${endpoint(e.localAddr, e.localPort)} ${e.type === 'connect' ? '->' : '<-'} ${endpoint(e.remoteAddr, e.remotePort)} (${e.attributedBy})`;
    case 'close':
      return `${t} close   ${who} ${e.protocol} ${endpoint(e.localAddr, e.localPort)} -- ${endpoint(e.remoteAddr, e.remotePort)} sent ${bytes(e.txBytes)} recv ${bytes(e.rxBytes)}${e.durationMs !== null ? ` in ${e.durationMs.toFixed(1)} ms` : ''}`;
    case 'exec':
      return `${t} exec    ${who} ppid ${e.ppid} ${e.filename} ${e.args.slice(1).join(' ')}${e.argsTruncated ? ' ...' : ''}`;
    case 'exit':
      return `${t} exit    ${who} ppid ${e.ppid} code ${e.exitCode}${e.signal ? ` signal ${e.signal}` : ''}`;
    case 'lb':
      return `${t} lb      ${e.name} ${Object.entries(e.detail).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ')}`;
    case 'dns':
      return `${t} dns     ${who} ${e.name} ${e.recordType} ${e.rcode ?? 'no answer'} ${e.answers.map((a) => a.data ?? a.recordType).join(',')}${e.latencyMs !== null ? ` in ${e.latencyMs.toFixed(1)} ms` : ''} via ${e.server}`;
    case 'http':
      return `${t} http    ${who} ${e.method} ${e.host ?? '-'}${e.path ?? '(too long)'} -> ${e.status ?? '-'}${e.timeToFirstByteMs !== null ? ` in ${e.timeToFirstByteMs.toFixed(1)} ms` : ''}${e.tls ? ' tls' : ''}`;
  }
}

export function eventsCommand(): Command {
  return addIdentityOptions(new Command('events'))
    .description('follow connect, accept, close, exec, exit, load-balancer, DNS and HTTP events until interrupted')
    .addOption(new Option('--type <types>', `comma-separated: ${EVENT_TYPES.join(',')}`).argParser(listArg(EVENT_TYPES)))
    .option('--pid <n>', 'only events of this process', intArg(0, 0x7fffffff))
    .option('--count <n>', 'exit after n events', intArg(1, 100_000_000))
    .option('--json', 'one JSON object per line')
    .addOption(reconnectOption())
    .action(async (o, cmd: Command) => {
      let seen = 0;
      const onGap = (g: Gap) => {
        if (o.json) process.stdout.write(`${JSON.stringify({ type: 'gap', since: g.since.toISOString(), until: g.until.toISOString(), reason: g.reason })}\n`);
      };
      await follow(cmd, { reconnectSec: o.reconnect, onGap }, async ({ client, signal }) => {
        let finish!: () => void;
        const finished = new Promise<void>((r) => (finish = r));
        signal.addEventListener('abort', finish);
        const subscription = await subscribeEvents(client, { types: o.type, pid: o.pid, ...identityParams(o) }, {
          onEvent: (e) => {
            if (o.count !== undefined && seen >= o.count) return; // the rest of the last batch
            process.stdout.write(`${o.json ? JSON.stringify(e) : line(e)}\n`);
            if (o.count !== undefined && ++seen >= o.count) finish();
          },
          onLost: (lost) => {
            if (o.json) process.stdout.write(`${JSON.stringify({ type: 'lost', lost })}\n`);
            else process.stderr.write(`ebpfmonctl: ${lost} event(s) lost (this terminal reads too slowly)\n`);
          },
        });
        if (process.env.EBPFMONCTL_ANNOUNCE) process.stderr.write(`subscribed ${subscription}\n`);
        await Promise.race([finished, untilClosed(client)]);
      });
    });
}
