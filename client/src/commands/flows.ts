// SPDX-License-Identifier: Apache-2.0
import { Command, Option } from 'commander';
import { PROTOCOLS } from '../../../daemon/src/contract/common.js';
import { FLOW_SORTS, type Flow, type FlowsListParams, type FlowsListResult } from '../../../daemon/src/contract/flows.js';
import { GEO_LABELS } from '../../../daemon/src/contract/geo.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { bytes, endpoint, userName } from '../render/format.js';
import { identityColumns } from '../render/identity.js';
import { placeText } from '../render/place.js';
import { renderTable, type Column } from '../render/table.js';
import { addIdentityOptions, choiceArg, CLEAR, identityParams, intArg, withClient } from './common.js';
import { follow, reconnectOption, sleepUnless } from './follow.js';

const COLUMNS: Column<Flow>[] = [
  { header: 'PROTO', value: (f) => f.protocol },
  { header: 'LOCAL', value: (f) => endpoint(f.localAddr, f.localPort), flex: true },
  { header: 'DIR', value: (f) => (f.direction === 'outbound' ? '->' : f.direction === 'inbound' ? '<-' : '--') },
  { header: 'REMOTE', value: (f) => (f.icmpType !== undefined ? `${f.remoteAddr} type ${f.icmpType}` : endpoint(f.remoteAddr, f.remotePort)), flex: true },
  { header: 'WHERE', value: (f) => placeText(f.remoteGeo), flex: true },
  { header: 'PID', value: (f) => (f.pid === null ? '-' : String(f.pid)), align: 'right' },
  { header: 'COMM', value: (f) => f.comm ?? '(unknown)', flex: true },
  { header: 'USER', value: (f) => userName(f.uid) },
  { header: 'BY', value: (f) => f.attributedBy },
];
const COLUMNS_AFTER: Column<Flow>[] = [
  { header: 'STATE', value: (f) => f.state },
  { header: 'SENT', value: (f) => bytes(f.txBytes), align: 'right' },
  { header: 'RECV', value: (f) => bytes(f.rxBytes), align: 'right' },
  { header: 'IF', value: (f) => f.interface ?? '-' },
];

/** The HTTP summary (L7), only when some flow has one: `12 req, 1 4xx, last GET /x 200`. */
function httpColumns(flows: Flow[]): Column<Flow>[] {
  if (!flows.some((f) => f.http)) return [];
  return [{
    header: 'HTTP',
    value: (f) => {
      const h = f.http;
      if (!h) return '-';
      const errs = [h.clientErrors ? `${h.clientErrors} 4xx` : '', h.serverErrors ? `${h.serverErrors} 5xx` : ''].filter(Boolean).join(', ');
      return `${h.requests} req${errs ? `, ${errs}` : ''}, last ${h.lastMethod} ${h.lastPath ?? '(too long)'} ${h.lastStatus ?? '-'}`;
    },
    flex: true,
  }];
}

export function flowsCommand(): Command {
  return addIdentityOptions(new Command('flows'))
    .description('list flows: who talks to whom, and how much')
    .option('--pid <n>', 'flows of this process', intArg(0, 0x7fffffff))
    .option('--comm <name>', 'flows of processes with this command name')
    .option('--uid <n>', 'flows of this user id', intArg(0, 0xfffffffe))
    .option('--remote <addr>', 'remote address or CIDR prefix')
    .option('--local <addr>', 'local address or CIDR prefix')
    .option('--port <n>', 'local or remote port', intArg(0, 65535))
    .addOption(new Option('--protocol <p>', 'protocol').argParser(choiceArg(PROTOCOLS)))
    .option('--interface <name>', 'interface that carried the flow')
    .option('--country <cc>', 'remote address in this country (ISO 3166-1 code, e.g. DE)')
    .option('--asn <n>', 'remote address announced by this autonomous system', intArg(0, 0xffffffff))
    .addOption(new Option('--label <range>', 'remote address in this special range').argParser(choiceArg(GEO_LABELS)))
    .option('--open', 'only flows that are not closed')
    .addOption(new Option('--sort <key>', 'sort by').argParser(choiceArg(FLOW_SORTS)).default('bytes'))
    .option('--limit <n>', 'at most this many flows', intArg(1, 100000))
    .option('--json', 'print a JSON array of flow objects (docs/cli.md)')
    .option('--watch', 'refresh every --interval seconds')
    .option('--interval <s>', 'refresh interval for --watch', intArg(1, 3600), 1)
    .option('--count <n>', 'with --watch: stop after n refreshes', intArg(1, 1_000_000))
    .addOption(reconnectOption())
    .action(async (o, cmd: Command) => {
      const params: FlowsListParams = {
        pid: o.pid, comm: o.comm, uid: o.uid, remoteAddr: o.remote, localAddr: o.local, port: o.port, protocol: o.protocol,
        interface: o.interface, includeClosed: o.open ? false : undefined, sort: o.sort, limit: o.limit, ...identityParams(o),
        country: o.country, asn: o.asn, label: o.label,
      };
      if (!o.watch) {
        await withClient(cmd, async (c) => printFlows(await c.call(METHODS.flowsList, params), o));
        return;
      }
      let i = 0;
      await follow(cmd, { reconnectSec: o.reconnect }, async ({ client: c, signal }) => {
        for (; !signal.aborted; i++) {
          printFlows(await c.call(METHODS.flowsList, params), o);
          if (o.count !== undefined && i + 1 >= o.count) return;
          await sleepUnless(o.interval * 1000, signal);
        }
      });
    });
}

function printFlows(r: FlowsListResult, o: { json?: boolean; watch?: boolean }): void {
  if (o.json) process.stdout.write(`${JSON.stringify(r.flows, null, o.watch ? undefined : 2)}\n`);
  else {
    if (o.watch && process.stdout.isTTY) process.stdout.write(CLEAR);
    process.stdout.write(`${r.flows.length ? renderTable(r.flows, [...COLUMNS, ...identityColumns(r.flows), ...httpColumns(r.flows), ...COLUMNS_AFTER]) : 'no flows match'}\n`);
    if (r.matched > r.flows.length) process.stdout.write(`(${r.matched - r.flows.length} more; raise --limit)\n`);
  }
}
