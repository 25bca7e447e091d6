#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// ebpfmon: the daemon. Wiring only - read config, build, start, handle signals.
//
//   ebpfmon [--config FILE]          run in the foreground (logs: pino JSON on stdout)
//   ebpfmon --teardown [--config F]  detach and unpin everything ebpfmon owns, then exit
//   ebpfmon --check-config [...]     validate the configuration and exit
import path from 'node:path';
import { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { Deployment, probeId } from './bpf/deployment.js';
import { MONITOR_COMPONENTS } from './monitor/components.js';
import { LB_COMPONENT } from './lb/components.js';
import { BpfError } from './bpf/errors.js';
import { routeLibbpfLog } from './bpf/log.js';
import { Monitor } from './monitor/monitor.js';
import { buildDaemon, type Daemon } from './app.js';
import { notify, startWatchdog } from './systemd/notify.js';
import { lockPinPath, LockError, type Lock } from './sys/lock.js';
import { startDbusService, type DbusService } from './dbus/service.js';
import { LbManager } from './lb/manager.js';
import { LB_EVENTS } from './lb/events.js';
import type { DeclaredVip } from './lb/api.js';
import { DEFAULT_OBJECT_DIR, VERSION } from './version.js';

export const EXIT = { OK: 0, FAILURE: 1, CONFIG: 2 } as const;

/** Every `capability/alternative` that `probes.disable` may name. */
const KNOWN_PROBES = [...MONITOR_COMPONENTS, LB_COMPONENT].flatMap((c) => c.groups.flatMap((g) => g.alternatives.map((a) => probeId(g, a))));

function fail(logger: Logger | null, err: unknown, what: string): never {
  const msg = err instanceof Error ? err.message : String(err);
  logger?.fatal({ err }, `${what}: ${msg}`);
  process.stderr.write(`ebpfmon: ${what}: ${msg}\n`);
  process.exit(err instanceof ConfigError ? EXIT.CONFIG : EXIT.FAILURE);
}

function monitorOptions(config: Config, logger: Logger) {
  return {
    pinPath: config.pinPath,
    objectDir: config.bpfObjectDir || DEFAULT_OBJECT_DIR,
    interfaces: config.interfaces,
    mapSizes: config.maps,
    closedRetentionMs: config.flows.closedRetentionSec * 1000,
    idleTimeoutMs: config.flows.idleTimeoutSec * 1000,
    tcpIdleTimeoutMs: config.flows.tcpIdleTimeoutSec * 1000,
    gcIntervalMs: config.flows.gcIntervalSec * 1000,
    execArgs: config.events.execArgs,
    allNamespaces: config.trackAllNamespaces,
    disabledProbes: config.probes.disable,
    daemonVersion: VERSION,
    logger,
  };
}

async function main(): Promise<void> {
  const cli = new Command('ebpfmon')
    .description('eBPF flow monitor and XDP load balancer daemon')
    .option('-c, --config <file>', 'configuration file (default /etc/ebpfmon/ebpfmon.json if present)')
    .option('--teardown', 'detach and unpin everything ebpfmon owns, then exit')
    .option('--check-config', 'validate the configuration and exit')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : EXIT.CONFIG))
    .parse();
  const opts = cli.opts<{ config?: string; teardown?: boolean; checkConfig?: boolean }>();

  let config: Config;
  let file: string | null;
  try {
    ({ config, file } = loadConfig({ file: opts.config }));
  } catch (err) {
    fail(null, err, 'invalid configuration');
  }
  const unknownProbes = config.probes.disable.filter((d) => !KNOWN_PROBES.includes(d));
  if (unknownProbes.length) {
    fail(null, new ConfigError(`probes.disable: unknown probe alternative${unknownProbes.length > 1 ? 's' : ''} ${unknownProbes.map((p) => `"${p}"`).join(', ')} (known: ${KNOWN_PROBES.join(', ')})`), 'invalid configuration');
  }
  if (opts.checkConfig) {
    process.stdout.write(`configuration ok (${file ?? 'defaults'})\n`);
    return;
  }
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  routeLibbpfLog(logger);
  const lockDir = path.dirname(config.socketPath);

  if (opts.teardown) {
    let lock: Lock;
    try {
      lock = lockPinPath(config.pinPath, lockDir);
    } catch (err) {
      fail(logger, err, 'cannot tear down while the daemon runs (stop it first)');
    }
    try {
      const r = Deployment.teardown(config.pinPath, logger);
      process.stdout.write(`removed ${r.tcFilters} classifier filter(s), ${r.links} link(s), ${r.pins} pin(s) under ${config.pinPath}\n`);
    } catch (err) {
      fail(logger, err, 'teardown failed');
    } finally {
      lock.release();
    }
    return;
  }

  let lock: Lock;
  try {
    lock = lockPinPath(config.pinPath, lockDir);
  } catch (err) {
    fail(logger, err, err instanceof LockError ? 'already running' : 'cannot lock the pin directory');
  }

  const mopts = monitorOptions(config, logger);
  let deployment: Deployment;
  let monitor: Monitor;
  try {
    deployment = Monitor.openDeployment(mopts);
  } catch (err) {
    fail(logger, err, 'cannot open the pin directory');
  }
  try {
    monitor = Monitor.start(mopts, deployment);
  } catch (err) {
    deployment.close();
    fail(logger, err, err instanceof BpfError ? 'cannot load the BPF programs' : 'cannot start monitoring');
  }

  // The load balancer, when configured: deployed into the same pin directory.
  let lb: LbManager | null = null;
  if (config.lb.interfaces.length > 0) {
    try {
      const [min, max] = config.lb.natPorts.split('-').map(Number) as [number, number];
      lb = new LbManager(deployment, logger, { interfaces: config.lb.interfaces, xdpMode: config.lb.xdpMode as 'native' | 'generic', natPorts: { min, max } });
      const report = await lb.applyConfig(config.lb.vips as DeclaredVip[]);
      for (const v of report.vips) if (v.action === 'conflict') logger.warn({ vip: v.vip }, 'declared VIP differs from the running one in mode or interface: `ebpfmonctl lb vip remove` it to apply the declaration');
      lb.start();
      for (const name of Object.values(LB_EVENTS)) {
        lb.events.on(name, (detail: Record<string, unknown>) => {
          monitor.bus.publish({ type: 'lb', time: new Date().toISOString(), pid: null, uid: null, comm: null, name, detail });
          logger.info({ event: name, ...detail }, name);
        });
      }
    } catch (err) {
      monitor.stop();
      deployment.close();
      fail(logger, err, 'cannot start the load balancer');
    }
  }

  // Sockets that predate the daemon are attributed before clients are served (the /proc
  // scan yields to the event loop while it runs).
  await monitor.scanDone;
  const daemon: Daemon = buildDaemon({
    monitor,
    lb,
    logger,
    version: VERSION,
    socketPath: config.socketPath,
    limits: config.rpc,
    groups: config.access,
  });
  try {
    await daemon.start();
  } catch (err) {
    lb?.close();
    monitor.stop();
    deployment.close();
    fail(logger, err, `cannot listen on ${config.socketPath}`);
  }

  // D-Bus is for desktop widgets; the socket is the primary API. Without a system bus
  // (containers, CI) the daemon runs on with a warning.
  let dbus: DbusService | null = null;
  if (config.dbus.enabled) {
    try {
      dbus = await startDbusService({
        monitor,
        lb: lb ?? undefined,
        logger,
        version: VERSION,
        groups: config.access,
        address: config.dbus.address || undefined,
        onDisconnect: (err) => logger.warn({ err }, 'lost the D-Bus connection; the D-Bus API is off until restart'),
      });
      logger.info({ name: dbus.uniqueName }, 'D-Bus API on org.ebpfmon1');
    } catch (err) {
      logger.warn({ err }, `D-Bus API not available: ${(err as Error).message}`);
    }
  }

  const statusLine = () => {
    const ifaces = monitor.interfaces.attached().length;
    return `monitoring ${ifaces} interface${ifaces === 1 ? '' : 's'}, ${daemon.rpc.connections.size} client(s); socket ${config.socketPath}`;
  };
  notify(`READY=1\nSTATUS=${statusLine()}\nMAINPID=${process.pid}`);
  const stopWatchdog = startWatchdog();
  const statusTimer = setInterval(() => notify(`STATUS=${statusLine()}`), 10_000);
  statusTimer.unref();
  logger.info({ version: VERSION, config: file ?? 'defaults', socket: config.socketPath, pinPath: config.pinPath, adopted: monitor.deployResults.map((r) => `${r.component}:${r.adopted}`) }, 'ebpfmon ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    notify('STOPPING=1');
    logger.info({ signal }, 'stopping; programs stay pinned and attached');
    clearInterval(statusTimer);
    stopWatchdog?.();
    await daemon.stop();
    await dbus?.stop();
    lb?.close();
    monitor.stop();
    deployment.close();
    lock.release();
    process.exit(EXIT.OK);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    notify('RELOADING=1');
    try {
      const { config: next } = loadConfig({ file: opts.config });
      logger.level = next.logLevel;
      monitor.setInterfaces(next.interfaces);
      if (lb) void lb.applyConfig(next.lb.vips as DeclaredVip[]).catch((err) => logger.error({ err }, `declared VIPs not applied: ${(err as Error).message}`));
      logger.info({ interfaces: next.interfaces, logLevel: next.logLevel }, 'configuration reloaded');
    } catch (err) {
      logger.error({ err }, `reload refused, keeping the running configuration: ${(err as Error).message}`);
    }
    notify('READY=1');
  });
}

main().catch((err) => fail(null, err, 'fatal'));
