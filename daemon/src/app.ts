// SPDX-License-Identifier: Apache-2.0
// The daemon wired together: the kernel deployment, the monitor and the load balancer
// (domain), the API over them, and the adapters (JSON-RPC socket, D-Bus) over the API,
// with the daemon's event bus between publishers and subscribers; the exports (Prometheus
// endpoint, ClickHouse flow records) read the API and the bus. Everything opened goes
// onto one stack of closers, so a failed start and a shutdown undo the same steps.
//
//   buildDaemon(deps)   the API and the JSON-RPC adapter over given domain objects (tests
//                       build it with a fake monitor and a temporary socket)
//   runDaemon(config)   the real thing, from a configuration (main.ts)
import type { Logger } from 'pino';
import { LB_EVENTS, type DeclaredVip, type LbEventName } from './contract/lb.js';
import type { DbusStatus } from './contract/status.js';
import type { CloseEvent } from './contract/events.js';
import type { ExportStatus } from './contract/export.js';
import type { Config } from './config/schema.js';
import { buildApi, NO_GEO, remoteGeoOf, parseMirrorSpec, SYSTEM_CALLER, type Api, type CaptureApiDeps, type Caller, type GeoDeps, type HistoryApi, type L7Api, type LbApi } from './api/index.js';
import { parseHome } from './config/home.js';
import { GeoResolver } from './geo/resolver.js';
import { closeFactsOf, EventBus } from './events/bus.js';
import type { MonitorApi } from './monitor/api.js';
import { Monitor, type MonitorOptions } from './monitor/monitor.js';
import { emptyCloseFacts } from './monitor/decoder.js';
import { Identities } from './identity/index.js';
import type { IdentityApi } from './api/index.js';
import { LbManager } from './lb/manager.js';
import { LB_MAP } from './lb/components.js';
import { L7Feature } from './l7/feature.js';
import { clockNs, CLOCK_BOOTTIME } from './sys/libc.js';
import { RpcServer, type RpcLimits } from './rpc/server.js';
import { registerApi } from './rpc/register.js';
import type { DbusService } from './dbus/service.js';
import { History, type ListingSink } from './history/history.js';
import { emptyObservation, observationFromFacts, observationFromFlow, observationFromGone } from './history/feed.js';
import { Closers } from './util/closers.js';
import { parseListen } from './config/export.js';
import type { MetricsExporter } from './export/metrics.js';
import type { ClickHouseFlowExport } from './export/clickhouse.js';
import { hostIdentity } from './export/host.js';
import { changedKeys, RESTART_SECTIONS } from './config/changes.js';
import { BpfError } from './bpf/errors.js';
import { CaptureManager } from './capture/manager.js';
import { registerCaptureStream } from './rpc/capture.js';
import type { ClassifierHooks } from './capture/engine.js';
import type { MetaLayout } from './capture/select.js';
import { linkTypeOf } from './capture/resolve.js';
import { describeProcess } from './capture/procinfo.js';
import type { CaptureInterface } from './contract/capture.js';
import type { Deployment } from './bpf/deployment.js';
import type { InterfaceManager } from './monitor/interfaces.js';
import { MAP as MONITOR_MAP } from './monitor/components.js';
import { HOOK, OWNER, PKT_META } from './monitor/wire.js';
import { listLinks } from './net/netlink.js';
import { DEFAULT_OBJECT_DIR, VERSION } from './version.js';
import { ResourceMeter } from './util/resources.js';

export interface DaemonDeps {
  monitor: MonitorApi;
  bus: EventBus;
  logger: Logger;
  version: string;
  socketPath: string;
  limits: RpcLimits;
  groups: { group: string; adminGroup: string };
  /** The load balancer, when configured (its methods answer NotAvailable otherwise). */
  lb?: LbApi | null;
  /** The history store, when enabled (history.query answers NotAvailable otherwise). */
  history?: HistoryApi | null;
  /** The application layer (dns.list, http.list, status.l7); absent: those answer NotAvailable. */
  l7?: L7Api | null;
  /** Capture and mirror sessions (absent: their methods answer NotAvailable). */
  capture?: CaptureApiDeps;
  /** The identity service (identity.get and status.identity). */
  identity?: IdentityApi | null;
  /** Test seam: who is calling (default: SO_PEERCRED). */
  identify?: ConstructorParameters<typeof RpcServer>[4];
  /** Where remote addresses are (default: off). Connection events get `remoteGeo` on `bus`. */
  geo?: GeoDeps;
}

