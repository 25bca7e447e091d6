#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// ebpfmon: the daemon. Reads the configuration, builds (app.ts), starts, handles signals.
//
//   ebpfmon [--config FILE]          run in the foreground (logs: pino JSON on stdout)
//   ebpfmon --teardown [--config F]  detach and unpin everything ebpfmon owns, then exit
//   ebpfmon --check-config [...]     validate the configuration and exit
import { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { Deployment, probeId } from './bpf/deployment.js';
import { routeLibbpfLog } from './bpf/log.js';
import { MONITOR_COMPONENTS } from './monitor/components.js';
import { LB_COMPONENT } from './lb/components.js';
import { runDaemon, StartError } from './app.js';
import { notify, startWatchdog } from './systemd/notify.js';
import { lockPinPath, LockError, type Lock } from './sys/lock.js';
import { ensureBpffs } from './sys/mounts.js';
import { missingCapabilities } from './sys/caps.js';
import { VERSION } from './version.js';

export const EXIT = { OK: 0, FAILURE: 1, CONFIG: 2 } as const;

/** Every `capability/alternative` that `probes.disable` may name. */
const KNOWN_PROBES = [...MONITOR_COMPONENTS, LB_COMPONENT].flatMap((c) => c.groups.flatMap((g) => g.alternatives.map((a) => probeId(g, a))));

function fail(logger: Logger | null, err: unknown, what: string): never {
  const msg = err instanceof Error ? err.message : String(err);
  logger?.fatal({ err }, `${what}: ${msg}`);
  process.stderr.write(`ebpfmon: ${what}: ${msg}\n`);
  process.exit(err instanceof ConfigError ? EXIT.CONFIG : EXIT.FAILURE);
}

/** The configuration, or exit 2 with one line per problem. */
function readConfig(file: string | undefined): { config: Config; file: string | null } {
  try {
    const r = loadConfig({ file });
    const unknown = r.config.probes.disable.filter((d) => !KNOWN_PROBES.includes(d));
    if (unknown.length) {
      throw new ConfigError(`probes.disable: unknown probe alternative${unknown.length > 1 ? 's' : ''} ${unknown.map((p) => `"${p}"`).join(', ')} (known: ${KNOWN_PROBES.join(', ')})`);
    }
    return r;
  } catch (err) {
    fail(null, err, 'invalid configuration');
  }
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

  const { config, file } = readConfig(opts.config);
  if (opts.checkConfig) {
    process.stdout.write(`configuration ok (${file ?? 'defaults'})\n`);
    return;
  }
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  routeLibbpfLog(logger);
  const missing = missingCapabilities();
  if (missing.length) {
    fail(logger, new Error(`ebpfmon needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (missing: ${missing.join(', ')}); nothing was changed`), 'insufficient privileges');
  }
  // The lock lives on the pin directory itself: bpffs must be there first.
  try {
    if (ensureBpffs(config.pinPath)) logger.info('mounted bpffs at /sys/fs/bpf');
  } catch (err) {
    fail(logger, err, 'cannot open the pin directory');
  }

  if (opts.teardown) {
    let lock: Lock;
    try {
      lock = lockPinPath(config.pinPath);
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
    lock = lockPinPath(config.pinPath);
  } catch (err) {
    fail(logger, err, err instanceof LockError ? 'already running' : 'cannot lock the pin directory');
  }

  let daemon;
  try {
    daemon = await runDaemon(config, logger);
  } catch (err) {
    lock.release();
    if (err instanceof StartError) fail(logger, err.cause, err.what);
    fail(logger, err, 'fatal');
  }

  notify(`READY=1\nSTATUS=${daemon.statusLine()}\nMAINPID=${process.pid}`);
  const stopWatchdog = startWatchdog();
  const statusTimer = setInterval(() => notify(`STATUS=${daemon.statusLine()}`), 10_000);
  statusTimer.unref();
  logger.info({ version: VERSION, config: file ?? 'defaults', socket: config.socketPath, pinPath: config.pinPath, adopted: daemon.monitor.deployResults.map((r) => `${r.component}:${r.adopted}`) }, 'ebpfmon ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    notify('STOPPING=1');
    logger.info({ signal }, 'stopping; programs stay pinned and attached');
    clearInterval(statusTimer);
    stopWatchdog?.();
    await daemon.stop();
    lock.release();
    process.exit(EXIT.OK);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    notify('RELOADING=1');
    try {
      const { config: next } = loadConfig({ file: opts.config });
      daemon.reload(next);
      logger.info({ interfaces: next.interfaces, logLevel: next.logLevel }, 'configuration reloaded');
    } catch (err) {
      logger.error({ err }, `reload refused, keeping the running configuration: ${(err as Error).message}`);
    }
    notify('READY=1');
  });
}

main().catch((err) => fail(null, err, 'fatal'));
