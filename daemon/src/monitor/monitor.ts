// SPDX-License-Identifier: Apache-2.0
// The flow monitor, assembled: deploys the flows, sockets, procs, scan and handoff
// components (adopting what is pinned), scans sockets that predate the daemon, attaches the classifier to the
// configured interfaces, reads events from the ring buffer, and serves flow, process and
// status queries. stop() releases the daemon's handles and leaves everything pinned and
// attached: monitoring goes on while the daemon restarts.
import fs from 'node:fs';
import type { Logger } from 'pino';
import { Deployment, type DeployResult } from '../bpf/deployment.js';
import { RingBufReader } from '../bpf/ringbuf.js';
import { BPF_PROG_TYPE_NAMES } from '../bpf/uapi.js';
import type { ProbeStatus } from '../bpf/manifest.js';
import { MONITOR_COUNTERS, type CounterName, type Loss, type MapView, type ProgramView, type ProgramsListResult, type SocketScanStatus } from '../contract/status.js';
import type { EventBus } from '../events/bus.js';
import type { EventOwner } from '../contract/events.js';
import { CLOCK_BOOTTIME } from '../sys/libc.js';
import { WallClock } from '../sys/clock.js';
import { currentNetnsCookie } from '../sys/netns.js';
import { FLOW_READ, FLOWS, FLOWS_WALK, HANDOFF_PROBE, MAP, MONITOR_COMPONENTS, PROG, SCAN } from './components.js';
import { FlowBatchReader } from './flowread.js';
import { DirtyRing } from './dirty.js';
import { numPossibleCpus } from '../bpf/maps.js';
import { handoffCounters } from './handoff.js';
import { HANDOFF_COUNTERS, type HandoffStatus } from '../contract/identity.js';
import type { IdentitySource } from '../identity/index.js';
import { procSocketScan } from './procscan.js';
import { inNetns } from '../sys/netns.js';
import { decodable, recordEventType, type DecodeContext } from './decoder.js';
import { RecordEvent } from './records.js';
import { NO_OWNER, OwnerMemo } from './owners.js';
import { FlowTable } from './flows.js';
import { InterfaceManager } from './interfaces.js';
import { HookPort } from './hooks.js';
import type { HookName } from './wire.js';
import { ProcessTable } from './processes.js';
import type { MonitorApi, MonitorStatus } from './api.js';
import type { FlowChangeSink, FlowQuery, ProcessQuery } from './flows.js';
import { BPF_LINK_TYPE_NAMES } from '../bpf/uapi.js';
import { CFG_EXEC_ARGS, CONFIG, EV, EVENT_HDR, FLOW_KEY, STAT_CLOSES_INFERRED, STAT_FLOWS_DELETED } from './wire.js';
import { tcpSocketState } from '../net/netlink.js';
import { markFromOwnerTables } from './ownerports.js';
import { AF_INET } from '../sys/libc.js';

export const LAYOUT_VERSION = 4; // bpf/monitor/common.h EMON_LAYOUT_VERSION

export interface MonitorOptions {
  pinPath: string;
  objectDir: string;
  interfaces: string[];
  mapSizes: { flows: number; owners: number; tuples: number; binds: number; ringBufferBytes: number; handoffs?: number };
  closedRetentionMs: number;
  idleTimeoutMs: number;
  tcpIdleTimeoutMs: number;
  gcIntervalMs: number;
  /** flows.closeCheckSec (flows.ts reconcileCloses). */
  closeCheckMs?: number;
  /** Read changed flows from the dirty-flow ring (default true; false: the classifier
   * without it, and a walk per read: `flows.dirtyRing`). */
  dirtyRing?: boolean;
  execArgs: boolean;
  /** Track sockets of every network namespace, not only the daemon's. */
  allNamespaces: boolean;
  /** Probe alternatives not to use (`probes.disable`, as `capability/id`). */
  disabledProbes?: readonly string[];
  daemonVersion: string;
  logger: Logger;
  /** Names each owner's unit, container and app (app.ts passes the daemon's); without it those fields are null. */
  identity?: IdentitySource;
}

/**
 * Program runs the kernel skipped, less those another program made up for: the backup
 * state-change program handles exactly the changes the primary was skipped for (counted in
 * stateChangesRescued), and its own skipped runs are changes the primary handled.
 */
