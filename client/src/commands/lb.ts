// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl lb ...`: the XDP load balancer. Reads are open to all; changes need root or
// the ebpfmon-admin group (exit code 3 otherwise). docs/lb.md explains the model.
import { Command, Option } from 'commander';
import type { BackendInfo, VipInfo } from '../../../daemon/src/contract/lb.js';
import { METHODS, type MethodName, type ParamsOf, type ResultOf } from '../../../daemon/src/contract/methods.js';
import { bytes, duration } from '../render/format.js';
import { renderTable } from '../render/table.js';
import { choiceArg, intArg, withClient } from './common.js';

const call = <M extends MethodName>(cmd: Command, method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> => withClient(cmd, (c) => (c.call as (m: M, p?: ParamsOf<M>) => Promise<ResultOf<M>>)(method, params));
const out = (v: unknown): void => {
  process.stdout.write(`${typeof v === "string" ? v : JSON.stringify(v, null, 2)}\n`);
};
/** The host's settings that break a VIP, on stderr (also with --json, which keeps them in the object). */
const warn = (v: Pick<VipInfo, 'vip' | 'warnings'>): void => {
  for (const w of v.warnings ?? []) process.stderr.write(`warning: ${v.vip}: ${w}\n`);
};

function backendLine(b: BackendInfo): string {
  return `${b.backend} (weight ${b.weight}, ${b.state}, ${(b.tableShare * 100).toFixed(1)}% of the table)`;
}

function vipTable(v: VipInfo): string {
  const head = `${v.vip}  ${v.mode} on ${v.interfaces.join(', ') || '-'}  (${v.source}${v.health ? `, health ${v.health.type}` : ''}, table generation ${v.tableGeneration})`;
  const warnings = (v.warnings ?? []).map((w) => `\n  WARNING: ${w}`).join('');
  if (v.backends.length === 0) return `${head}${warnings}\n  (no backends)`;
  const t = renderTable(v.backends, [
    { header: '  BACKEND', value: (b) => `  ${b.backend}` },
    { header: 'WEIGHT', value: (b) => String(b.weight), align: 'right' },
    { header: 'STATE', value: (b) => b.state },
    { header: 'SHARE', value: (b) => `${(b.tableShare * 100).toFixed(1)}%`, align: 'right' },
    { header: 'HEALTH', value: (b) => (b.health ? `${b.health.state}${b.health.lastResult ? ` (${b.health.lastResult})` : ''}` : '-'), flex: true },
    { header: 'VIA', value: (b) => b.via ?? '-' },
  ]);
  return `${head}${warnings}\n${t}`;
}

export function lbCommand(): Command {
  const lb = new Command('lb').description('the XDP load balancer: VIPs, backends, drop list, stats and flows');

  const vip = new Command('vip').description('add or remove a VIP');
  vip
    .command('add <vip>')
    .description('add a VIP, e.g. 198.19.10.10:80/tcp or [fd00:198::10]:443/tcp')
    .addOption(new Option('--mode <mode>', 'nat: rewrite destination and source; dsr: rewrite the MAC only').argParser(choiceArg(['nat', 'dsr'] as const)))
    .option('--interface <name>', 'interface receiving the VIP traffic (default: lb.interfaces)')
    .addOption(new Option('--health <type>', 'active health check').argParser(choiceArg(['tcp', 'http'] as const)))
    .option('--health-port <n>', 'port to check (default: the backend port)', intArg(1, 65535))
    .option('--health-path <path>', 'HTTP path for --health http')
    .option('--health-interval <ms>', 'check interval', intArg(100, 3_600_000))
    .option('--json', 'print the VIP as JSON')
    .action(async (v: string, o, cmd: Command) => {
      const health = o.health ? { type: o.health, port: o.healthPort, path: o.healthPath, intervalMs: o.healthInterval } : undefined;
      const r = await call(cmd, METHODS.lbVipAdd, { vip: v, mode: o.mode, interface: o.interface, health });
      out(o.json ? r : `added ${r.vip} (${r.mode} on ${r.interfaces.join(', ')})`);
      warn(r);
    });
  vip
    .command('remove <vip>')
    .description('remove a VIP, its backends and its flows')
    .action(async (v: string, _o, cmd: Command) => {
      const r = await call(cmd, METHODS.lbVipRemove, { vip: v });
      out(`removed ${r.vip} (${r.removedBackends} backend(s), ${r.flowsDeleted} flow(s))`);
    });
  lb.addCommand(vip);

  const backend = new Command('backend').description('add, remove or drain a backend');
  backend
    .command('add <vip> <backend>')
    .description('add a backend ADDR[:PORT] (the port defaults to the VIP\'s)')
    .option('--weight <n>', 'weight from 1 to 1000 (default 1)', intArg(1, 1000))
    .action(async (v: string, b: string, o, cmd: Command) => out(`added ${backendLine(await call(cmd, METHODS.lbBackendAdd, { vip: v, backend: b, weight: o.weight }))}`));
  backend
    .command('remove <vip> <backend>')
    .description('remove a backend now (its established flows end; drain first to let them finish)')
    .action(async (v: string, b: string, _o, cmd: Command) => out(`removed ${(await call(cmd, METHODS.lbBackendRemove, { vip: v, backend: b })).backend}`));
  backend
    .command('drain <vip> <backend>')
    .description('give a backend no new flows; its established flows finish')
    .action(async (v: string, b: string, _o, cmd: Command) => out(`draining ${backendLine(await call(cmd, METHODS.lbBackendDrain, { vip: v, backend: b }))}`));
  lb.addCommand(backend);

  lb.command('list')
    .description('VIPs and their backends')
    .option('--json', 'print as JSON')
    .action(async (o, cmd: Command) => {
      const r = await call(cmd, METHODS.lbList);
      if (o.json) {
        r.vips.forEach(warn);
        return out(r);
      }
      out(`interfaces: ${r.interfaces.map((i) => `${i.name} (${i.mode})`).join(', ') || '-'}`);
      out(r.vips.length ? r.vips.map(vipTable).join('\n\n') : 'no VIPs');
    });

  lb.command('stats')
    .description('per-VIP and per-backend counters, connection table fill, drops by reason')
    .option('--json', 'print as JSON')
    .action(async (o, cmd: Command) => {
      const r = await call(cmd, METHODS.lbStats);
      if (o.json) return out(r);
      const rows = r.vips.flatMap((v) => [{ name: v.vip, ...v }, ...v.backends.map((b) => ({ name: `  ${b.backend}`, ...b }))]);
      out(renderTable(rows, [
        { header: 'VIP / BACKEND', value: (x) => x.name },
        { header: 'PACKETS', value: (x) => String(x.packets), align: 'right' },
        { header: 'BYTES', value: (x) => bytes(x.bytes), align: 'right' },
        { header: 'REPLIES', value: (x) => String(x.replyPackets), align: 'right' },
        { header: 'NEW FLOWS', value: (x) => String(x.flows), align: 'right' },
      ]));
      const c = r.tables.conns;
      out(`\nconnection table: ${c.entries}/${c.capacity} (inserted ${c.inserted}, deleted ${c.deleted}, evicted ${c.evicted}); long-lived ${r.tables.long.entries}/${r.tables.long.capacity}; nat ${r.tables.nat.entries}/${r.tables.nat.capacity}`);
      const drops = Object.entries(r.drops).filter(([, n]) => n > 0);
      out(`dropped: ${drops.length ? drops.map(([k, n]) => `${k} ${n}`).join(', ') : 'nothing'}`);
    });

  lb.command('flows')
    .description('the balancer\'s decisions: client, VIP, backend, age')
    .option('--vip <vip>', 'only this VIP')
    .option('--limit <n>', 'at most this many', intArg(1, 100_000))
    .option('--json', 'print as JSON')
    .action(async (o, cmd: Command) => {
      const r = await call(cmd, METHODS.lbFlows, { vip: o.vip, limit: o.limit });
      if (o.json) return out(r.flows);
      out(r.flows.length ? renderTable(r.flows, [
        { header: 'PROTO', value: (f) => f.protocol },
        { header: 'CLIENT', value: (f) => f.client, flex: true },
        { header: 'VIP', value: (f) => f.vip, flex: true },
        { header: 'BACKEND', value: (f) => f.backend, flex: true },
        { header: 'MODE', value: (f) => f.mode },
        { header: 'HOW', value: (f) => f.how },
        { header: 'AGE', value: (f) => duration(f.ageMs), align: 'right' },
        { header: 'IDLE', value: (f) => duration(f.idleMs), align: 'right' },
        { header: 'ON BACKEND', value: (f) => `${f.onBackend.local} <- ${f.onBackend.remote}`, flex: true },
      ]) : 'no flows');
      if (r.truncated) out('(more flows; raise --limit)');
    });

  const drop = new Command('drop').description('drop list: addresses, prefixes and protocols dropped at XDP');
  drop
    .command('add <rule>')
    .description('e.g. 198.18.5.0/24, fd00:198::5:9, icmp:echo-request, udp:53, proto:47')
    .action(async (rule: string, _o, cmd: Command) => out(`dropping ${(await call(cmd, METHODS.lbDropAdd, { rule })).rule}`));
  drop
    .command('remove <rule>')
    .description('remove a drop rule')
    .action(async (rule: string, _o, cmd: Command) => out(`removed ${(await call(cmd, METHODS.lbDropRemove, { rule })).rule}`));
  drop
    .command('list')
    .description('drop rules and what they dropped')
    .option('--json', 'print as JSON')
    .action(async (o, cmd: Command) => {
      const r = await call(cmd, METHODS.lbDropList);
      if (o.json) return out(r.rules);
      out(r.rules.length ? renderTable(r.rules, [
        { header: 'RULE', value: (x) => x.rule },
        { header: 'PACKETS', value: (x) => String(x.packets), align: 'right' },
        { header: 'BYTES', value: (x) => bytes(x.bytes), align: 'right' },
      ]) : 'no drop rules');
    });
  lb.addCommand(drop);
  return lb;
}
