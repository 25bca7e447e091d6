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
import { L7_COMPONENT, SSL_COMPONENT } from './l7/components.js';
import { notify, startWatchdog } from './systemd/notify.js';
import { lockPinPath, LockError, type Lock } from './sys/lock.js';
import { ensureBpffs } from './sys/mounts.js';
import { missingCapabilities } from './sys/caps.js';
import { BACKGROUND_NICE, niceOf, othersToBackground, threadId } from './sys/priority.js';
import { VERSION } from './version.js';
import { parseDeclarations } from './lb/planner.js';
import { listLinks } from './net/netlink.js';
import { isGlob } from './util/glob.js';
import { EXIT, STOP_DEADLINE_MS } from './sys/exit.js';

/** Every `capability/alternative` that `probes.disable` may name. */
const KNOWN_PROBES = [...MONITOR_COMPONENTS, LB_COMPONENT, L7_COMPONENT, SSL_COMPONENT].flatMap((c) => c.groups.flatMap((g) => g.alternatives.map((a) => probeId(g, a))));

function fail(logger: Logger | null, err: unknown, what: string): never {
  const msg = err instanceof Error ? err.message : String(err);
  logger?.fatal({ err }, `${what}: ${msg}`);
  process.stderr.write(`ebpfmon: ${what}: ${msg}\n`);
  process.exit(err instanceof ConfigError ? EXIT.CONFIG : EXIT.FAILURE);
}

/** The configuration with every check start-up makes (a reload makes the same); throws ConfigError. */
function checkedConfig(file: string | undefined): { config: Config; file: string | null } {
  const r = loadConfig({ file });
  const unknown = r.config.probes.disable.filter((d) => !KNOWN_PROBES.includes(d));
  if (unknown.length) {
    throw new ConfigError(`probes.disable: unknown probe alternative${unknown.length > 1 ? 's' : ''} ${unknown.map((p) => `"${p}"`).join(', ')} (known: ${KNOWN_PROBES.join(', ')})`);
  }
  try {
    parseDeclarations(r.config.lb.vips);
  } catch (err) {
    throw new ConfigError(`${r.file ?? 'configuration'}: ${(err as Error).message}`);
  }
  return r;
}

/** The configuration, or exit 2 with one line per problem. */
function readConfig(file: string | undefined): { config: Config; file: string | null } {
  try {
    return checkedConfig(file);
  } catch (err) {
    fail(null, err, 'invalid configuration');
  }
}

/**
 * Interfaces the configuration names (not globs) that this network namespace does not have:
 * not an error (they are attached when they appear), but a typo must not pass unnoticed.
 */
function absentInterfaces(config: Config): string[] {
  let present: Set<string>;
  try {
    present = new Set(listLinks().map((l) => l.name));
  } catch {
    return []; // no netlink here: start-up will say so
  }
  const named: Array<[string, string]> = [
    ...config.interfaces.map((n): [string, string] => ['interfaces', n]),
    ...config.lb.interfaces.map((n): [string, string] => ['lb.interfaces', n]),
    ...(config.lb.vips as Array<{ interface?: string }>).flatMap((v, i): Array<[string, string]> => (v.interface ? [[`lb.vips[${i}].interface`, v.interface]] : [])),
  ];
  return named.filter(([, n]) => !isGlob(n) && !present.has(n))
    .map(([key, n]) => `${key}: interface "${n}" does not exist in this network namespace (yet): it is attached when it appears`);
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
  const absent = absentInterfaces(config);
  if (opts.checkConfig) {
    for (const w of absent) process.stderr.write(`ebpfmon: warning: ${w}\n`);
    process.stdout.write(`configuration ok (${file ?? 'defaults'})\n`);
    return;
  }
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  routeLibbpfLog(logger);
  for (const w of absent) logger.warn(w);
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

  // The unit's boost is for the event loop alone (sys/priority.ts).
  const nice = niceOf(threadId());
  const moved = othersToBackground();
  if (nice !== null && nice < 0) logger.info({ nice, backgroundNice: BACKGROUND_NICE, threadsMoved: moved }, 'event loop boosted; other threads in the background');

  // The running daemon's modules, loaded only for it: --version, --check-config and
  // --teardown start in a third of the time (seconds under the test suite's emulated kernel).
  const { runDaemon, StartError } = await import('./app.js');
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
    // Stopping always completes: whatever hangs (a client, the bus, the kernel), the process
    // exits by this deadline; the pins keep the programs running either way.
    setTimeout(() => {
      logger.error({ deadlineMs: STOP_DEADLINE_MS }, 'shutdown did not finish in time: exiting anyway');
      process.exit(EXIT.FAILURE);
    }, STOP_DEADLINE_MS).unref();
    await daemon.stop(Date.now() + STOP_DEADLINE_MS);
    lock.release();
    process.exit(EXIT.OK);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    notify('RELOADING=1');
    try {
      const { config: next } = checkedConfig(opts.config);
      daemon.reload(next);
      logger.info({ interfaces: next.interfaces, logLevel: next.logLevel }, 'configuration reloaded');
    } catch (err) {
      logger.error({ err }, `reload refused, keeping the running configuration: ${(err as Error).message}`);
    }
    notify('READY=1');
  });
}

main().catch((err) => fail(null, err, 'fatal'));