export function probeMisses(programs: Array<Pick<ProgramView, 'name' | 'recursionMisses'>>, rescued: number): number {
  let n = 0;
  for (const p of programs) if (p.name !== PROG.stateChangeBackup) n += p.recursionMisses;
  return Math.max(0, n - rescued);
}

/** The initial pid namespace's inode (PROC_PID_INIT_INO): global pids need no translation. */
const PROC_PID_INIT_INO = 0xeffffffc;

/** Our pid namespace, when it is not the initial one: the kernel then reports pids as it
 * numbers them (a daemon in a container; its users know those pids). 0: global pids. */
function pidNamespaceForKernel(): number {
  try {
    const ino = fs.statSync('/proc/self/ns/pid').ino;
    return ino === PROC_PID_INIT_INO ? 0 : ino;
  } catch {
    return 0;
  }
}

/** /proc/PID/ns/net of one process in each network namespace other than ours. */
function otherNetnsPaths(): string[] {
  const own = fs.readlinkSync('/proc/self/ns/net');
  const seen = new Map<string, string>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ns = fs.readlinkSync(`/proc/${d}/ns/net`);
      if (ns !== own && !seen.has(ns)) seen.set(ns, `/proc/${d}/ns/net`);
    } catch {
      // gone, or not ours to read
    }
  }
  return [...seen.values()];
}

/** emon_stats counters that move whenever a flow appears, changes owner or closes. */
const MEMBERSHIP_COUNTERS = ['flowsCreated', 'flowsReopened', 'flowsPatched', 'closeEvents'] as const satisfies readonly CounterName[];

const STAT_KEY = (i: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i);
  return b;
};