export interface Daemon {
  api: Api;
  rpc: RpcServer;
  /** Adds the D-Bus service's counters to `status` once it runs. */
  reportDbus(status: () => DbusStatus): void;
  /** Adds the exports' section to `status` once they run. */
  reportExport(status: () => ExportStatus): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function buildDaemon(deps: DaemonDeps): Daemon {
  const startedAt = new Date();
  const meter = new ResourceMeter();
  const rpc = new RpcServer(deps.socketPath, deps.limits, deps.groups, deps.logger, deps.identify);
  const api = buildApi({
    monitor: deps.monitor,
    lb: deps.lb ?? null,
    history: deps.history ?? null,
    l7: deps.l7 ?? null,
    identity: deps.identity ?? null,
    version: deps.version,
    startedAt,
    resources: () => meter.status(),
    transports: () => ({ rpc: rpc.status(), dbus: dbusStatus?.() ?? null }),
    capture: deps.capture,
    exportStatus: () => exportStatus?.() ?? null,
    geo: deps.geo,
  });
  const resolver = (deps.geo ?? NO_GEO).resolver;
  // Connection events carry remoteGeo: the monitor's records in every form (the row too,
  // decoder.ts), other publishers' objects completed by the bus. Null when geo is off.
  deps.bus.setRemoteGeo(resolver ? (addr) => remoteGeoOf(resolver, addr) : null);
  let dbusStatus: (() => DbusStatus) | null = null;
  let exportStatus: (() => ExportStatus) | null = null;
  registerApi(rpc, api, deps.bus, deps.groups.adminGroup);
  registerCaptureStream(rpc, deps.capture ?? { capture: null, reason: 'capture is switched off (configuration capture.enabled)' });
  return {
    api,
    rpc,
    reportDbus: (fn) => (dbusStatus = fn),
    reportExport: (fn) => (exportStatus = fn),
    start: () => {
      meter.start();
      return rpc.listen();
    },
    stop: () => {
      meter.stop();
      return rpc.close();
    },
  };
}

/** A start-up step that failed: what it was (for the one-line message) and why. */
export class StartError extends Error {
  override readonly name = 'StartError';
  constructor(readonly what: string, override readonly cause: unknown) {
    super(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export interface RunningDaemon {
  monitor: Monitor;
  lb: LbManager | null;
  history: History | null;
  l7: L7Feature;
  capture: CaptureManager | null;
  rpc: RpcServer;
  dbus: DbusService | null;
  /** One line for systemd's STATUS=. */
  statusLine(): string;
  /** Applies a reloaded configuration (SIGHUP): interfaces, log level, declared VIPs. */
  reload(next: Config): void;
  /** Closes everything it opened, in reverse order; programs stay pinned and attached.
   * `deadlineAt` (wall ms): when the process exits anyway; history's writer is given what
   * is left of it. */
  stop(deadlineAt?: number): Promise<void>;
}

export function monitorOptions(config: Config, logger: Logger, identity?: Identities): MonitorOptions {
  return {
    ...(identity ? { identity } : {}),
    pinPath: config.pinPath,
    objectDir: config.bpfObjectDir || DEFAULT_OBJECT_DIR,
    interfaces: config.interfaces,
    mapSizes: { ...config.maps, handoffs: config.identity.handoffEntries },
    closedRetentionMs: config.flows.closedRetentionSec * 1000,
    idleTimeoutMs: config.flows.idleTimeoutSec * 1000,
    tcpIdleTimeoutMs: config.flows.tcpIdleTimeoutSec * 1000,
    gcIntervalMs: config.flows.gcIntervalSec * 1000,
    closeCheckMs: config.flows.closeCheckSec * 1000,
    dirtyRing: config.flows.dirtyRing,
    execArgs: config.events.execArgs,
    allNamespaces: config.trackAllNamespaces,
    disabledProbes: config.probes.disable,
    daemonVersion: VERSION,
    logger,
  };
}

/** Builds and starts everything the configuration asks for. Throws StartError. */
export async function runDaemon(config: Config, logger: Logger): Promise<RunningDaemon> {
  const closers = new Closers();
  const step = async <T>(what: string, fn: () => T | Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      await closers.closeAll(logger);
      throw new StartError(what, err);
    }
  };
  const bus = new EventBus();
  // History closes last (its closer comes first): what the monitor reports while it stops is
  // still written. It starts once the programs are loaded, so a start that fails before that
  // never leaves its writer thread opening the database while the process exits (under
  // emulation the open takes longer than a closer may). It never fails the start: a disk or
  // file problem shows in status.
  let history: History | null = null;
  // The stop's deadline (main.ts): history gets what is left of it, less a margin to exit.
  let stopDeadlineAt: number | null = null;
  closers.add('history', () => history?.stop(stopDeadlineAt === null ? undefined : Math.max(100, stopDeadlineAt - Date.now() - 300)));
  // Who owns what (unit, container, app), for the monitor's flows and events and the API.
  const identity = await step('cannot start the identity resolver', () =>
    new Identities({ maxEntries: config.identity.cacheEntries, namesTtlMs: config.identity.namesTtlSec * 1000 }),
  );
  closers.add('identity resolver', () => identity.close());
  const mopts = monitorOptions(config, logger, identity);
  const deployment = await step('cannot open the pin directory', () =>
    Monitor.openDeployment(mopts, { [LB_MAP.conns]: config.lb.maps.conns, [LB_MAP.long]: config.lb.maps.long, [LB_MAP.nat]: config.lb.maps.nat }),
  );
  closers.add('pinned deployment', () => deployment.close());
  let monitor: Monitor;
  try {
    monitor = Monitor.start(mopts, bus, deployment);
  } catch (err) {
    await closers.closeAll(logger);
    throw new StartError(err instanceof BpfError ? 'cannot load the BPF programs' : 'cannot start monitoring', err);
  }
  closers.add('monitor', () => monitor.stop());
  const running = monitor;
  if (config.history.enabled) {
    history = startHistory(config, logger, bus);
    // Only what changed since the last listing, read by key (docs/history.md "Listings").
    history.startListings(async (begin) => {
      let sink: ListingSink | null = null;
      await running.listFlowChanges({
        begin: (full) => void (sink = begin(full)),
        gone: (g) => sink!.gone(observationFromGone(g)),
        flow: (f) => sink!.listed(observationFromFlow(f)),
      });
    }, config.history.snapshotIntervalSec * 1000);
  }

  // The load balancer, when configured: deployed into the same pin directory; its changes
  // are events like the monitor's.
  let lb: LbManager | null = null;
  if (config.lb.interfaces.length > 0) {
    lb = await step('cannot start the load balancer', async () => {
      const [min, max] = config.lb.natPorts.split('-').map(Number) as [number, number];
      const c = config.lb;
      const m = new LbManager(deployment, logger, {
        interfaces: c.interfaces, xdpMode: c.xdpMode as 'native' | 'generic', natPorts: { min, max },
        promoteAfterMs: c.promoteAfterSec * 1000, gcIntervalMs: c.gcIntervalSec * 1000, maxBackendsPerVip: c.maxBackendsPerVip, healthChecks: c.healthChecks,
        idleTimeoutMs: { tcp: c.idleTimeoutSec.tcp * 1000, udp: c.idleTimeoutSec.udp * 1000, embryonic: c.idleTimeoutSec.embryonic * 1000 },
      });
      const report = await m.applyConfig(config.lb.vips as DeclaredVip[]);
      for (const v of report.vips) if (v.action === 'conflict') logger.warn({ vip: v.vip }, 'declared VIP differs from the running one in mode or interface: `ebpfmonctl lb vip remove` it to apply the declaration');
      m.start();
      return m;
    });
    closers.add('load balancer', () => lb!.close());
    for (const name of Object.values(LB_EVENTS) as LbEventName[]) {
      lb.events.on(name, (detail: Record<string, unknown>) => {
        bus.publish({ type: 'lb', at: new Date().toISOString(), pid: null, uid: null, comm: null, name, detail });
        logger.info({ event: name, ...detail }, name);
      });
    }
  }

  // The application layer: never stops the daemon (a refused program leaves it off and
  // status.l7 says why; the classifier runs alone).
  const l7 = new L7Feature({
    config: config.l7,
    deployment,
    hookPort: running.hookPort('l7'),
    setConfigFlags: (mask, bits) => running.setConfigFlags(mask, bits),
    onExec: (fn) => bus.subscribe((e) => {
      if (e.type === 'exec' && e.pid !== null) fn(e.pid);
    }, ['exec']),
    publish: (e) => bus.publish(e),
    comm: (pid) => running.processes.lookup(pid)?.comm,
    owner: (pid) => running.ownerOfPid(pid),
    wallMs: (ns) => running.wallMs(ns),
    bootNs: () => Number(clockNs(CLOCK_BOOTTIME)),
    logger,
  });
  l7.start();
  closers.add('application layer', () => l7.stop());
  running.flows.setAnnotator({
    fields: (f, nowMs) => l7.store?.flowFields(f, nowMs) ?? { remoteName: null, serverName: null, tlsVersion: null, http: null },
    wants: (pid) => l7.hasNames(pid),
    forget: (f) => l7.store?.forgetFlow(f),
    mayHaveHttp: (lp, rp) => l7.store?.mayHaveHttp(lp, rp) ?? false,
    http: (f) => l7.store?.httpOf(f) ?? null,
    httpFlows: (fn) => l7.store?.forEachHttpFlow(fn),
  });
  // Capture and mirror sessions: their programs plug into the classifier's hook chain.
  // Mirrors pinned by an earlier daemon come back with their counters. Capture failing to
  // load leaves the rest running: status.capture says why.
  let capture: CaptureManager | null = null;
  let captureReason = 'capture is switched off (configuration capture.enabled)';
  if (config.capture.enabled) {
    try {
      const c = config.capture;
      capture = CaptureManager.open({
        deployment, logger,
        hooks: classifierHooks(deployment, running.interfaces),
        interfaces: () => captureInterfaces(running.interfaces),
        // Packet comments name a process that exited before the reader wrote its packets,
        // and the unit, container, pod and app of its cgroup (the identity service).
        describe: describeProcess((pid) => running.processes.get(pid), identity),
        // --container and --app: the cgroups the identity service says are theirs.
        identityOf: (cgroupId) => identity.of(cgroupId, null),
        options: {
          perfPagesPerCpu: c.perfPagesPerCpu, statsIntervalMs: c.statsIntervalSec * 1000, vxlanPort: c.vxlanPort,
          maxClientBacklog: c.maxClientBacklogBytes, maxSessionsPerUid: c.maxSessionsPerUid, drain: c.drain as 'auto' | 'typescript',
        },
      });
      const cm = capture;
      closers.add('capture', () => cm.close());
      applyDeclaredMirrors(cm, config, logger);
    } catch (err) {
      captureReason = `capture is not available: ${(err as Error).message}`;
      logger.error({ err }, captureReason);
    }
  }
  // Without capture, nothing of an earlier daemon's sessions may keep running: the classifier alone runs.
  if (!capture) {
    try {
      running.interfaces.setHookBits('all', HOOK.capture.bit, false);
      const key = Buffer.alloc(4);
      key.writeUInt32LE(HOOK.capture.slot);
      if (deployment.hasMap(MONITOR_MAP.hooks)) deployment.map(MONITOR_MAP.hooks).delete(key);
    } catch (err) {
      logger.warn({ err }, 'could not empty the capture slot of the hook chain');
    }
  }
  const captureDeps: CaptureApiDeps = { capture, reason: captureReason };
  const geo = await openGeo(config, logger);
  if (geo.resolver) closers.add('geo databases', () => geo.resolver!.close());

  // Sockets that predate the daemon are attributed before clients are served (the /proc
  // scan yields to the event loop while it runs).
  await running.scanDone;
  const daemon = buildDaemon({ monitor: running, bus, lb, history, l7, identity, capture: captureDeps, logger, version: VERSION, socketPath: config.socketPath, limits: { ...config.rpc, idleTimeoutMs: config.rpc.idleTimeoutSec * 1000 }, groups: config.access, geo });
  await step(`cannot listen on ${config.socketPath}`, () => daemon.start());
  closers.add('JSON-RPC socket', () => daemon.stop());
  // Closers run in reverse: capture sessions detach (kept in the kernel for their clients to
  // resume with the next daemon) before the socket's connections close.
  if (capture) {
    const cm = capture;
    closers.add('capture sessions', () => cm.detachCaptures());
  }

  await step('cannot start the exports', () => startExports(config, daemon, bus, lb !== null, logger, closers));

  // D-Bus is for desktop widgets; the socket is the primary API. Without a system bus
  // (containers, CI) the daemon runs on with a warning.
  let dbus: DbusService | null = null;
  if (config.dbus.enabled) {
    try {
      // Loaded only when used, like the exports' modules: dbus-next and its XML parsers are
      // about a fifth of what a daemon start loads (a second under the test suite's emulated
      // kernel, where each start paid for them).
      const { startDbusService } = await import('./dbus/service.js');
      dbus = await startDbusService({
        methods: daemon.api.methods,
        bus,
        lbAvailable: lb !== null,
        logger,
        version: VERSION,
        groups: config.access,
        address: config.dbus.address || undefined,
        onDisconnect: (err) => logger.warn({ err }, 'lost the D-Bus connection; the D-Bus API is off until restart'),
      });
      closers.add('D-Bus service', () => dbus!.stop());
      const svc = dbus;
      daemon.reportDbus(() => svc.stats());
      logger.info({ name: dbus.uniqueName }, 'D-Bus API on org.ebpfmon1');
    } catch (err) {
      logger.warn({ err }, `D-Bus API not available: ${(err as Error).message}`);
    }
  }

  return {
    monitor: running,
    lb,
    history,
    l7,
    capture,
    rpc: daemon.rpc,
    dbus,
    statusLine: () => {
      const ifaces = running.interfaces.attached().length;
      return `monitoring ${ifaces} interface${ifaces === 1 ? '' : 's'}, ${daemon.rpc.connections.size} client(s); socket ${config.socketPath}`;
    },
    reload: (next) => {
      logger.level = next.logLevel;
      // History's retention limits apply now; the rest of history's keys, and the exports',
      // are set up at start: say which changed keys wait.
      const limits = { retentionDays: next.history.retentionDays, maxBytes: next.history.maxBytes };
      if (history && (limits.retentionDays !== history.opts.retentionDays || limits.maxBytes !== history.opts.maxBytes)) {
        const h = history;
        void h.setLimits(limits.retentionDays, limits.maxBytes).then(
          () => logger.info(limits, 'history: retention limits reloaded and applied'),
          (err: Error) => logger.error({ err }, `history: new retention limits not applied: ${err.message}`),
        );
      }
      const waiting = changedKeys(config, next, RESTART_SECTIONS).filter((k) => !(history && (k === 'history.retentionDays' || k === 'history.maxBytes')));
      if (waiting.length) logger.warn({ keys: waiting }, `reload: ${waiting.join(', ')} changed and take effect at the next start (SIGHUP applies no other history, export or metrics key)`);
      running.setInterfaces(next.interfaces);
      if (capture) applyDeclaredMirrors(capture, next, logger);
      if (lb) void lb.applyConfig(next.lb.vips as DeclaredVip[]).catch((err) => logger.error({ err }, `declared VIPs not applied: ${(err as Error).message}`));
    },
    stop: (deadlineAt?: number) => {
      stopDeadlineAt = deadlineAt ?? null;
      return closers.closeAll(logger);
    },
  };
}

/** The embedded history store (docs/history.md), fed from the bus's close events; the flow
 * table's listings are added once the monitor runs. */
function startHistory(config: Config, logger: Logger, bus: EventBus): History {
  const log = logger.child({ component: 'history' });
  const h = History.start({
    dir: config.history.path,
    maxBytes: config.history.maxBytes,
    retentionDays: config.history.retentionDays,
    detailFlowsPerSec: config.history.detailFlowsPerSec,
    commitIntervalMs: config.history.commitIntervalSec * 1000,
    journalSync: config.history.journalSync,
    memoryLimit: `${config.history.memoryLimitMB}MB`,
    log: { warn: (m) => log.warn(m), error: (m) => log.error(m) },
  });
  // The close's facts straight from the record (no event object, no remote place or
  // identity looked up, no ISO time written and parsed again): about 3% of the daemon's CPU
  // at 10k closes/s (docs/benchmarks.md "History's closes without the event object").
  // And through two objects filled again for every close (history keeps neither: it sums the
  // close or packs it at once), not two new ones per close (docs/benchmarks.md "what history
  // costs the daemon": no gain beyond the bench's noise was shown).
  const facts = emptyCloseFacts();
  const obs = emptyObservation();
  bus.subscribeEvents(
    (e) => {
      if (e.type !== 'close') return;
      const f = e.closeFacts ? e.closeFacts(facts) : closeFactsOf(e.event() as CloseEvent);
      const o = f && observationFromFacts(f, undefined, obs);
      if (o) h.recordClose(o);
    },
    ['close'],
  );
  return h;
}

/**
 * The classifier's hook chain as the capture engine uses it: the engine goes into slot
 * HOOK.capture.slot of emon_hooks, and the interfaces whose packets it wants get their
 * HOOK.capture.bit through the monitor's InterfaceManager (the one writer of emon_ifaces).
 */
/** Where the generated engine finds what it compares in emon_pkt_meta (offsets from the
 * BTF-checked PKT_META and OWNER specs). */
export function pktMetaLayout(): MetaLayout {
  const o = PKT_META.fields.owner.offset;
  return {
    ifindex: PKT_META.fields.ifindex.offset, ingress: PKT_META.fields.ingress.offset, l2Len: PKT_META.fields.l2_len.offset,
    ownerTgid: o + OWNER.fields.tgid.offset, ownerUid: o + OWNER.fields.uid.offset, ownerCgroupId: o + OWNER.fields.cgroup_id.offset,
    ownerComm: o + OWNER.fields.comm.offset, ownerHow: o + OWNER.fields.how.offset,
  };
}

function classifierHooks(deployment: Deployment, interfaces: InterfaceManager): ClassifierHooks {
  const slotKey = Buffer.alloc(4);
  slotKey.writeUInt32LE(HOOK.capture.slot);
  let wanted: 'all' | number[] = [];
  return {
    metaFd: deployment.map(MONITOR_MAP.pktMeta).fd,
    layout: pktMetaLayout(),
    setStage: (fd) => {
      const m = deployment.map(MONITOR_MAP.hooks);
      if (fd === null) {
        m.delete(slotKey);
        return;
      }
      const v = Buffer.alloc(4);
      v.writeUInt32LE(fd);
      m.update(slotKey, v);
    },
    setWanted: (target) => {
      const next: 'all' | number[] = target === 'all' ? 'all' : [...target];
      if (wanted === 'all' && next !== 'all') interfaces.setHookBits('all', HOOK.capture.bit, false);
      if (wanted !== 'all') for (const i of wanted) if (next === 'all' || !next.includes(i)) interfaces.setHookBits(i, HOOK.capture.bit, false);
      if (next === 'all') interfaces.setHookBits('all', HOOK.capture.bit, true);
      else for (const i of next) interfaces.setHookBits(i, HOOK.capture.bit, true);
      wanted = next;
    },
  };
}

/** The interfaces the classifier runs on, with the link type capture sessions see. */
function captureInterfaces(interfaces: InterfaceManager): CaptureInterface[] {
  const types = new Map(listLinks().map((l) => [l.ifindex, linkTypeOf(l)]));
  return interfaces.attached().flatMap((a) => {
    const lt = types.get(a.ifindex);
    return lt ? [{ name: a.name, ifindex: a.ifindex, linkType: lt }] : [];
  });
}

/** Mirrors declared in the configuration file (capture.mirrors): each checked as mirror.add
 * checks its params; a bad one is reported and skipped, the others apply. */
function applyDeclaredMirrors(capture: CaptureManager, config: Config, logger: Logger): void {
  const declared = [];
  for (const [i, raw] of (config.capture.mirrors as unknown[]).entries()) {
    try {
      const spec = parseMirrorSpec(raw);
      declared.push({ spec, selector: () => capture.resolve(spec, `capture.mirrors[${i}]`) });
    } catch (err) {
      logger.error({ err }, `capture.mirrors[${i}] ignored: ${(err as Error).message}`);
    }
  }
  for (const r of capture.applyDeclared(declared)) {
    if (r.action === 'failed') logger.error({ mirror: r.name }, `declared mirror ${r.name} not started: ${r.reason}`);
    else if (r.action === 'conflict') logger.warn({ mirror: r.name }, `declared mirror ${r.name} differs from the running one: \`ebpfmonctl mirror remove ${r.name}\` to apply the declaration`);
  }
}

/** How long shutdown waits for ClickHouse to take what is buffered (main.ts exits 4 s after SIGTERM). */
const EXPORT_DRAIN_MS = 2000;

/**
 * The exports, when configured: the Prometheus endpoint (`metrics.listen`) and flow records
 * into ClickHouse (`export.clickhouse.url`). Both read the daemon through its API, as a
 * system caller (status, processes.list, lb.stats, flows.list), and the ClickHouse export
 * gets close events from the bus; their status becomes `status.export`.
 */
async function startExports(config: Config, daemon: Daemon, bus: EventBus, lbOn: boolean, logger: Logger, closers: Closers): Promise<void> {
  const m = daemon.api.methods;
  let ch: ClickHouseFlowExport | null = null;
  let metrics: { exporter: MetricsExporter; listen: string } | null = null;
  const c = config.export.clickhouse;
  if (c.url !== '') {
    const { ClickHouseFlowExport } = await import('./export/clickhouse.js');
    const x = new ClickHouseFlowExport(
      {
        url: c.url, database: c.database, table: c.table, cluster: c.cluster, credentialsFile: c.credentialsFile || undefined,
        batchRows: c.batchRows, flushIntervalMs: c.flushIntervalSec * 1000, bufferRows: c.bufferRows, compress: c.compress,
        timeoutMs: c.timeoutSec * 1000, backoff: { initialMs: Math.min(1000, c.retryMaxSec * 1000), maxMs: c.retryMaxSec * 1000 },
        updateIntervalMs: c.updateIntervalSec * 1000, host: hostIdentity(), excludePid: process.pid, spoolFile: c.spoolFile || undefined, logger,
      },
      // Every flow, closed ones included: the export's tracker turns them into deltas.
      { flows: async () => (await m['flows.list'].run({ query: { includeClosed: true } }, SYSTEM_CALLER)).flows },
    );
    const unsubscribe = bus.subscribe((e) => x.onClose(e as CloseEvent), ['close']);
    x.start();
    closers.add('ClickHouse export', async () => {
      unsubscribe();
      await x.stop(EXPORT_DRAIN_MS);
    });
    ch = x;
  }
  if (config.metrics.listen !== '') {
    // prom-client (and the OpenTelemetry API it loads) only for a daemon that serves /metrics.
    const { MetricsExporter, serveMetrics } = await import('./export/metrics.js');
    const exporter = new MetricsExporter(
      {
        status: () => m.status.run(undefined, SYSTEM_CALLER),
        processes: async () => (await m['processes.list'].run({ uid: undefined, limit: Number.MAX_SAFE_INTEGER, by: 'process', identity: undefined, places: 0 }, SYSTEM_CALLER)).processes,
        lbStats: lbOn ? () => m['lb.stats'].run(undefined, SYSTEM_CALLER) : undefined,
        clickhouse: ch ? () => ch.status() : undefined,
      },
      { topProcesses: config.metrics.topProcesses, logger },
    );
    exporter.start();
    closers.add('metrics refresh', () => exporter.stop());
    const server = await serveMetrics(exporter, parseListen(config.metrics.listen), logger);
    closers.add('metrics endpoint', () => server.close());
    metrics = { exporter, listen: server.address };
  }
  if (!ch && !metrics) return;
  const [mx, cx] = [metrics, ch];
  daemon.reportExport(() => ({
    ...(mx ? { metrics: mx.exporter.status(mx.listen) } : {}),
    ...(cx ? { clickhouse: cx.status() } : {}),
  }));
}

/**
 * The geo databases. Geo enriches; it is never a reason not to monitor: a user's file that
 * cannot be opened is skipped, and a bundled database that is missing turns geo off, each
 * with a warning and `status` `geo.error` saying why.
 */
export async function openGeo(config: Config, logger: Logger): Promise<GeoDeps> {
  const home = parseHome(config.ui.home);
  if (!config.geo.enabled) return { ...NO_GEO, home };
  const log = logger.child({ component: 'geo' });
  try {
    const resolver = await GeoResolver.open({
      databases: config.geo.databases, defaultDatabases: config.geo.defaultDatabases, cacheSize: config.geo.cacheSize,
      watch: true, skipUnreadable: true,
      onReload: (file, err) => (err ? log.warn({ err, file }, err.message) : log.info({ file }, 'geo database reloaded')),
    });
    const error = resolver.errors.length ? resolver.errors.join('; ') : null;
    if (error) log.warn(`geo: ${error}`);
    return { resolver, enabled: true, error, home };
  } catch (err) {
    log.warn({ err }, `geo lookups are off: ${(err as Error).message}`);
    return { resolver: null, enabled: true, error: (err as Error).message, home };
  }
}

export type { Caller };
