// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl mirror ...`: copies of chosen processes' packets, whole frames, sent to a
// remote collector in VXLAN or GRE (docs/capture.md). Reads are open to all; add and
// remove need root or the ebpfmon-admin group (exit code 3 otherwise).
import { Command, Option } from 'commander';
import { CAPTURE_DIRECTIONS, MIRROR_ENCAPS, type MirrorAddParams, type MirrorCounters, type MirrorView } from '../../../daemon/src/contract/capture.js';
import { METHODS, type MethodName, type ParamsOf, type ResultOf } from '../../../daemon/src/contract/methods.js';
import { bytes } from '../render/format.js';
import { renderTable } from '../render/table.js';
import { choiceArg, intArg, withClient } from './common.js';

const call = <M extends MethodName>(cmd: Command, method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> => withClient(cmd, (c) => (c.call as (m: M, p?: ParamsOf<M>) => Promise<ResultOf<M>>)(method, params));
const out = (v: unknown): void => void process.stdout.write(`${typeof v === 'string' ? v : JSON.stringify(v, null, 2)}\n`);
const collect = <T>(parse: (v: string) => T) => (v: string, prev: T[] = []): T[] => [...prev, parse(v)];

function countersTable(rows: Array<{ name: string; state: string; counters: MirrorCounters }>): string {
  return renderTable(rows, [
    { header: 'NAME', value: (r) => r.name },
    { header: 'STATE', value: (r) => r.state, flex: true },
    { header: 'MATCHED', value: (r) => String(r.counters.matched), align: 'right' },
    { header: 'MIRRORED', value: (r) => String(r.counters.mirrored), align: 'right' },
    { header: 'BYTES', value: (r) => bytes(r.counters.mirroredBytes), align: 'right' },
    { header: 'TRUNC', value: (r) => String(r.counters.truncated), align: 'right' },
    { header: 'RATE-LIM', value: (r) => String(r.counters.rateLimited), align: 'right' },
    { header: 'FAILED', value: (r) => String(r.counters.failed), align: 'right' },
    { header: 'TOO-BIG', value: (r) => String(r.counters.tooBig), align: 'right' },
  ]);
}

function listTable(ms: MirrorView[]): string {
  return renderTable(ms, [
    { header: 'NAME', value: (m) => m.name },
    { header: 'TO', value: (m) => m.to },
    { header: 'ENCAP', value: (m) => `${m.encap} ${m.vni}` },
    { header: 'SELECT', value: (m) => describe(m.spec), flex: true },
    { header: 'STATE', value: (m) => m.state },
    { header: 'SOURCE', value: (m) => m.source },
    { header: 'MIRRORED', value: (m) => String(m.counters.mirrored), align: 'right' },
  ]);
}

function describe(s: MirrorAddParams): string {
  const parts = [
    ...(s.pids ?? []).map((p) => `pid ${p}`), ...(s.comms ?? []).map((c) => `comm ${c}`),
    ...(s.user !== undefined ? [`user ${s.user}`] : []), ...(s.unit ? [`unit ${s.unit}`] : []), ...(s.cgroup ? [`cgroup ${s.cgroup}`] : []),
    ...(s.container ? [`container ${s.container}`] : []), ...(s.app ? [`app ${s.app}`] : []),
    ...(s.interfaces ?? []).map((i) => `on ${i}`), ...(s.direction ? [s.direction] : []), ...(s.expression ? [`"${s.expression}"`] : []),
  ];
  return parts.join(', ') || 'every packet';
}

export function mirrorCommand(): Command {
  const m = new Command('mirror').description('copy chosen processes\' packets to a remote collector (VXLAN or GRE)');
  m.command('add <name> [expression...]')
    .description('start a mirror session (kept across daemon restarts until removed)')
    .requiredOption('--to <addr>', 'the collector\'s IPv4 or IPv6 address')
    .addOption(new Option('--encap <encap>', 'vxlan (UDP 4789) or gre (transparent Ethernet bridging)').argParser(choiceArg(MIRROR_ENCAPS)))
    .option('--vni <n>', 'VXLAN network identifier (default 1) or GRE key (default 0)', intArg(0, 0xffffffff))
    .option('-p, --pid <pid>', 'a process; repeatable', collect(intArg(1, 0x7fffffff)))
    .option('--comm <name>', 'a command name; repeatable', collect((v: string) => v))
    .option('--user <name|uid>', "a user's processes", (v: string) => (/^\d+$/.test(v) ? Number(v) : v))
    .option('--unit <unit>', 'a systemd unit')
    .option('--cgroup <path>', 'a cgroup v2 path')
    .option('--container <id|name>', 'a container (id, name, pod name, namespace/pod or pod UID)')
    .option('--app <id|name>', 'a desktop app (Flatpak id, snap name, .desktop id or name)')
    .option('-i, --interface <name>', 'an interface; repeatable', collect((v: string) => v))
    .addOption(new Option('--direction <dir>', 'in or out').argParser(choiceArg(CAPTURE_DIRECTIONS)))
    .option('--snaplen <bytes>', 'bytes kept of each frame (default: all)', intArg(64, 65535))
    .option('--rate <pps>', 'packets per second at most (the rest is counted as rate-limited)', intArg(1, 10_000_000))
    .option('--json', 'print the mirror as JSON')
    .action(async (name: string, expression: string[], o, cmd: Command) => {
      const expr = expression.join(' ').trim();
      const p: MirrorAddParams = {
        name, to: o.to,
        ...(o.encap ? { encap: o.encap } : {}), ...(o.vni !== undefined ? { vni: o.vni } : {}),
        ...(o.pid?.length ? { pids: o.pid } : {}), ...(o.comm?.length ? { comms: o.comm } : {}), ...(o.user !== undefined ? { user: o.user } : {}),
        ...(o.unit ? { unit: o.unit } : {}), ...(o.cgroup ? { cgroup: o.cgroup } : {}),
        ...(o.container ? { container: o.container } : {}), ...(o.app ? { app: o.app } : {}), ...(o.interface?.length ? { interfaces: o.interface } : {}),
        ...(o.direction ? { direction: o.direction } : {}), ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
        ...(o.rate !== undefined ? { ratePps: o.rate } : {}), ...(expr ? { expression: expr } : {}),
      };
      const r = await call(cmd, METHODS.mirrorAdd, p);
      out(o.json ? r : `mirror ${r.name}: ${describe(r.spec)} -> ${r.to} (${r.encap} ${r.vni}, via ${r.device}, path MTU ${r.pathMtu ?? '-'}): ${r.state}`);
    });
  m.command('remove <name>')
    .description('stop a mirror session')
    .option('--json', 'print its last counters as JSON')
    .action(async (name: string, o, cmd: Command) => {
      const r = await call(cmd, METHODS.mirrorRemove, { name });
      out(o.json ? r : `removed ${r.name} (${r.counters.mirrored} packets mirrored)`);
    });
  m.command('list')
    .description('mirror sessions')
    .option('--json', 'print as JSON')
    .action(async (o, cmd: Command) => {
      const r = await call(cmd, METHODS.mirrorList);
      out(o.json ? r : r.mirrors.length ? listTable(r.mirrors) : '(no mirrors)');
    });
  m.command('stats [name]')
    .description('counters of every mirror session, or of one')
    .option('--json', 'print as JSON')
    .action(async (name: string | undefined, o, cmd: Command) => {
      const r = await call(cmd, METHODS.mirrorStats, name ? { name } : {});
      out(o.json ? r : r.mirrors.length ? countersTable(r.mirrors) : '(no mirrors)');
    });
  return m;
}