export class Monitor implements MonitorApi {
  readonly deployment: Deployment;
  readonly flows: FlowTable;
  readonly processes: ProcessTable;
  readonly interfaces: InterfaceManager;
  readonly deployResults: DeployResult[] = [];
  private reader: RingBufReader | null = null;
  private timers: NodeJS.Timeout[] = [];
  /** Event timestamps (bpf_ktime_get_boot_ns) -> wall-clock ms. */
  private readonly wall = new WallClock(CLOCK_BOOTTIME);
  private readonly log: Logger;
  readonly startedAt = new Date();
  scanned = { sockets: 0, processes: 0 };
  /** The start-up socket scan (it may finish after start() returns: the /proc one yields). */
  readonly socketScan: SocketScanStatus = { method: null, state: 'pending', sockets: 0, durationMs: null, fallbacks: [] };
  scanDone: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: MonitorOptions, deployment: Deployment, private readonly ownsDeployment: boolean, readonly bus: EventBus) {
    this.log = opts.logger.child({ component: 'monitor' });
    this.deployment = deployment;
    // Events name their owners through the identity service, once per cgroup (owners.ts).
    const identity = opts.identity;
    this.decodeCtx.owners = new OwnerMemo(identity ? (cg, pid) => identity.of(cg, pid) : null);
    this.processes = new ProcessTable({ retentionMs: Math.max(opts.closedRetentionMs, 300_000), maxEntries: 65536 }, (pid, exitedAtMs) => this.flows.forgetProcess(pid, exitedAtMs));
    this.interfaces = new InterfaceManager(deployment, opts.logger, opts.interfaces);
    this.flows = new FlowTable(deployment.map(MAP.flows), (i) => this.interfaces.name(i), this.processes, opts, opts.identity ?? null, () => this.membership());
    // Closes the kernel did not report: the collector infers them, asking the kernel's
    // socket table when the flows are this namespace's (flows.ts reconcileCloses).
    this.flows.setCloseReconciler({
      verify: !opts.allNamespaces && currentNetnsCookie() !== null ? (key) => this.socketState(key) : null,
      emit: (rec) => {
        this.addStat(STAT_CLOSES_INFERRED, 1);
        this.log.info({ record: rec.toString('hex', 16, 56) }, 'a TCP close the kernel did not report, inferred from the flow');
        this.onRecord(new DataView(rec.buffer, rec.byteOffset, rec.length), 0, rec.length);
      },
    });
  }

  /**
   * Every change to which flows exist or who owns them, as the kernel counts them: flows
   * created, reopened, patched (owner filled in), closed (a close makes a flow
   * collectable), and owners moved by the handoff programs. The flow index is the table
   * while this sum has not moved (flows.ts, ownerindex.ts). Only deletions are uncounted,
   * and the index finds those at lookup.
   */
  membership(): number {
    let n = 0;
    for (const name of MEMBERSHIP_COUNTERS) n += Number(this.statsValue(MONITOR_COUNTERS.indexOf(name)));
    if (this.deployment.hasMap(MAP.handoffStats)) {
      const m = this.deployment.map(MAP.handoffStats);
      const k = Buffer.alloc(4);
      k.writeUInt32LE(HANDOFF_COUNTERS.indexOf('flowsPatched'));
      const v = m.lookup(k);
      if (v) n += Number(m.sumPerCpuU64(v));
    }
    return n;
  }

  /** Opens the pin directory with the monitor's layout version and map sizes. The load
   * balancer deploys into the same Deployment. */
  static openDeployment(opts: MonitorOptions, otherMapSizes: Record<string, number> = {}): Deployment {
    return Deployment.open({
      pinPath: opts.pinPath,
      objectDir: opts.objectDir,
      layoutVersion: LAYOUT_VERSION,
      daemonVersion: opts.daemonVersion,
      logger: opts.logger,
      mapSizes: {
        [MAP.flows]: opts.mapSizes.flows,
        [MAP.owners]: opts.mapSizes.owners,
        [MAP.tuples]: opts.mapSizes.tuples,
        [MAP.binds]: opts.mapSizes.binds,
        [MAP.events]: opts.mapSizes.ringBufferBytes,
        ...(opts.mapSizes.handoffs !== undefined ? { [MAP.handoffs]: opts.mapSizes.handoffs } : {}),
        ...otherMapSizes,
      },
      disabledProbes: opts.disabledProbes,
    });
  }

  /**
   * Deploys (or adopts) the programs and starts monitoring; events go to `bus` (the
   * daemon's). With `deployment`, uses it (and leaves closing it to the caller); without,
   * opens one and closes it on stop().
   */
  static start(opts: MonitorOptions, bus: EventBus, deployment?: Deployment): Monitor {
    const dep = deployment ?? Monitor.openDeployment(opts);
    try {
      // The classifier with the dirty-flow ring, or the same one without it (a kernel that
      // refuses it, or `flows.dirtyRing` false): then reads walk the table (flows.ts).
      let walkReason: string | null = opts.dirtyRing === false ? 'switched off (flows.dirtyRing)' : null;
      const results = MONITOR_COMPONENTS.map((c) => {
        if (c !== FLOWS) return dep.deploy(c);
        if (walkReason) return dep.deploy(FLOWS_WALK);
        try {
          return dep.deploy(FLOWS);
        } catch (err) {
          walkReason = `the kernel refused the classifier with the dirty-flow ring: ${(err as Error).message}`;
          opts.logger.warn({ err }, 'classifier with the dirty-flow ring refused; loading it without (reads walk the flow table)');
          try {
            return dep.deploy(FLOWS_WALK);
          } catch (walkErr) {
            // Neither loads: the error worth reporting is the shipped classifier's (it names
            // flows.bpf.o, or the program and the verifier's reason); the alternative's is logged.
            opts.logger.error({ err: walkErr }, 'the classifier without the dirty-flow ring did not load either');
            throw err;
          }
        }
      });
      const m = new Monitor(opts, dep, deployment === undefined, bus);
      m.deployResults.push(...results);
      m.walkReason = walkReason;
      m.init();
      return m;
    } catch (err) {
      if (!deployment) dep.close();
      throw err;
    }
  }

  /** Why the flow table is walked on every read (null: the dirty-flow ring is used). */
  private walkReason: string | null = null;
  private dirty: DirtyRing | null = null;

  /** Starts the dirty-flow ring's reader, or says why reads walk the table. */
  private startDirty(): void {
    if (this.walkReason) return this.flows.stopDirty(this.walkReason);
    try {
      this.dirty = new DirtyRing(this.deployment.map(MAP.dirty), this.deployment.map(MAP.epoch));
      this.flows.useDirty(this.dirty, () => Number(this.stat('dirtyRingFull')), this.deployment.map(MAP.flows).info.maxEntries, numPossibleCpus());
    } catch (err) {
      this.log.warn({ err }, 'dirty-flow ring unavailable: reads walk the flow table');
      this.dirty?.close();
      this.dirty = null;
      this.flows.stopDirty(`the dirty-flow ring could not be read: ${(err as Error).message}`);
    }
  }

  private batchReader: FlowBatchReader | null = null;

  /** Reads flows by key in batches when the program deployed, else says why not. */
  private startBatchReads(): void {
    const active = this.probes().find((p) => p.capability === FLOW_READ.capability)?.active ?? null;
    if (active !== FLOW_READ.batch) {
      this.flows.useBatchReads(null, active === null ? 'the batch reader is not deployed' : `${FLOW_READ.batch} not used: see probes (${FLOW_READ.capability})`);
      return;
    }
    try {
      this.batchReader = new FlowBatchReader(this.deployment.progFd(FLOW_READ.prog), this.deployment.map(FLOW_READ.buffer));
      this.flows.useBatchReads(this.batchReader, null, (err) => this.log.warn({ err }, 'a batch read of the flow table failed: reading one flow per lookup from now on'));
    } catch (err) {
      this.log.warn({ err }, 'batch flow reads unavailable: reading one flow per lookup');
      this.batchReader?.close();
      this.batchReader = null;
      this.flows.useBatchReads(null, `the batch reader could not be opened: ${(err as Error).message}`);
    }
  }

  private init(): void {
    this.writeConfig();
    this.startBatchReads();
    this.startDirty();
    this.refreshClock();
    const ids = this.opts.identity;
    this.scanned.processes = this.processes.scanProc('/proc', ids?.cgroupIdOfPid ? (pid) => ids.cgroupIdOfPid!(pid) : undefined);
    this.scanDone = this.scanSockets();
    this.interfaces.start();
    this.reader = new RingBufReader(this.deployment.map(MAP.events), (v, off, len) => this.onRecord(v, off, len), {
      onError: (err) => this.log.warn({ err }, 'event handler failed'),
      // At a steady few thousand events per second, drain (and write to subscribers) up
      // to every 64 ms rather than every 1 ms. Each wakeup of the event loop costs a few
      // hundred microseconds here whatever it drains (timers, the pump, a socket write,
      // cold caches): at 10k connections/s with one subscriber, 8 ms cost the daemon 10.0 us
      // per connection and 64 ms 6.2 (bench/attribution; docs/benchmarks.md "One record
      // per connection, and fewer wakeups"). A live view shows events at most 64 ms late.
      // The interval only grows while each drain stays under 1/64 of the ring (ringbuf.ts);
      // overflowing the 16 MiB ring in 64 ms takes over 250 MB/s of events, far beyond what
      // connections produce.
      maxCoalesceMs: 64,
    });
    this.reader.start();
    const every = (ms: number, fn: () => unknown, now = false) => {
      let running = false; // a slow run (a huge table) never overlaps the next
      const run = () => {
        if (running) return;
        running = true;
        Promise.resolve()
          .then(fn)
          .catch((err: unknown) => this.log.error({ err }, 'periodic task failed'))
          .finally(() => (running = false));
      };
      const t = setInterval(run, ms);
      t.unref();
      this.timers.push(t);
      if (now) run();
    };
    // The collector's first run is now, not a period later: flows that expired while no
    // daemon ran go at once, and its walk of the table (pinned: it survives restarts) fills
    // the owner index and the table's copy (flows.ts), so the first `flows --pid` or `top`
    // after a restart reads only what changed instead of walking the table itself.
    every(this.opts.gcIntervalMs, () => this.gc(), true);
    every(10_000, () => this.processes.expire());
    every(1_000, () => this.refreshClock());
  }

  /**
   * Runtime settings go through a one-entry map (emon_config), not through `.rodata`:
   * the programs stay pinned and attached across daemon restarts and are adopted without
   * reloading, so a setting that follows the configuration (the namespace filter, exec
   * arguments, the daemon's pid namespace) must be writable after load, and `.rodata` is
   * frozen at load. Costs one array lookup, which the verifier inlines.
   */
  private writeConfig(): void {
    const v = Buffer.alloc(CONFIG.size);
    const cookie = this.opts.allNamespaces ? 0n : currentNetnsCookie() ?? 0n;
    v.writeBigUInt64LE(cookie, CONFIG.fields.netns_cookie.offset);
    v.writeUInt32LE(((this.opts.execArgs ? CFG_EXEC_ARGS : 0) | this.featureFlags) >>> 0, CONFIG.fields.flags.offset);
    v.writeUInt32LE(pidNamespaceForKernel(), CONFIG.fields.pidns_inum.offset);
    this.deployment.map(MAP.config).update(STAT_KEY(0), v);
  }

  /** emon_config.flags bits other features own (L7's switches): kept across writeConfig(). */
  private featureFlags = 0;

  /** Sets the `mask` bits of emon_config.flags to `bits` (a feature's runtime switches). */
  setConfigFlags(mask: number, bits: number): void {
    if (mask & CFG_EXEC_ARGS) throw new RangeError('emon_config.flags: the exec-arguments bit is the monitor\'s');
    this.featureFlags = ((this.featureFlags & ~mask) | (bits & mask)) >>> 0;
    this.writeConfig();
  }

  /** A feature's stage of the classifier's hook chain (its slot and interface bit). */
  hookPort(name: HookName): HookPort {
    return new HookPort(this.deployment, this.interfaces, name);
  }

  /** Event timestamps (CLOCK_BOOTTIME ns) -> wall-clock ms, as the monitor's events have them. */
  wallMs(ns: number): number {
    return this.wall.toMs(BigInt(Math.trunc(ns)));
  }

  /**
   * Owners of sockets opened before the daemon: runs the scan alternative that deployed,
   * and when it fails at run time, the one after it that needs no BPF program (/proc).
   */
  private async scanSockets(): Promise<void> {
    const deployed = this.probes().find((p) => p.capability === 'socket-scan')?.active ?? null;
    const order = [SCAN.taskFile, SCAN.taskFileCore, SCAN.joined, SCAN.proc] as string[];
    const st = this.socketScan;
    let method = deployed ?? SCAN.proc; // the /proc scan needs nothing deployed
    st.state = 'running';
    const t0 = Date.now();
    // Owners recorded before emon_owner_ports existed (an upgrade), by an older build.
    try {
      markFromOwnerTables({ tuples: this.deployment.map(MAP.tuples), binds: this.deployment.map(MAP.binds) }, this.deployment.map(MAP.ownerPorts));
    } catch (err) {
      this.log.warn({ err }, 'could not mark the local ports of recorded owners: new flows on them may stay unattributed');
    }
    for (;;) {
      st.method = method;
      try {
        const before = this.stat('ownersProc');
        if (method === SCAN.proc) {
          const r = await procSocketScan({
            owners: { tuples: this.deployment.map(MAP.tuples), binds: this.deployment.map(MAP.binds) },
            ownerPorts: this.deployment.map(MAP.ownerPorts),
            allNamespaces: this.opts.allNamespaces,
          });
          this.addStat(MONITOR_COUNTERS.indexOf('ownersProc'), r.sockets);
          st.maxSliceMs = r.maxSliceMs;
          st.namespaces = r.namespaces;
        } else {
          this.runScanIterators(method);
        }
        st.sockets = Number(this.stat('ownersProc') - before);
        st.state = 'done';
        break;
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        st.fallbacks.push({ label: method, reason });
        this.log.warn({ err, probe: method }, `socket scan failed: ${reason}`);
        const next = order.indexOf(method) + 1;
        if (method === SCAN.proc || next >= order.length) {
          st.state = 'failed';
          break;
        }
        method = SCAN.proc; // later BPF alternatives were not loaded
      }
    }
    st.durationMs = Date.now() - t0;
    this.scanned.sockets = st.sockets;
    if (st.state === 'done') this.log.info({ sockets: st.sockets, processes: this.scanned.processes, method: st.method, durationMs: st.durationMs }, 'scanned sockets and processes that predate the daemon');
    else this.log.warn('socket scan unavailable: connections that predate the daemon stay unattributed');
  }

  /** The BPF scan alternatives: one pass each over the iterators the alternative loaded. */
  private runScanIterators(method: string): void {
    if (method === SCAN.taskFile) {
      this.deployment.runIter(PROG.scanTaskFile);
    } else if (method === SCAN.taskFileCore) {
      this.deployment.runIter(PROG.scanTaskFileCore);
    } else if (method === SCAN.joined) {
      // Socket inode -> first holder, then the protocol iterators join on it. They walk the
      // namespace they are created in: every namespace with trackAllNamespaces.
      const inodes = this.deployment.map(MAP.scanInodes);
      try {
        this.deployment.runIter(PROG.scanInodes);
        const walk = () => {
          this.deployment.runIter(PROG.scanTcp);
          this.deployment.runIter(PROG.scanUdp);
        };
        walk();
        if (this.opts.allNamespaces) {
          for (const ns of otherNetnsPaths()) {
            try {
              inNetns(ns, walk);
            } catch (err) {
              this.socketScan.fallbacks.push({ label: `${SCAN.joined} in ${ns}`, reason: (err as Error).message });
            }
          }
        }
      } finally {
        inodes.clear();
      }
    } else {
      throw new Error(`unknown scan method ${method}`);
    }
  }

  private refreshClock(): void {
    this.wall.refresh();
  }

  /** pid -> cgroup id read from /proc for processes that predate the daemon (ownerOfPid). */
  private readonly pidCgroups = new Map<number, { cg: string | null; at: number }>();

  /**
   * The owner of a record that names only a pid (DNS queries, HTTP requests): the cgroup the
   * process had at its exec (the process table), else its cgroup now (/proc, remembered for
   * a second), named through the same memo as the monitor's own events.
   */
  ownerOfPid(pid: number | null): EventOwner {
    if (pid === null || pid <= 0) return NO_OWNER.owner;
    let cg = this.processes.get(pid)?.cgroupId ?? null;
    if (cg === null && this.opts.identity?.cgroupIdOfPid) {
      const now = Date.now();
      const memo = this.pidCgroups.get(pid);
      if (memo && now - memo.at < 1000) cg = memo.cg;
      else {
        cg = this.opts.identity.cgroupIdOfPid(pid);
        if (this.pidCgroups.size >= 4096) this.pidCgroups.clear();
        this.pidCgroups.set(pid, { cg, at: now });
      }
    }
    if (cg === null) return NO_OWNER.owner;
    return (this.decodeCtx.owners?.ofString(cg, pid) ?? NO_OWNER).owner;
  }

  readonly decodeCtx: DecodeContext = {
    toMsAt: (v, off) => this.wall.toMsAt(v, off),
    ifname: (i) => this.interfaces.name(i),
    remoteGeo: (addr) => this.bus.remoteGeo(addr),
    cgroupOfPid: (pid) => this.processes.get(pid)?.cgroupId ?? null,
  };

  /** The record being published (one view reused for every record: see records.ts). */
  private readonly record = new RecordEvent(this.decodeCtx);

  private lastSockDiagWarnMs = 0;

  /** The socket table's answer for a flow key (flows.ts reconcileCloses); -1 when the
   * question failed (warned at most once a minute). */
  private socketState(key: Uint8Array): number | null {
    try {
      return socketStateOf(key);
    } catch (err) {
      if (Date.now() - this.lastSockDiagWarnMs > 60_000) {
        this.lastSockDiagWarnMs = Date.now();
        this.log.warn({ err }, 'the socket table (sock_diag) did not answer: closes the kernel did not report are checked again later');
      }
      return -1;
    }
  }

  private onRecord(v: DataView, off: number, len: number): void {
    if (!decodable(v, off, len)) {
      this.bus.undecodable++;
      return;
    }
    // Connection events matter only to subscribers that want their type: otherwise count
    // them unbuilt (the decode, dates included, is most of a record's cost). exec/exit
    // always feed the process table.
    const type = v.getUint16(off + EVENT_HDR.fields.type.offset, true);
    const name = recordEventType(type)!;
    const proc = type === EV.EXEC || type === EV.EXIT;
    if (!proc && !this.bus.wants(name)) {
      this.bus.countUnwanted(name);
      return;
    }
    const e = this.record.set(v, off, len, type, name);
    if (proc) {
      const pe = e.event();
      if (pe.type === 'exec') this.processes.onExec(pe);
      else if (pe.type === 'exit') {
        this.processes.onExit(pe);
        if (pe.pid !== null) this.flows.processExited(pe.pid, Date.parse(pe.at));
      }
    }
    this.bus.publishEvent(e);
  }

  async gc(): Promise<number> {
    const n = await this.flows.gc();
    if (n > 0) this.addStat(STAT_FLOWS_DELETED, n);
    return n;
  }

  // --- stats ------------------------------------------------------------------------------

  private statsValue(i: number): bigint {
    const m = this.deployment.map(MAP.stats);
    const v = m.lookup(STAT_KEY(i));
    return v ? m.sumPerCpuU64(v) : 0n;
  }

  stat(name: (typeof MONITOR_COUNTERS)[number]): bigint {
    return this.statsValue(MONITOR_COUNTERS.indexOf(name));
  }

  /** All counters, summed over CPUs. */
  counters(): Record<CounterName, number> {
    const out = {} as Record<CounterName, number>;
    MONITOR_COUNTERS.forEach((n, i) => (out[n] = Number(this.statsValue(i))));
    out.flowsDeleted = Number(this.statsValue(STAT_FLOWS_DELETED));
    out.closesInferred = Number(this.statsValue(STAT_CLOSES_INFERRED));
    return out;
  }

  /** Adds to a daemon-maintained slot: kept in the pinned map so it survives restarts. */
  private addStat(i: number, n: number): void {
    const m = this.deployment.map(MAP.stats);
    const v = m.lookup(STAT_KEY(i));
    if (!v) return;
    v.writeBigUInt64LE(v.readBigUInt64LE(0) + BigInt(n), 0); // CPU 0's slot; BPF never writes this index
    m.update(STAT_KEY(i), v);
  }

  probes(): ProbeStatus[] {
    const m = this.deployment.current.components;
    return MONITOR_COMPONENTS.flatMap((c) => m[c.name]?.probes ?? []);
  }

  async maps(): Promise<MapView[]> {
    const out: MapView[] = [];
    for (const name of [MAP.flows, MAP.owners, MAP.tuples, MAP.binds, MAP.frags, MAP.handoffs]) {
      if (name === MAP.handoffs && !this.deployment.hasMap(name)) continue;
      const m = this.deployment.map(name);
      out.push({ name, maxEntries: m.maxEntries, entries: await m.countAsync() });
    }
    return out;
  }

  /** `before`: the counters read before `flowEntries` was counted (the count walks the
   * table with turns of the event loop in between). */
  loss(flowEntries: number, before: Record<CounterName, number> = this.counters()): Omit<Loss, 'subscriberDropped'> {
    const c = this.counters();
    return {
      ringbufFull: c.ringbufFull,
      probeMisses: probeMisses(this.programs(), c.stateChangesRescued),
      // LRU evictions are not counted by the kernel: flows created, minus flows ebpfmon
      // deleted, minus flows still present, were evicted. The count of flows present takes
      // a while: flows created before it began, minus flows deleted by its end, so that a
      // flow created or collected meanwhile is never taken for an eviction (an eviction
      // stays missing for good and shows at the next status).
      flowsEvicted: Math.max(0, before.flowsCreated - c.flowsDeleted - flowEntries),
      undecodable: this.bus.undecodable,
    };
  }

  ringStats(): RingBufReader['stats'] & { pendingBytes: number } {
    return { ...this.reader!.stats, pendingBytes: this.reader!.pendingBytes() };
  }

  programs(): ProgramView[] {
    const comps = this.deployment.current.components;
    const tc = this.deployment.tcRecords();
    const hooksOf = (prog: string, component: string): string[] => {
      const def = MONITOR_COMPONENTS.find((c) => c.name === component);
      const specs = def?.groups.flatMap((g) => g.alternatives.flatMap((a) => a.attach)).filter((s) => s.prog === prog) ?? [];
      return specs.flatMap((s) => {
        switch (s.kind) {
          case 'tracepoint': return [`tracepoint/${s.category}/${s.name}`];
          case 'cgroup': return ['cgroup v2 root'];
          case 'auto': return [def!.groups.flatMap((g) => g.alternatives).find((a) => a.attach.includes(s))!.label];
          case 'iter': return ['iterator (on demand)'];
          case 'run': return ['BPF_PROG_TEST_RUN (on demand)'];
          case 'tc': {
            const dir = prog === PROG.tcIngress ? 'ingress' : 'egress';
            return tc.filter((r) => r.programs[dir] === prog).map((r) => `tc ${dir} ${r.ifname}`);
          }
          default: return [];
        }
      });
    };
    return Object.entries(comps).flatMap(([component, rec]) =>
      rec.programs.map((name) => {
        const info = this.deployment.progInfo(name);
        return {
          name, id: info.id, type: BPF_PROG_TYPE_NAMES[info.type] ?? String(info.type), tag: info.tag, component,
          hooks: hooksOf(name, component), pinned: this.deployment.pins.path('progs', name),
          runCount: Number(info.runCount), runTimeNs: Number(info.runTimeNs), recursionMisses: Number(info.recursionMisses),
          verifiedInsns: info.verifiedInsns,
        };
      }),
    );
  }

  // --- MonitorApi -----------------------------------------------------------------------

  queryFlows(q: FlowQuery) {
    return this.flows.query(q);
  }

  /** History's listing: what changed since the last one (FlowTable.listChanges). */
  listFlowChanges(sink: FlowChangeSink) {
    return this.flows.listChanges(sink);
  }

  processTotals(q: ProcessQuery) {
    return this.flows.processes(q);
  }

  /** Sockets that change hands: the probe in use, records and counters. */
  handoff(entries: number): HandoffStatus {
    const active = this.probes().find((p) => p.capability === HANDOFF_PROBE.capability)?.active ?? null;
    const stats = this.deployment.hasMap(MAP.handoffStats) ? this.deployment.map(MAP.handoffStats) : null;
    return {
      active,
      sockets: entries,
      counters: stats ? handoffCounters(stats) : { slowPath: 0, handoffs: 0, shared: 0, ownersFilled: 0, flowsPatched: 0, updateFailed: 0 },
    };
  }

  async status(): Promise<MonitorStatus> {
    const before = this.counters();
    const maps = await this.maps();
    const ring = this.ringStats();
    return {
      pinPath: this.deployment.pins.root,
      deployedAt: this.deployment.current.createdAt,
      adopted: Object.fromEntries(this.deployResults.map((r) => [r.component, r.adopted])),
      probes: this.probes(),
      socketScan: this.socketScan,
      interfaces: this.interfaces.attached(),
      interfaceErrors: Object.fromEntries(this.interfaces.failures),
      maps,
      flowIndex: this.flows.indexStatus(),
      counters: this.counters(),
      loss: this.loss(maps.find((m) => m.name === MAP.flows)?.entries ?? 0, before),
      handoff: this.handoff(maps.find((m) => m.name === MAP.handoffs)?.entries ?? 0),
      events: { received: { ...this.bus.counts }, pendingBytes: ring.pendingBytes, maxDrainMs: Math.round(ring.maxDrainMs * 100) / 100 },
    };
  }

  programsList(): ProgramsListResult {
    return {
      programs: this.programs(),
      links: this.deployment.describe().links.map((l) => ({ ...l, type: BPF_LINK_TYPE_NAMES[l.type] ?? String(l.type) })),
    };
  }

  /** Applies a reloaded interface list (SIGHUP). Nothing else is detached. */
  setInterfaces(patterns: string[]): void {
    this.interfaces.setPatterns(patterns);
    this.interfaces.reconcile();
  }

  /** Stops reading and releases handles; programs stay pinned and attached. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.interfaces.stop();
    this.reader?.close();
    this.reader = null;
    this.dirty?.close();
    this.batchReader?.close();
    this.dirty = null;
    if (this.ownsDeployment) this.deployment.close();
  }
}

/** The TCP state of a flow key's socket in this network namespace (null: none). */
function socketStateOf(key: Uint8Array): number | null {
  const v = new DataView(key.buffer, key.byteOffset, FLOW_KEY.size);
  const K = FLOW_KEY.fields;
  const v4 = v.getUint8(K.family.offset) === AF_INET;
  const len = v4 ? 4 : 16;
  return tcpSocketState(v4 ? 4 : 6, key.subarray(K.laddr.offset, K.laddr.offset + len), v.getUint16(K.lport.offset, true),
    key.subarray(K.raddr.offset, K.raddr.offset + len), v.getUint16(K.rport.offset, true));
}
