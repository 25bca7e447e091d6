// SPDX-License-Identifier: Apache-2.0
// The flow table: queries over emon_flows (batch dumps, filtered on the raw bytes before
// any JS object is built, so `flows --pid` over a million flows stays cheap), joined with
// the process table, and the garbage collector that removes closed and idle flows after
// their retention time (their counts move to per-process totals, so nothing is lost).
// Each flow and process carries its owner's identity (unit, container, app: identity/),
// looked up once per cgroup per query.
import type { BpfMap } from '../bpf/maps.js';
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC, clockNs } from '../sys/libc.js';
import { WallClock } from '../sys/clock.js';
import { AF_INET, AF_INET6, formatIpAt, inCidr, parseIp, type Cidr } from '../net/ip.js';
import { protocolName } from '../net/protocols.js';
import { ATTRIBUTIONS, DIRECTIONS, KERNEL_COMM, TCP_FLAGS, TCP_STATES, type TcpFlag } from '../contract/common.js';
import type { Flow, FlowSort, ProcessTotals } from '../contract/flows.js';
import type { HttpFlowSummary, L7FlowFields, ProcessHttpSummary } from '../contract/l7.js';
import type { OwnerIdentity } from '../contract/identity.js';
import { NO_IDENTITY, type IdentitySource } from '../identity/index.js';
import { cString, EV, EVENT_CLOSE, EVENT_HDR, FLOW, FLOW_F, FLOW_KEY, HOW_KERNEL, OWNER, ownedByProcess } from './wire.js';
import { keyBytes, keyString, OwnerIndex } from './ownerindex.js';
import { FlowMirror, GROUP_UNKNOWN } from './flowmirror.js';
import type { DirtyRing } from './dirty.js';
import { FlowBatchReader } from './flowread.js';
import type { FlowIndexStatus } from '../contract/status.js';
import { addCounts } from '../util/counts.js';
import { compareProcessRows, ProcessRowCache } from './rowcache.js';
import { yieldTurn } from '../util/turn.js';

export type { Flow, ProcessTotals };

/** One process's flows to one remote address (the API turns them into places). */
export interface RemoteTraffic {
  addr: string;
  flows: number;
  txBytes: number;
  rxBytes: number;
}

/** A process's totals; with `remotes` when asked for (`places` is the API's to fill). */
export type ProcessTraffic = ProcessTotals & { remotes?: RemoteTraffic[] };

/** A validated flows.list query, in the table's terms (protocol number, parsed prefixes). */
export interface FlowQuery {
  pid?: number;
  comm?: string;
  uid?: number;
  remoteAddr?: Cidr;
  localAddr?: Cidr;
  port?: number;
  /** IP protocol number. */
  protocol?: number;
  interface?: string;
  /** The owner's identity must match (identity/filter.ts identityMatcher). */
  identity?: (id: OwnerIdentity) => boolean;
  includeClosed?: boolean;
  sort?: FlowSort;
  limit?: number;
}

/** Internal to the monitor (listChanges()): read these keys, hand each flow to `onFlow`
 * as it is built (nothing kept, not sorted), walk in chunks of `chunk`. */
interface ListQuery extends FlowQuery {
  keys?: Iterable<string>;
  onFlow?: (f: Flow) => void;
  chunk?: number;
}

/** A flow that left the table (collected, evicted), as history's listing names it: ICMP's
 * id and type in the port fields, as history keys ICMP flows. */
export interface GoneFlow {
  protocol: string;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  /** When the daemon found it gone (wall ms). */
  goneAtMs: number;
}

/** What listChanges() hands over, in this order: begin once, every gone flow, then flows. */
export interface FlowChangeSink {
  /** `full`: every flow follows (else only those that changed). */
  begin(full: boolean): void;
  gone(g: GoneFlow): void;
  flow(f: Flow): void;
}

/** One flow's key and value buffers, with views, for reads by key. */
interface FlowScratch {
  kb: Buffer;
  vb: Buffer;
  kv: DataView;
  vv: DataView;
}

function flowScratch(): FlowScratch {
  const kb = Buffer.alloc(FLOW_KEY.size);
  const vb = Buffer.alloc(FLOW.size);
  return { kb, vb, kv: new DataView(kb.buffer, kb.byteOffset, kb.byteLength), vv: new DataView(vb.buffer, vb.byteOffset, vb.byteLength) };
}

/** A flow as another feature knows it (its 5-tuple from this host's side, and its process). */
export interface FlowIdentity {
  protocol: string;
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
  pid: number | null;
}

/**
 * Fields a flow takes from the application layer (remoteName, serverName, tlsVersion):
 * app.ts wires the L7 feature in (the monitor knows no other feature). The GC walk hands
 * it the flows of the processes it `wants` (those with fresh DNS answers), so a flow takes
 * its name while the answer is fresh even when nobody lists flows, and tells it which
 * flows are gone.
 */
export interface FlowAnnotator {
  fields(f: FlowIdentity, nowMs: number): L7FlowFields;
  wants(pid: number): boolean;
  forget(f: FlowIdentity): void;
  /** False when no TCP flow with these ports has an HTTP summary (asked per flow, allocating nothing). */
  mayHaveHttp(localPort: number, remotePort: number): boolean;
  /** The flow's HTTP summary (not a copy: read at once). */
  http(f: FlowIdentity): Readonly<HttpFlowSummary> | null;
  /** Every flow with an HTTP summary (not copies: read at once); ports as its events gave them. */
  httpFlows(fn: (f: HttpFlowKey, h: Readonly<HttpFlowSummary>) => void): void;
}

/** A flow as the application layer names it (flowIdentity()'s text). */
export interface HttpFlowKey {
  protocol: string;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
}

/** Adds a flow's HTTP counts to a process's (created on its first request). */
function addHttp(to: ProcessHttpSummary | null, h: Readonly<HttpFlowSummary | ProcessHttpSummary>): ProcessHttpSummary {
  const t = to ?? { requests: 0, clientErrors: 0, serverErrors: 0, requestBytes: 0, responseBytes: 0 };
  t.requests += h.requests;
  t.clientErrors += h.clientErrors;
  t.serverErrors += h.serverErrors;
  t.requestBytes += h.requestBytes;
  t.responseBytes += h.responseBytes;
  return t;
}

const NO_NAMES: L7FlowFields = { remoteName: null, serverName: null, tlsVersion: null, http: null };

/** processes(): whose totals, and which. */
export interface ProcessQuery {
  uid?: number;
  identity?: (id: OwnerIdentity) => boolean;
  /** Also each process's live flows per remote address (geo places). */
  remotes?: boolean;
}

export interface ProcessInfoSource {
  lookup(tgid: number): { ppid: number | null; exe: string | null; comm: string } | undefined;
}

/** Totals of flows the GC removed, per process: keeps per-process counts monotonic. */
interface Retired {
  comm: string;
  uid: number;
  cgroupId: string | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  flows: number;
  lastNs: bigint;
  /** The HTTP counts of its collected flows (the flows' summaries are forgotten with them). */
  http: ProcessHttpSummary | null;
}

function flagNames(bits: number): TcpFlag[] {
  return TCP_FLAGS.filter(([b]) => bits & b).map(([, n]) => n);
}

function tcpState(v: DataView, o: number, closedNs: bigint, direction: number): string {
  if (closedNs) return 'closed';
  const sock = v.getUint8(o + FLOW.fields.sock_state.offset);
  if (sock) return TCP_STATES[sock] ?? `state_${sock}`;
  // No local socket state (forwarded traffic, or not yet seen): derive it from flags.
  const tx = v.getUint8(o + FLOW.fields.tcp_flags_tx.offset);
  const rx = v.getUint8(o + FLOW.fields.tcp_flags_rx.offset);
  if ((tx | rx) & 0x04) return 'reset';
  if (tx & rx & 0x01) return 'closed';
  if ((tx | rx) & 0x01) return 'closing';
  const init = direction === 2 ? rx : tx;
  const resp = direction === 2 ? tx : rx;
  if (init & 0x02 && !(resp & 0x02)) return direction === 2 ? 'syn_recv' : 'syn_sent';
  return (tx | rx) & 0x10 ? 'established' : 'new';
}

export class FlowTable {
  /**
   * pid -> process instance -> totals. A pid is reused: the totals of a process that exited
   * are kept apart from a later one's with the same pid (instance: the wall-clock ms of the
   * exit that ended it, Infinity for the one alive now), so forgetting the exited process
   * (the process table's retention) leaves the later one's totals whole.
   */
  private readonly retired = new Map<number, Map<number, Retired>>();
  /** Moves with every change of `retired` (see `answers`). */
  private retiredVersion = 0;
  /** processes()' last answer per query shape and what it was built from (againOrNull()). */
  private readonly answers = new Map<string, Answer>();
  /** processes() calls answered with the last answer again (tests read it). */
  answeredAgain = 0;
  /** Exits seen per pid (wall-clock ms, in order) while the process table remembers them. */
  private readonly exits = new Map<number, number[]>();
  /** owner.learned_ns (CLOCK_BOOTTIME) -> wall-clock ms, to tell which instance owned a flow. */
  private readonly bootWall = new WallClock(CLOCK_BOOTTIME);
  /** Flows this daemon deleted since it started (the pinned stats map keeps the lifetime total). */
  deletedTotal = 0;
  private annotator: FlowAnnotator | null = null;

  setAnnotator(a: FlowAnnotator | null): void {
    this.annotator = a;
  }

  /** processes()' rows per owner, handed out again while unchanged (rowcache.ts). */
  readonly rows = new ProcessRowCache<ProcessTraffic>();

  /** Flows by owner and by when they can be collected (ownerindex.ts). */
  readonly index = new OwnerIndex(RESYNC_MS);
  private readonly closedNs: bigint;
  private readonly idleNs: bigint;
  private readonly tcpIdleNs: bigint;
  /** Silence after which an ended TCP flow without a close event is checked (reconcileCloses());
   * set with the reconciler, read only when there is one. */
  private closeCheckNs = 0n;
  private closes: CloseReconciler | null = null;
  /** Suspects looked at by reconcileCloses(), and what came of them (status.flowIndex). */
  private readonly closeChecks = { checked: 0, stillOpen: 0, inferred: 0 };

  /**
   * `generation`: the kernel's membership counters summed (flows created, reopened,
   * patched, closed; handoff patches: Monitor.membership()). Without it the index is never
   * trusted and every query and collection walks the table, as before it existed.
   */
  constructor(
    private readonly map: BpfMap,
    private readonly ifname: (ifindex: number) => string | null,
    private readonly procs: ProcessInfoSource,
    private readonly opts: { closedRetentionMs: number; idleTimeoutMs: number; tcpIdleTimeoutMs: number; closeCheckMs?: number; clockNs?: () => bigint },
    private readonly identity: IdentitySource | null = null,
    private readonly generation: (() => number) | null = null,
  ) {
    this.closedNs = BigInt(opts.closedRetentionMs) * 1_000_000n;
    this.idleNs = BigInt(opts.idleTimeoutMs) * 1_000_000n;
    this.tcpIdleNs = BigInt(opts.tcpIdleTimeoutMs) * 1_000_000n;
  }

  /**
   * Lets the collector report the closes the kernel did not (reconcileCloses()): `verify` asks
   * the kernel whether a flow's socket still exists (null: it cannot tell, for flows of
   * other network namespaces), `emit` takes the close record it builds.
   */
  setCloseReconciler(r: CloseReconciler): void {
    this.closes = r;
    const ms = r.verify ? this.opts.closeCheckMs ?? DEFAULT_CLOSE_CHECK_MS : Math.max(this.opts.closeCheckMs ?? DEFAULT_CLOSE_CHECK_MS, UNVERIFIED_CLOSE_CHECK_MS);
    this.closeCheckNs = BigInt(ms) * 1_000_000n;
  }

  /** CLOCK_BOOTTIME - CLOCK_MONOTONIC (the time spent suspended), to date a record from a
   * flow's stamps (0 with a test's own clock). */
  private bootMinusMono(): bigint {
    return this.opts.clockNs ? 0n : clockNs(CLOCK_BOOTTIME) - clockNs(CLOCK_MONOTONIC);
  }

  /** CLOCK_MONOTONIC now, the flows' clock (a test's own clock when it passes one). */
  private now(): bigint {
    return this.opts.clockNs ? this.opts.clockNs() : clockNs(CLOCK_MONOTONIC);
  }

  /** The membership counters when the last walk started. */
  private lastScanGen: number | undefined = undefined;

  /** The membership counters now (undefined: not available, walk). With the dirty ring,
   * the number of times its stream broke instead (every membership change arrives with
   * its key, so only a break makes the index and the copy stale). */
  private gen(): number | undefined {
    if (this.dirty) return this.dirty.breaks;
    try {
      return this.generation?.();
    } catch {
      return undefined;
    }
  }

  /** Per-owner totals kept from the dirty ring (flowmirror.ts); filled by the index's sync walk. */
  readonly mirror = new FlowMirror();
  /** The sync that filled the mirror (its generation), null: not filled. */
  private mirrorGen: number | null = null;
  private dirty: {
    ring: DirtyRing;
    /** emon_stats dirtyRingFull now. */
    lost: () => number;
    lostSeen: number | null;
    /** Evictions are possible from this many entries on (the LRU's free lists: see useDirty). */
    evictFrom: number;
    breaks: number;
    /** Keys to read at the next refresh besides the ring's: those the last refresh read
     * that must be read again (see dirty.ts), or all the ring gave while the copy was not
     * the table (a set: bounded by the flows there are). */
    carry: Set<string>;
    /** One refresh at a time. */
    running: Promise<void> | null;
  } | null = null;
  private readonly indexStats = { fullWalks: 0, refreshes: 0, flowsRead: 0, breaks: { ringFull: 0, nearFull: 0 } };
  /**
   * What changed since history's last listing (listChanges()): keys the dirty-ring refreshes
   * read, keys found gone; `dirty`/`breaks`: the ring and its break count when the period
   * began (a break or another ring means pushes may be missing: the next listing is full).
   * Null until history asks (nothing is kept without it).
   */
  private changes: { changed: Set<string>; gone: Map<string, number>; dirty: FlowTable['dirty']; breaks: number } | null = null;
  private fallbackReason: string | null = 'the dirty-flow ring is not in use';

  /**
   * Reads changed flows from the kernel's dirty ring instead of walking the table
   * (`lost`: the kernel's count of pushes the ring could not take; `maxEntries`: the flow
   * table's size).
   */
  useDirty(ring: DirtyRing, lost: () => number, maxEntries: number, cpus: number): void {
    // An LRU hash evicts once its free nodes run out; each CPU holds up to 128 free nodes
    // of its own (the kernel's LOCAL_FREE_TARGET), so eviction can start that much before
    // the table is full. Below this the table only loses flows the daemon deletes.
    const evictFrom = Math.max(0, maxEntries - Math.max(1024, 2 * 128 * cpus));
    this.dirty = { ring, lost, lostSeen: null, evictFrom, breaks: 0, carry: new Set(), running: null };
    this.fallbackReason = null;
  }

  /** Stops using the dirty ring (a walk per read from here on), saying why. */
  stopDirty(reason: string): void {
    this.dirty = null;
    this.mirror.reset();
    this.mirrorGen = null;
    this.fallbackReason = reason;
  }

  /** Reads by key in batches (flowread.ts); null: one lookup syscall per flow. */
  private batch: FlowBatchReader | null = null;
  private batchReason: string | null = 'not deployed';
  private onBatchFailure: ((err: Error) => void) | null = null;
  /** Runs of the batch reader, and the flows they read (status.flowIndex.reads). */
  private readonly batchStats = { runs: 0, flows: 0 };

  /**
   * Reads flows by key through `reader` (null: one lookup per flow, `reason` says why).
   * `onFailure` hears of a run that failed, after which reads go one per lookup.
   */
  useBatchReads(reader: FlowBatchReader | null, reason: string | null, onFailure?: (err: Error) => void): void {
    this.batch = reader;
    this.batchReason = reader ? null : reason;
    this.onBatchFailure = onFailure ?? null;
  }

  /** How processes.list and the owner index read the table (status.flowIndex). */
  indexStatus(): FlowIndexStatus {
    const d = this.dirty;
    return {
      mode: d ? 'dirty-ring' : 'full-walk',
      reason: d ? null : this.fallbackReason,
      trusted: d !== null && this.mirrorTrusted(),
      dirtyRecords: d ? d.ring.stats.records : 0,
      fullWalks: this.indexStats.fullWalks,
      refreshes: this.indexStats.refreshes,
      flowsRead: this.indexStats.flowsRead,
      resyncs: { ringFull: this.indexStats.breaks.ringFull, nearFull: this.indexStats.breaks.nearFull },
      mirrored: this.mirror.size,
      closeChecks: { ...this.closeChecks },
      reads: {
        mode: this.batch ? 'batch' : 'lookup',
        reason: this.batch ? null : this.batchReason,
        batches: this.batchStats.runs,
        batchedFlows: this.batchStats.flows,
      },
    };
  }

  /** True when the mirror is the table (filled by the index's current sync). */
  private mirrorTrusted(): boolean {
    const g = this.gen();
    return this.mirrorGen !== null && this.mirrorGen === g && this.index.trusted(g);
  }

  /**
   * Brings the owner index and the mirror up to date with the flows the kernel reported
   * changed (nothing without the dirty ring). One at a time: a caller arriving during a
   * refresh waits for it and runs its own (its changes may have come after that one's read).
   */
  async catchUp(): Promise<void> {
    const d = this.dirty;
    if (!d) return;
    while (d.running) await d.running;
    d.running = this.refresh(d).finally(() => (d.running = null));
    return d.running;
  }

  private async refresh(d: NonNullable<FlowTable['dirty']>): Promise<void> {
    const epoch = await d.ring.advance();
    const keys = await d.ring.take();
    const lost = d.lost();
    if (d.lostSeen !== null && lost !== d.lostSeen) {
      d.breaks++;
      this.indexStats.breaks.ringFull++;
    }
    d.lostSeen = lost;
    if (this.mirror.size + keys.size > d.evictFrom && this.mirrorTrusted()) {
      // Near the LRU's eviction point a flow can vanish without a record: walk instead.
      d.breaks++;
      this.indexStats.breaks.nearFull++;
    }
    if (!this.mirrorTrusted() || this.index.syncing) {
      // Not the table (or being refilled by a walk that may have passed these flows
      // already): keep every key for the first refresh after the walk.
      for (const k of keys.keys()) d.carry.add(k);
      return;
    }
    // The keys pushed, then those carried over that were not pushed again: the carried
    // ones are few (changed during the last refresh's reads), the pushed ones tens of
    // thousands at 10k connections/s, and adding those to the carried set was 6 ms of the
    // main thread in one piece at each refresh.
    const read = [...keys.keys()];
    for (const k of d.carry) if (!keys.has(k)) read.push(k);
    const carry = new Set<string>();
    const s = flowScratch();
    const { kv, vv } = s;
    const tg = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;
    // A turn before the first piece: gathering the keys (tens of thousands at 10k
    // connections/s) and that piece made the longest task of a refresh.
    await yieldTurn();
    await this.readAll(read, s, true, (k, found) => {
      if (!found) return; // the copy is trusted here: mirrorGen is set
      this.noteChanged(k, vv);
      this.index.update(k, vv.getUint32(tg, true), this.dueOf(kv, 0, vv, 0));
      if ((keys.get(k) ?? 0) >= epoch) carry.add(k);
    });
    d.carry = carry;
    this.indexStats.refreshes++;
    this.indexStats.flowsRead += read.length;
  }

  /** True when the collector would remove this flow at `nowNs` (the rule of gc()). */
  private expired(nowNs: bigint, proto: number, sock: number, closed: bigint, last: bigint): boolean {
    if (closed) return nowNs - closed > this.closedNs && nowNs - last > this.closedNs;
    if (proto === 6) return sock === 0 && nowNs - last > this.tcpIdleNs;
    return nowNs - last > this.idleNs;
  }

  /** The second (CLOCK_MONOTONIC) from which expired() can first be true, while the flow
   * stays as it is; Infinity for an open TCP socket's flow. */
  private dueSec(proto: number, sock: number, closed: bigint, last: bigint, ended = false): number {
    let at: bigint;
    if (closed) at = (closed > last ? closed : last) + this.closedNs;
    else if (proto === 6) {
      // An open socket's flow stays, unless its packets say the connection ended and no
      // close came: the collector then checks it (closeSuspect()).
      if (sock !== 0) return ended && this.closes ? Number((last + this.closeCheckNs) / 1_000_000_000n) : Infinity;
      at = last + this.tcpIdleNs;
    } else at = last + this.idleNs;
    return Number(at / 1_000_000_000n);
  }

  private dueOf(kv: DataView, ko: number, vv: DataView, vo: number): number {
    return this.dueSec(
      kv.getUint8(ko + FLOW_KEY.fields.proto.offset), vv.getUint8(vo + FLOW.fields.sock_state.offset),
      vv.getBigUint64(vo + FLOW.fields.closed_ns.offset, true), vv.getBigUint64(vo + FLOW.fields.last_ns.offset, true), tcpEnded(vv, vo),
    );
  }

  /** An open TCP socket's flow whose packets say the connection ended (FIN both ways, or
   * a reset) and that has been silent long enough, with no close event: the kernel may
   * have missed the close (reconcileCloses()). */
  private closeSuspect(nowNs: bigint, proto: number, sock: number, closed: bigint, last: bigint, vv: DataView, vo: number): boolean {
    return this.closes !== null && proto === 6 && sock !== 0 && closed === 0n && nowNs - last >= this.closeCheckNs && tcpEnded(vv, vo);
  }

  /**
   * The close records of the suspects the kernel confirms are gone (or, when it cannot
   * tell, that have been silent longer than TCP retransmits), each passed to the
   * reconciler's `emit` after the flow is marked closed in the kernel's table, as the
   * kernel's own close does. A suspect whose socket still exists (LAST_ACK or CLOSING,
   * retransmitting its FIN; or an ignored reset) is looked at again a minute later.
   */
  private reconcileCloses(suspects: Buffer[]): number {
    const r = this.closes;
    if (!r || suspects.length === 0) return 0;
    const s = flowScratch();
    const { kb, vb, kv, vv } = s;
    const tg = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;
    let n = 0;
    let asked = 0;
    for (const key of suspects) {
      const k = keyString(key, 0);
      if (asked === MAX_CLOSE_CHECKS_PER_RUN) {
        // Enough socket-table questions for one collection (each is a few syscalls on the
        // event loop): the rest are due at the next.
        if (this.readFlow(k, s)) this.index.update(k, vv.getUint32(tg, true), Number(this.now() / 1_000_000_000n));
        continue;
      }
      if (!this.readFlow(k, s)) continue;
      const nowNs = this.now();
      const proto = kv.getUint8(FLOW_KEY.fields.proto.offset);
      const sock = vv.getUint8(FLOW.fields.sock_state.offset);
      const last = vv.getBigUint64(FLOW.fields.last_ns.offset, true);
      if (!this.closeSuspect(nowNs, proto, sock, vv.getBigUint64(FLOW.fields.closed_ns.offset, true), last, vv, 0)) continue;
      this.closeChecks.checked++;
      const later = Number(nowNs / 1_000_000_000n) + CLOSE_RECHECK_SEC;
      if (r.verify) {
        asked++;
        const state = r.verify(kb);
        if (state !== null && state !== TCP_TIME_WAIT && state !== TCP_CLOSE && state !== TCP_LISTEN) {
          this.index.update(k, vv.getUint32(tg, true), later);
          this.closeChecks.stillOpen++;
          continue;
        }
        // Gone. A close the kernel reported meanwhile marked the flow first (emit_close
        // does so before the socket goes): read it again.
        if (!this.readFlow(k, s) || vv.getBigUint64(FLOW.fields.closed_ns.offset, true) !== 0n) continue;
      } else if (!finBothWays(vv, 0)) {
        // A reset alone, and no way to ask: an ignored (out-of-window) reset leaves a live
        // connection behind, so only FINs both ways count here.
        this.index.update(k, vv.getUint32(tg, true), later);
        this.closeChecks.stillOpen++;
        continue;
      }
      const rec = closeRecord(kb, vv, this.bootMinusMono());
      vv.setBigUint64(FLOW.fields.closed_ns.offset, nowNs, true);
      vv.setUint8(FLOW.fields.sock_state.offset, TCP_CLOSE);
      this.map.update(kb, vb);
      this.readFlow(k, s);
      this.index.update(k, vv.getUint32(tg, true), this.dueOf(kv, 0, vv, 0));
      this.closeChecks.inferred++;
      n++;
      r.emit(rec);
    }
    return n;
  }

  /**
   * A walk of every flow that also refills the index when it is not trusted (one sync at a
   * time). The counters are read before the walk: a change during it leaves the index
   * untrusted, and the next reader walks again.
   */
  private async scan(fn: (kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array) => void, chunk?: number): Promise<void> {
    const gen = this.gen();
    // Refill only once the counters held still since the previous walk: under a steady
    // stream of new flows they move between every two walks, and a refill (a few hundred ns
    // per flow) would be thrown away each time (bench/attribution). With the dirty ring the
    // generation moves only when its stream breaks: refill at once.
    const quiet = gen !== undefined && (this.dirty !== null || gen === this.lastScanGen);
    this.lastScanGen = gen;
    const fill = this.dirty !== null && !this.mirrorTrusted();
    const sync = quiet && !this.index.syncing && (fill || !this.index.trusted(gen));
    if (!sync) return this.walk(fn, chunk);
    // The copy is exact only for changes the ring reports after the walk read a flow: the
    // epoch must be running (the kernel pushes nothing at epoch 0) and past every count the
    // walk may miss. A fill by the collector's walk, before any read advanced the epoch,
    // missed every flow created after it (integration/handoff found it).
    if (fill) {
      await this.dirty!.ring.advance();
      if (this.index.syncing) return this.walk(fn, chunk); // another fill began meanwhile
    }
    const tg = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;
    this.index.beginSync();
    if (fill) {
      this.mirror.reset();
      this.mirrorGen = null;
      this.indexStats.fullWalks++;
    }
    try {
      await this.walk((kv, ko, vv, vo, kb, vb) => {
        const k = keyString(kb, ko);
        this.index.see(k, vv.getUint32(vo + tg, true), this.dueOf(kv, ko, vv, vo));
        if (fill) this.mirror.put(k, kv, ko, vv, vo, kb, vb);
        fn(kv, ko, vv, vo, kb, vb);
      }, chunk);
    } catch (err) {
      this.index.abortSync();
      if (fill) this.mirror.reset();
      throw err;
    }
    await this.index.endSync(gen);
    if (fill) this.mirrorGen = gen;
  }

  /**
   * Reads flow `k` into `s` (one lookup). A flow gone (collected, or evicted by the LRU)
   * leaves the index and the kept copy; one read replaces its copy. The refresh, the index's
   * per-pid reads and the due-only collector share this bookkeeping.
   */
  private readFlow(k: string, s: FlowScratch): boolean {
    keyBytes(k, s.kb);
    return this.afterRead(k, s, this.map.lookup(s.kb, s.vb) !== null);
  }

  /**
   * A refresh read flow `k` (its value in `vv`): history's next listing reads it again, unless
   * it is closed and its counts are those of the close event the kernel queued for it (the
   * value's close_sum, written by the close's program with the event: bpf/flows.h): then
   * history has its final counts from that event and a listing would add nothing (at 10k
   * connections/s nearly every flow a refresh read was such a short flow, about 20 us of the
   * daemon each in a listing: docs/benchmarks.md). Counts only grow, so equal sums are equal
   * counts; counts that grew after the close are read and listed as before, and so is a
   * close whose event could not be queued (close_sum 0). Until December 2026 the daemon
   * remembered the close events it published, by key, in a table of its own and looked each
   * read flow up in it: 137 ms of the main thread in 50 s to 189 ms in 40 s at 10k
   * closes/s in the CPU profiles, mostly cache misses (docs/benchmarks.md "The closes
   * history has, marked in the kernel").
   */
  private noteChanged(k: string, vv: DataView): void {
    const c = this.changes;
    if (c === null) return;
    const marked = u64(vv, FLOW.fields.close_sum.offset);
    if (marked !== 0 && u64(vv, FLOW.fields.closed_ns.offset) !== 0 && countsSum(vv, 0) === marked) {
      c.changed.delete(k); // read before its close too: nothing since
      return;
    }
    c.changed.add(k);
  }

  /** readFlow()'s bookkeeping for flow `k`, read into `s` (`found`: it was there). */
  private afterRead(k: string, s: FlowScratch, found: boolean): boolean {
    if (!found) {
      this.index.remove(k);
      if (this.mirrorGen !== null) this.mirror.remove(k);
      this.changes?.gone.set(k, Date.now());
      return false;
    }
    if (this.mirrorGen !== null) this.mirror.put(k, s.kv, 0, s.vv, 0, s.kb, s.vb);
    return true;
  }

  /**
   * Reads `keys[from]` .. `keys[from + n - 1]` (n at most FlowBatchReader.BATCH) and calls
   * `each(k, found)` for each in order, `s` holding the flow when found: all in one batch
   * when the batch reader runs, else one lookup each. `book`: readFlow()'s bookkeeping
   * (index, copy, changes) for each, before `each`. A batch that fails switches to lookups
   * for good (status.flowIndex.reads says why) and is read again that way.
   */
  private readSome(keys: readonly string[], from: number, n: number, s: FlowScratch, book: boolean, each: (k: string, found: boolean) => void): void {
    const r = this.batch;
    if (r) {
      try {
        r.read(keys, from, n);
      } catch (err) {
        this.batch = null;
        this.batchReason = `a batch read failed: ${(err as Error).message}`;
        this.onBatchFailure?.(err as Error);
        return this.readSome(keys, from, n, s, book, each);
      }
      this.batchStats.runs++;
      this.batchStats.flows += n;
      for (let j = 0; j < n; j++) {
        const k = keys[from + j]!;
        const found = r.take(j, s.vb, s.kb);
        each(k, book ? this.afterRead(k, s, found) : found);
      }
      return;
    }
    for (let j = 0; j < n; j++) {
      const k = keys[from + j]!;
      keyBytes(k, s.kb);
      const found = this.map.lookup(s.kb, s.vb) !== null;
      each(k, book ? this.afterRead(k, s, found) : found);
    }
  }

  /** readSome() over all of `keys`, the event loop getting a turn every `every` flows (a
   * multiple of the batch). */
  private async readAll(keys: readonly string[], s: FlowScratch, book: boolean, each: (k: string, found: boolean) => void, every = YIELD_EVERY): Promise<void> {
    const B = FlowBatchReader.BATCH;
    for (let i = 0; i < keys.length; i += B) {
      if (i > 0 && i % every === 0) await yieldTurn();
      this.readSome(keys, i, Math.min(B, keys.length - i), s, book, each);
    }
  }

  /**
   * The flows of one pid through the index: each flow it lists read by key (readSome(): fresh counters),
   * or false when the index is not trusted. A flow found gone leaves the index; one found
   * with another owner moves.
   */
  private byIndex(pid: number, fn: (kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array) => void): boolean {
    if (!this.index.trusted(this.gen())) return false;
    const s = flowScratch();
    const { kb, vb, kv, vv } = s;
    const tg = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;
    const keys = this.index.keysOf(pid); // a copy: reads may move keys to other pids
    for (let i = 0; i < keys.length; i += FlowBatchReader.BATCH) {
      this.readSome(keys, i, Math.min(FlowBatchReader.BATCH, keys.length - i), s, true, (k, found) => {
        if (!found) return;
        const owner = vv.getUint32(tg, true);
        if (owner !== pid) {
          this.index.update(k, owner, this.dueOf(kv, 0, vv, 0));
          return;
        }
        fn(kv, 0, vv, 0, kb, vb);
      });
    }
    return true;
  }

  /**
   * An identity lookup for one query: the resolver is asked once per cgroup. `missed`
   * collects the cgroups it could not name yet (a walk of the hierarchy has started for them);
   * `settle()` waits for it and forgets what this query remembered of them.
   */
  private identities(): { of: (cgroupId: string | null, pid: number | null) => OwnerIdentity; missed: (id: OwnerIdentity, cgroupId: string | null) => boolean; settle: () => Promise<boolean> } {
    const src = this.identity;
    const memo = new Map<string, OwnerIdentity>();
    const misses = new Set<string>();
    return {
      of: (cgroupId, pid) => {
        if (cgroupId === null || !src) return NO_IDENTITY;
        let id = memo.get(cgroupId);
        if (id === undefined) {
          id = src.of(cgroupId, pid);
          memo.set(cgroupId, id);
          if (id.cgroupPath === null && cgroupId !== '0') misses.add(cgroupId);
        }
        return id;
      },
      missed: (id, cgroupId) => cgroupId !== null && id.cgroupPath === null && misses.has(cgroupId),
      settle: async () => {
        if (!src?.settle || misses.size === 0) return false;
        await src.settle(misses);
        for (const m of misses) memo.delete(m);
        misses.clear();
        return true;
      },
    };
  }

  /** Flow timestamps (CLOCK_MONOTONIC_COARSE, see bpf/flows.h) -> wall-clock ms. */
  private readonly wall = new WallClock(CLOCK_MONOTONIC);
  private clock(): (ns: bigint) => number {
    this.wall.refresh();
    return (ns: bigint) => this.wall.toMs(ns);
  }

  /** Walks every flow entry, yielding to the event loop between batches; `fn` gets views
   * over the chunk and the entry's key/value offsets. */
  private walk(fn: (kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array) => void, chunk = 4096): Promise<void> {
    return this.map.forEachChunkAsync(({ keys, values, count }) => {
      const kv = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
      const vv = new DataView(values.buffer, values.byteOffset, values.byteLength);
      for (let i = 0; i < count; i++) fn(kv, i * FLOW_KEY.size, vv, i * FLOW.size, keys, values);
    }, chunk);
  }

  async query(q: ListQuery = {}): Promise<{ flows: Flow[]; total: number; matched: number }> {
    const toMs = this.clock();
    const identities = this.identities();
    const ow = FLOW.fields.owner.offset;
    const out: Flow[] = [];
    // Flows whose owner's cgroup was not named yet: filtered once the resolver has looked.
    const pending: Flow[] = [];
    let total = 0;
    const nowMs = Date.now();
    const visit = (kv: DataView, ko: number, vv: DataView, vo: number, kbytes: Uint8Array, vbytes: Uint8Array): void => {
      total++;
      // Cheap filters on raw bytes first.
      if (q.pid !== undefined && vv.getUint32(vo + ow + OWNER.fields.tgid.offset, true) !== q.pid) return;
      if (q.uid !== undefined && (!ownedByProcess(vv.getUint8(vo + ow + OWNER.fields.how.offset)) || vv.getUint32(vo + ow + OWNER.fields.uid.offset, true) !== q.uid)) return;
      if (q.protocol !== undefined && kv.getUint8(ko + FLOW_KEY.fields.proto.offset) !== q.protocol) return;
      const closedNs = vv.getBigUint64(vo + FLOW.fields.closed_ns.offset, true);
      if (q.includeClosed === false && closedNs) return;
      const family = kv.getUint8(ko + FLOW_KEY.fields.family.offset);
      const proto = kv.getUint8(ko + FLOW_KEY.fields.proto.offset);
      const isIcmp = proto === 1 || proto === 58;
      const lport = kv.getUint16(ko + FLOW_KEY.fields.lport.offset, true);
      const rport = kv.getUint16(ko + FLOW_KEY.fields.rport.offset, true);
      if (q.port !== undefined && (isIcmp || (lport !== q.port && rport !== q.port))) return;
      if (q.remoteAddr && !inCidr(family, kbytes, ko + FLOW_KEY.fields.raddr.offset, q.remoteAddr)) return;
      if (q.localAddr && !inCidr(family, kbytes, ko + FLOW_KEY.fields.laddr.offset, q.localAddr)) return;
      const how = vv.getUint8(vo + ow + OWNER.fields.how.offset);
      const owned = ownedByProcess(how);
      const comm = owned ? cString(vbytes, vo + ow + OWNER.fields.comm.offset, 16) : how === HOW_KERNEL ? KERNEL_COMM : null;
      if (q.comm !== undefined && comm !== q.comm) return;
      const ifindex = vv.getUint32(vo + FLOW.fields.ifindex.offset, true);
      const iface = this.ifname(ifindex);
      if (q.interface !== undefined && iface !== q.interface) return;

      const tgid = owned ? vv.getUint32(vo + ow + OWNER.fields.tgid.offset, true) : null;
      const cgroupId = owned ? vv.getBigUint64(vo + ow + OWNER.fields.cgroup_id.offset, true).toString() : null;
      const ident = identities.of(cgroupId, tgid);
      const unnamed = identities.missed(ident, cgroupId);
      if (q.identity && !unnamed && !q.identity(ident)) return;
      const proc = tgid !== null ? this.procs.lookup(tgid) : undefined;
      const direction = vv.getUint8(vo + FLOW.fields.direction.offset);
      const flags = vv.getUint8(vo + FLOW.fields.flags.offset);
      const flow: Flow = {
        protocol: protocolName(proto),
        family: family === AF_INET ? 'ipv4' : 'ipv6',
        localAddr: formatIpAt(kbytes, ko + FLOW_KEY.fields.laddr.offset, family),
        localPort: isIcmp ? null : lport,
        remoteAddr: formatIpAt(kbytes, ko + FLOW_KEY.fields.raddr.offset, family),
        remotePort: isIcmp ? null : rport,
        direction: DIRECTIONS[direction] ?? 'unknown',
        interface: iface,
        pid: tgid,
        tid: owned ? vv.getUint32(vo + ow + OWNER.fields.pid.offset, true) : null,
        comm,
        uid: owned ? vv.getUint32(vo + ow + OWNER.fields.uid.offset, true) : null,
        gid: owned ? vv.getUint32(vo + ow + OWNER.fields.gid.offset, true) : null,
        cgroupId,
        attributedBy: ATTRIBUTIONS[how] ?? 'none',
        ppid: proc?.ppid ?? null,
        exe: proc?.exe ?? null,
        state: proto === 6 ? tcpState(vv, vo, closedNs, direction) : closedNs ? 'closed' : 'active',
        tcpFlags: { tx: flagNames(vv.getUint8(vo + FLOW.fields.tcp_flags_tx.offset)), rx: flagNames(vv.getUint8(vo + FLOW.fields.tcp_flags_rx.offset)) },
        txBytes: Number(vv.getBigUint64(vo + FLOW.fields.tx_bytes.offset, true)),
        rxBytes: Number(vv.getBigUint64(vo + FLOW.fields.rx_bytes.offset, true)),
        txPackets: Number(vv.getBigUint64(vo + FLOW.fields.tx_packets.offset, true)),
        rxPackets: Number(vv.getBigUint64(vo + FLOW.fields.rx_packets.offset, true)),
        fragments: vv.getUint32(vo + FLOW.fields.frags.offset, true),
        ipOptions: (flags & FLOW_F.IP_OPTIONS) !== 0,
        ipv6ExtHeaders: (flags & FLOW_F.IPV6_EXT) !== 0,
        firstSeenAt: new Date(toMs(vv.getBigUint64(vo + FLOW.fields.first_ns.offset, true))).toISOString(),
        lastSeenAt: new Date(toMs(vv.getBigUint64(vo + FLOW.fields.last_ns.offset, true))).toISOString(),
        closedAt: closedNs ? new Date(toMs(closedNs)).toISOString() : null,
        ...NO_NAMES,
        cgroupPath: ident.cgroupPath,
        unit: ident.unit,
        userUnit: ident.userUnit,
        slice: ident.slice,
        container: ident.container,
        app: ident.app,
        remoteGeo: null,
      };
      if (this.annotator) Object.assign(flow, this.annotator.fields(flow, nowMs));
      if (isIcmp) {
        flow.icmpType = rport;
        flow.icmpId = lport;
      }
      if (unnamed) pending.push(flow);
      else if (q.onFlow) q.onFlow(flow);
      else out.push(flow);
    };
    // By pid: the index when it is the table (`total` is then the index's size); else a walk.
    if (q.pid !== undefined) await this.catchUp();
    if (q.keys) await this.byKeys(q.keys, visit);
    else if (q.pid !== undefined && this.byIndex(q.pid, visit)) total = this.index.size;
    else await this.scan(visit, q.chunk);
    if (pending.length && (await identities.settle())) {
      for (const f of pending) {
        const ident = identities.of(f.cgroupId, f.pid);
        if (q.identity && !q.identity(ident)) continue;
        Object.assign(f, { cgroupPath: ident.cgroupPath, unit: ident.unit, userUnit: ident.userUnit, slice: ident.slice, container: ident.container, app: ident.app });
        if (q.onFlow) q.onFlow(f);
        else out.push(f);
      }
    } else if (!q.identity) {
      if (q.onFlow) pending.forEach(q.onFlow);
      else out.push(...pending);
    }
    const matched = out.length;
    sortFlows(out, q.sort ?? 'bytes');
    return { flows: q.limit !== undefined ? out.slice(0, q.limit) : out, total, matched };
  }

  /** Reads each of `keys` by key (readAll(); gone ones skipped), yielding the event loop
   * every LIST_YIELD_EVERY flows (building a Flow costs a few us). */
  private async byKeys(keys: Iterable<string>, fn: (kv: DataView, ko: number, vv: DataView, vo: number, kb: Uint8Array, vb: Uint8Array) => void): Promise<void> {
    const s = flowScratch();
    await this.readAll([...keys], s, false, (_k, found) => {
      if (found) fn(s.kv, 0, s.vv, 0, s.kb, s.vb);
    }, LIST_YIELD_EVERY);
  }

  /**
   * History's listing (docs/history.md "Listings"): the flows whose counts or state changed
   * since the previous call, and the flows that left the table since then (every `gone`
   * before the first `flow`: a key gone and taken again by a new flow is then seen in that
   * order). The changed flows are the keys the dirty ring's refreshes read (every count
   * reaches a refresh: dirty.ts), read again here by key. `full`: every flow was listed
   * instead (the first call, no dirty ring, or its stream broke or was replaced since the
   * previous call: pushes may be missing), and a flow not listed may have left the table
   * unannounced. Flows are built and handed over one by one, nothing kept, the event loop
   * getting a turn every LIST_YIELD_EVERY flows (or LIST_CHUNK walked).
   */
  async listChanges(sink: FlowChangeSink): Promise<{ full: boolean; listed: number }> {
    await this.catchUp();
    const d = this.dirty;
    const c = this.changes;
    const exact = c !== null && d !== null && c.dirty === d && c.breaks === d.breaks;
    this.changes = { changed: new Set(), gone: new Map(), dirty: d, breaks: d?.breaks ?? 0 };
    sink.begin(!exact);
    if (c) {
      const kb = Buffer.alloc(FLOW_KEY.size);
      for (const [k, at] of c.gone) sink.gone(goneFlow(keyBytes(k, kb), at));
    }
    let listed = 0;
    const count = (f: Flow) => {
      listed++;
      sink.flow(f);
    };
    if (exact && c && d) {
      // Keys a refresh set aside (read after an index sync): changed too, not read yet.
      for (const k of d.carry) c.changed.add(k);
      await this.query({ includeClosed: true, keys: c.changed, onFlow: count });
    } else await this.query({ includeClosed: true, onFlow: count, chunk: LIST_CHUNK });
    return { full: !exact, listed };
  }

  /**
   * Per-process totals: live flows plus flows already collected (so totals only grow),
   * each with the identity of the cgroup of its most recent flow. `remotes`: also each
   * process's live flows per remote address.
   */
  async processes(q: ProcessQuery = {}, walk = false): Promise<ProcessTraffic[]> {
    const toMs = this.clock();
    const identities = this.identities();
    // Keyed by pid; unknown owners under null, the kernel under -2 (as in `retired`).
    const by = new Map<number | null, Acc>();
    const ow = FLOW.fields.owner.offset;
    const a = this.annotator;
    const get = (key: number | null, comm: string | null, uid: number | null) => {
      let t = by.get(key);
      if (!t) {
        const pid = key !== null && key >= 0 ? key : null;
        const proc = pid !== null ? this.procs.lookup(pid) : undefined;
        t = { pid, comm, uid, exe: proc?.exe ?? null, cgroupId: null, flows: 0, openFlows: 0, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, lastSeenAt: null, places: [], http: null, lastNs: 0n, cgroupNs: -1n };
        by.set(key, t);
      }
      return t;
    };
    // With the dirty ring, the per-owner totals kept from it when they are the table (a
    // refresh reads the flows that changed); else a walk, which refills them on the way.
    let fromMirror = false;
    if (this.dirty && !walk) {
      await this.catchUp();
      fromMirror = this.mirrorTrusted();
    }
    // The last answer again when nothing it was built from moved (a quiet system: `top`
    // then costs a few compares per row, not a row built per owner).
    const shape = fromMirror && !q.identity ? `${q.uid ?? ''}/${q.remotes ? 1 : 0}` : null;
    const http = fromMirror ? this.liveHttp(q.uid) : null;
    const versions = { mirror: this.mirror.version, retired: this.retiredVersion };
    if (shape !== null) {
      const again = this.againOrNull(shape, versions, http, identities);
      if (again) return again;
    }
    if (fromMirror) this.fromMirror(q, by, get, http);
    else await this.scan((kv, ko, vv, vo, kbytes, vbytes) => {
      const how = vv.getUint8(vo + ow + OWNER.fields.how.offset);
      const owned = ownedByProcess(how);
      const uid = owned ? vv.getUint32(vo + ow + OWNER.fields.uid.offset, true) : null;
      if (q.uid !== undefined && uid !== q.uid) return;
      const key = owned ? vv.getUint32(vo + ow + OWNER.fields.tgid.offset, true) : how === HOW_KERNEL ? RETIRED_KERNEL : null;
      // The comm is decoded once per process, not once per flow (`top` asks every second).
      const t = by.get(key) ?? get(key, owned ? cString(vbytes, vo + ow + OWNER.fields.comm.offset, 16) : how === HOW_KERNEL ? KERNEL_COMM : null, uid);
      const tx = u64(vv, vo + FLOW.fields.tx_bytes.offset);
      const rx = u64(vv, vo + FLOW.fields.rx_bytes.offset);
      t.flows++;
      if (vv.getUint32(vo + FLOW.fields.closed_ns.offset, true) === 0 && vv.getUint32(vo + FLOW.fields.closed_ns.offset + 4, true) === 0) t.openFlows++;
      t.txBytes += tx;
      t.rxBytes += rx;
      // The flow's HTTP summary, in the same walk: the port pair is checked first, so a flow
      // without one costs two reads and a Map lookup, and allocates nothing.
      if (a && kv.getUint8(ko + FLOW_KEY.fields.proto.offset) === 6) {
        const lport = kv.getUint16(ko + FLOW_KEY.fields.lport.offset, true);
        const rport = kv.getUint16(ko + FLOW_KEY.fields.rport.offset, true);
        if (a.mayHaveHttp(lport, rport)) {
          const h = a.http(flowIdentity(kv, ko, kbytes, owned ? key : null));
          if (h) t.http = addHttp(t.http, h);
        }
      }
      if (q.remotes) {
        // Grouped by the address's bytes; formatted once per process and address, not per flow.
        const family = kv.getUint8(ko + FLOW_KEY.fields.family.offset);
        const ra = ko + FLOW_KEY.fields.raddr.offset;
        const rk = family === AF_INET ? kv.getUint32(ra) : Buffer.from(kbytes.buffer, kbytes.byteOffset + ra, 16).toString('latin1');
        const m = (t.byRemote ??= new Map());
        const r = m.get(rk);
        if (r) {
          r.flows++;
          r.txBytes += tx;
          r.rxBytes += rx;
        } else m.set(rk, { addr: formatIpAt(kbytes, ra, family), flows: 1, txBytes: tx, rxBytes: rx });
      }
      t.txPackets += u64(vv, vo + FLOW.fields.tx_packets.offset);
      t.rxPackets += u64(vv, vo + FLOW.fields.rx_packets.offset);
      const last = vv.getBigUint64(vo + FLOW.fields.last_ns.offset, true);
      if (last > t.lastNs) t.lastNs = last;
      if (owned && last > t.cgroupNs) {
        t.cgroupNs = last;
        t.cgroupId = vv.getBigUint64(vo + ow + OWNER.fields.cgroup_id.offset, true).toString();
      }
    });
    for (const [pid, r] of this.retiredEntries()) {
      if (q.uid !== undefined && r.uid !== q.uid) continue;
      const t = get(pid === RETIRED_UNKNOWN ? null : pid, r.comm || null, pid < 0 ? null : r.uid);
      if (t.cgroupId === null) t.cgroupId = r.cgroupId;
      addCounts(t, r);
      if (r.http) t.http = addHttp(t.http, r.http);
      if (r.lastNs > t.lastNs) t.lastNs = r.lastNs;
    }
    for (const t of by.values()) identities.of(t.cgroupId, t.pid);
    await identities.settle(); // cgroups not named yet: one walk of the hierarchy, at most
    const wall = this.wall.generation; // the offset toMs() converts with below
    const out: ProcessTraffic[] = [];
    // A walk builds every row (the independent answer tests compare the kept rows with).
    const kept = walk ? null : this.rows.shape(q.uid, q.remotes === true);
    for (const [key, t] of by) {
      const ident = identities.of(t.cgroupId, t.pid);
      if (q.identity && !q.identity(ident)) continue;
      const ms = t.lastNs ? toMs(t.lastNs) : null;
      const again = kept && this.rows.reuse(kept, key, t, ms, ident, q.remotes ? (t.byRemote?.values() ?? []) : null);
      if (again) {
        out.push(again);
        continue;
      }
      // Spelled out, in the order the fields always had: an object rest or spread of 1000
      // rows per `top` refresh was the largest cost of processes() (V8 copies them through
      // its runtime, not inline).
      const row: ProcessTraffic = {
        pid: t.pid, comm: t.comm, uid: t.uid, exe: t.exe, cgroupId: t.cgroupId,
        flows: t.flows, openFlows: t.openFlows, txBytes: t.txBytes, rxBytes: t.rxBytes, txPackets: t.txPackets, rxPackets: t.rxPackets,
        lastSeenAt: ms !== null ? new Date(ms).toISOString() : null,
        places: t.places, http: t.http,
        cgroupPath: ident.cgroupPath, unit: ident.unit, userUnit: ident.userUnit, slice: ident.slice, container: ident.container, app: ident.app,
      };
      if (q.remotes) row.remotes = t.byRemote ? [...t.byRemote.values()] : [];
      if (kept) this.rows.keep(kept, key, row, ms);
      out.push(row);
    }
    if (kept) this.rows.prune(kept, by);
    out.sort(compareProcessRows);
    if (shape !== null) {
      this.answers.delete(shape);
      this.answers.set(shape, { ...versions, wall, http, rows: out.slice() });
      if (this.answers.size > MAX_ANSWERS) this.answers.delete(this.answers.keys().next().value!);
    }
    return out;
  }

  /**
   * The last answer of this shape, when what it was built from has not moved since: the
   * kept copy and the retired totals (their versions), the wall clock's offset (the rows'
   * lastSeenAt), the live flows' HTTP summaries per owner (summed again: they change
   * without the flow changing), and per row its executable (the process table) and its
   * identity (the resolver; a cgroup it could not name sends the call the long way, which
   * looks again). Else null. Exact: every input of a row is one of these.
   */
  private againOrNull(shape: string, versions: { mirror: number; retired: number }, http: Map<number | null, ProcessHttpSummary> | null, identities: ReturnType<FlowTable['identities']>): ProcessTraffic[] | null {
    const a = this.answers.get(shape);
    if (!a || a.mirror !== versions.mirror || a.retired !== versions.retired || a.wall !== this.wall.generation || !sameHttpBy(a.http, http)) return null;
    for (const r of a.rows) {
      if (r.pid !== null && (this.procs.lookup(r.pid)?.exe ?? null) !== r.exe) return null;
      const id = identities.of(r.cgroupId, r.pid);
      if (identities.missed(id, r.cgroupId)) return null;
      if (id.cgroupPath !== r.cgroupPath || id.unit !== r.unit || id.userUnit !== r.userUnit || id.slice !== r.slice || id.container !== r.container || id.app !== r.app) return null;
    }
    this.answeredAgain++;
    return a.rows.slice();
  }

  /**
   * processes()' totals from the mirror: per (owner, uid) sums, merged per owner (the
   * comm, uid and cgroup of the owner's most recent flow), and the HTTP summaries of the
   * TCP flows whose port pair has one.
   */
  private fromMirror(q: ProcessQuery, by: Map<number | null, Acc>, get: (key: number | null, comm: string | null, uid: number | null) => Acc, http: Map<number | null, ProcessHttpSummary> | null): void {
    for (const v of this.mirror.views(q.uid)) {
      const key = v.group === GROUP_UNKNOWN ? null : v.group;
      const fresh = !by.has(key);
      const t = by.get(key) ?? get(key, v.comm, v.uid);
      addCounts(t, v);
      t.openFlows += v.openFlows;
      const last = BigInt(v.lastNs);
      if (last > t.lastNs) t.lastNs = last;
      if (v.topNs >= 0 && BigInt(v.topNs) > t.cgroupNs) {
        t.cgroupNs = BigInt(v.topNs);
        t.cgroupId = v.cgroupId;
        if (!fresh) {
          t.comm = v.comm;
          t.uid = v.uid;
        }
      }
      if (q.remotes) {
        const m = (t.byRemote ??= new Map());
        for (const [rk, r] of v.remotes) {
          const e = m.get(rk);
          if (e) {
            e.flows += r.flows;
            e.txBytes += r.txBytes;
            e.rxBytes += r.rxBytes;
          } else m.set(rk, { ...r });
        }
      }
    }
    if (!http) return;
    for (const [key, h] of http) {
      const t = by.get(key);
      if (t) t.http = addHttp(t.http, h);
    }
  }

  /**
   * The HTTP summaries of the kept flows, summed per owner (null: no annotator). They live
   * with the L7 feature and change without the flow changing: the store lists the flows
   * that have one, each found in the copy by its key (as the walk matches a flow whose
   * formatted identity is the summary's).
   */
  private liveHttp(uid: number | undefined): Map<number | null, ProcessHttpSummary> | null {
    const a = this.annotator;
    if (!a) return null;
    const out = new Map<number | null, ProcessHttpSummary>();
    const kb = Buffer.alloc(FLOW_KEY.size);
    a.httpFlows((f, h) => {
      if (f.protocol !== 'tcp') return;
      const k = tcpKeyOf(f, kb);
      const o = k !== null ? this.mirror.ownerOf(k) : undefined;
      if (o === undefined) return;
      if (uid !== undefined && o.uid !== uid) return;
      const key = o.group === GROUP_UNKNOWN ? null : o.group;
      out.set(key, addHttp(out.get(key) ?? null, h));
    });
    return out;
  }

  /**
   * Removes flows closed longer than the retention time, and flows idle longer than their
   * idle timeout (TCP flows whose socket is still open are kept however quiet). Their
   * counts go to the per-process totals. Returns the number removed.
   *
   * While the index is trusted (no flow created, reopened, patched or closed since it was
   * filled) only the flows due by now are read, by key (readSome()): a flow's due time is the
   * earliest time the rule can hold for the values it had, and its values only move that
   * time later (last_ns grows, a socket state appears) except through a counted change
   * (a close, a reopen), which makes the index untrusted. Otherwise the table is walked
   * once, which refills the index: the same rule, applied to every flow, as before.
   */
  async gc(): Promise<number> {
    await this.catchUp();
    return this.index.trusted(this.gen()) ? this.gcDue() : this.gcWalk();
  }

  /** The collector as it was: one walk of every flow (and an index sync on the way). */
  async gcWalk(): Promise<number> {
    const nowNs = this.now();
    const doomed: Buffer[] = [];
    const gone: FlowIdentity[] = [];
    const counts: RetiredCount[] = [];
    const suspects: Buffer[] = [];
    const a = this.annotator;
    const nowMs = Date.now();
    await this.scan((kv, ko, vv, vo, kb, vbytes) => {
      const closed = vv.getBigUint64(vo + FLOW.fields.closed_ns.offset, true);
      const last = vv.getBigUint64(vo + FLOW.fields.last_ns.offset, true);
      const proto = kv.getUint8(ko + FLOW_KEY.fields.proto.offset);
      const sock = vv.getUint8(vo + FLOW.fields.sock_state.offset);
      const expired = this.expired(nowNs, proto, sock, closed, last);
      const pid = this.ownerPid(vv, vo);
      if (!expired) {
        if (this.closeSuspect(nowNs, proto, sock, closed, last, vv, vo)) suspects.push(Buffer.from(kb.subarray(ko, ko + FLOW_KEY.size)));
        // A live flow of a process with fresh names: let it take its name now.
        if (a && pid !== null && a.wants(pid)) a.fields(flowIdentity(kv, ko, kb, pid), nowMs);
        return;
      }
      doomed.push(Buffer.from(kb.subarray(ko, ko + FLOW_KEY.size)));
      if (a) gone.push(flowIdentity(kv, ko, kb, pid));
      counts.push(retiredCount(vv, vo, vbytes));
    }, GC_CHUNK);
    const n = await this.collect(doomed, gone, counts);
    this.reconcileCloses(suspects);
    return n;
  }

  /** The collector on a trusted index: reads only the flows due by now. */
  async gcDue(): Promise<number> {
    const nowNs = this.now();
    const due = await this.index.takeDue(Number(nowNs / 1_000_000_000n));
    const suspects: Buffer[] = [];
    const doomed: Buffer[] = [];
    const gone: FlowIdentity[] = [];
    const counts: RetiredCount[] = [];
    const a = this.annotator;
    const nowMs = Date.now();
    const s = flowScratch();
    const { kb, vb, kv, vv } = s;
    const tg = FLOW.fields.owner.offset + OWNER.fields.tgid.offset;
    let i = 0;
    try {
      for (; i < due.length; i += FlowBatchReader.BATCH) {
        if (i > 0 && i % YIELD_EVERY === 0) await yieldTurn();
        this.readSome(due, i, Math.min(FlowBatchReader.BATCH, due.length - i), s, true, (k, found) => {
          if (!found) return; // evicted by the LRU
          const closed = vv.getBigUint64(FLOW.fields.closed_ns.offset, true);
          const last = vv.getBigUint64(FLOW.fields.last_ns.offset, true);
          const proto = kv.getUint8(FLOW_KEY.fields.proto.offset);
          const sock = vv.getUint8(FLOW.fields.sock_state.offset);
          if (!this.expired(nowNs, proto, sock, closed, last)) {
            if (this.closeSuspect(nowNs, proto, sock, closed, last, vv, 0)) suspects.push(Buffer.from(kb));
            this.index.update(k, vv.getUint32(tg, true), this.dueSec(proto, sock, closed, last, tcpEnded(vv, 0)));
            return;
          }
          doomed.push(Buffer.from(kb));
          if (a) gone.push(flowIdentity(kv, 0, kb, this.ownerPid(vv, 0)));
          counts.push(retiredCount(vv, 0, vb));
        });
      }
    } finally {
      // A lookup that threw: what was not looked at stays due (a batch is read whole or not).
      if (i < due.length) this.index.requeue(due.slice(i));
    }
    const n = await this.collect(doomed, gone, counts);
    this.reconcileCloses(suspects);
    // Live flows of processes with fresh names take them now (as the walk does).
    if (a) {
      for (const pid of [...this.index.pids()]) {
        if (!a.wants(pid)) continue;
        for (const k of this.index.keysOf(pid)) {
          keyBytes(k, kb);
          if (this.map.lookup(kb, vb) && this.ownerPid(vv, 0) === pid) a.fields(flowIdentity(kv, 0, kb, pid), nowMs);
        }
      }
    }
    return n;
  }

  /** The owner's pid when a process owns the flow. */
  private ownerPid(vv: DataView, vo: number): number | null {
    const ow = vo + FLOW.fields.owner.offset;
    return ownedByProcess(vv.getUint8(ow + OWNER.fields.how.offset)) ? vv.getUint32(ow + OWNER.fields.tgid.offset, true) : null;
  }

  /** Deletes the doomed flows (in slices, the event loop getting a turn in between) and
   * moves their counts to the per-process totals. */
  private async collect(doomed: Buffer[], gone: FlowIdentity[], counts: RetiredCount[]): Promise<number> {
    if (doomed.length === 0) return 0;
    let deleted = 0;
    // Each slice is deleted and retired in one go: totals read between two slices count
    // every collected flow once.
    for (let i = 0; i < doomed.length; i += YIELD_EVERY) {
      if (i > 0) await yieldTurn();
      const slice = doomed.slice(i, i + YIELD_EVERY);
      deleted += this.map.deleteBatch(Buffer.concat(slice), slice.length);
      const goneAt = Date.now();
      for (const k of slice) {
        const ks = keyString(k, 0);
        this.index.remove(ks);
        this.mirror.remove(ks);
        this.changes?.gone.set(ks, goneAt);
      }
      for (let j = i; j < Math.min(i + YIELD_EVERY, counts.length); j++) this.retire(counts[j]!, gone[j]);
    }
    for (const f of gone) this.annotator?.forget(f);
    this.deletedTotal += deleted;
    return deleted;
  }

  /** `f`: the flow's identity when an annotator is set (`gone`, in step with `counts`). */
  private retire(c: RetiredCount, f?: FlowIdentity): void {
    this.retiredVersion++;
    let byInstance = this.retired.get(c.pid);
    if (!byInstance) this.retired.set(c.pid, (byInstance = new Map()));
    // The instance that owned the flow: the first exit of this pid after its owner was learned.
    const learnedMs = c.pid >= 0 && c.learnedNs > 0n ? this.bootWall.toMs(c.learnedNs) : -Infinity;
    const instance = this.exits.get(c.pid)?.find((x) => x >= learnedMs) ?? Infinity;
    let r = byInstance.get(instance);
    if (!r) {
      r = { comm: c.comm, uid: c.uid, cgroupId: c.cgroupId, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, flows: 0, lastNs: 0n, http: null };
      byInstance.set(instance, r);
    }
    const h = f && f.protocol === 'tcp' ? this.annotator?.http(f) : null;
    if (h) r.http = addHttp(r.http, h);
    r.txBytes += c.tx;
    r.rxBytes += c.rx;
    r.txPackets += c.txp;
    r.rxPackets += c.rxp;
    r.flows++;
    if (c.last > r.lastNs) {
      r.lastNs = c.last;
      r.cgroupId = c.cgroupId ?? r.cgroupId;
    }
  }

  /** Every retired total with its pid key, the live instance of a pid first. */
  private *retiredEntries(): Generator<[number, Retired]> {
    for (const [pid, byInstance] of this.retired) {
      const live = byInstance.get(Infinity);
      if (live) yield [pid, live];
      for (const [instance, r] of byInstance) if (instance !== Infinity) yield [pid, r];
    }
  }

  /** Per-process totals of flows already collected, per instance (for tests comparing collectors). */
  retiredTotals(): ReadonlyMap<number, ReadonlyMap<number, Readonly<Retired>>> {
    return this.retired;
  }

  /**
   * The process `pid` exited at `atMs` (wall clock): the totals retired so far for the pid's
   * live instance are that process's; flows learned after it belong to a later one.
   */
  processExited(pid: number, atMs: number): void {
    // Only owners matter (every process exits): one with retired totals or indexed flows,
    // or any while the index is empty (not filled yet).
    if (!this.retired.has(pid) && !this.index.hasPid(pid) && this.index.size > 0) return;
    this.retiredVersion++;
    // Both times are wall-clock: follow a step of the wall clock as the monitor does.
    this.bootWall.refresh();
    let list = this.exits.get(pid);
    if (!list) this.exits.set(pid, (list = []));
    list.push(atMs);
    // Bounded: the process table forgets exits after its retention; a pid exiting more
    // often than that keeps only its recent ones apart.
    if (list.length > MAX_EXITS_PER_PID) list.shift();
    const byInstance = this.retired.get(pid);
    const live = byInstance?.get(Infinity);
    if (byInstance && live) {
      byInstance.delete(Infinity);
      const had = byInstance.get(atMs);
      if (had) mergeRetired(had, live);
      else byInstance.set(atMs, live);
    }
  }

  /**
   * Forgets the retired totals of the process that exited at `exitedAtMs` (called by the
   * process table after its retention), and of earlier processes with that pid; a later
   * process's stay. Without a time: every total of the pid.
   */
  forgetProcess(pid: number, exitedAtMs?: number): void {
    this.retiredVersion++;
    if (exitedAtMs === undefined || Number.isNaN(exitedAtMs)) {
      this.retired.delete(pid);
      this.exits.delete(pid);
      return;
    }
    const list = this.exits.get(pid)?.filter((x) => x > exitedAtMs);
    if (list?.length) this.exits.set(pid, list);
    else this.exits.delete(pid);
    const byInstance = this.retired.get(pid);
    if (!byInstance) return;
    for (const instance of [...byInstance.keys()]) if (instance <= exitedAtMs) byInstance.delete(instance);
    if (byInstance.size === 0) this.retired.delete(pid);
  }

  /** Number of flow entries (one dump). */
  async count(): Promise<number> {
    return this.map.countAsync();
  }
}

/** processes()' per-owner accumulator. */
type Acc = Omit<ProcessTotals, keyof OwnerIdentity> & { lastNs: bigint; cgroupNs: bigint; byRemote?: Map<number | string, RemoteTraffic> };

/** Keys of `retired` totals that are not a pid. */
const RETIRED_UNKNOWN = -1;
const RETIRED_KERNEL = -2;
/** Exits remembered per pid (see processExited()). */
const MAX_EXITS_PER_PID = 8;

/** Adds `from`'s totals to `to` (two instances found to be one). */
function mergeRetired(to: Retired, from: Retired): void {
  addCounts(to, from);
  if (from.http) to.http = addHttp(to.http, from.http);
  if (from.lastNs > to.lastNs) {
    to.lastNs = from.lastNs;
    to.cgroupId = from.cgroupId ?? to.cgroupId;
  }
}

/** The index is refilled by a walk at least this often even when no kernel counter moved:
 * a writer outside the programs (a tool writing emon_flows) would otherwise go unseen. */
const RESYNC_MS = 300_000;

/** processes()' answers kept, one per query shape (uid filter x remotes), as its rows are. */
const MAX_ANSWERS = 8;

interface Answer {
  mirror: number;
  retired: number;
  /** The wall clock's generation the rows' lastSeenAt were converted with. */
  wall: number;
  http: Map<number | null, ProcessHttpSummary> | null;
  /** The rows, sorted (handed out as copies of the array). */
  rows: ProcessTraffic[];
}

function sameHttpBy(a: Map<number | null, ProcessHttpSummary> | null, b: Map<number | null, ProcessHttpSummary> | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.size !== b.size) return false;
  for (const [k, x] of a) {
    const y = b.get(k);
    if (!y || x.requests !== y.requests || x.clientErrors !== y.clientErrors || x.serverErrors !== y.serverErrors || x.requestBytes !== y.requestBytes || x.responseBytes !== y.responseBytes) return false;
  }
  return true;
}
/** Entries per batch of the collector's walk: a chunk full of closed flows costs a few us
 * each to retire (names, totals), so 4096 of them held the event loop for 10-30 ms under
 * 10k connections/s (issue 17's stall); 512 keep a slice to a few ms. */
const GC_CHUNK = 512;

/** flows.closeCheckSec's default, and the silence required when the kernel cannot be asked
 * whether a socket exists: past TCP's longest retransmission gap (TCP_RTO_MAX, 120 s)
 * twice, no close can still come. */
const DEFAULT_CLOSE_CHECK_MS = 5_000;
const UNVERIFIED_CLOSE_CHECK_MS = 300_000;
/** A suspect whose socket still exists (or that the socket table could not answer for) is
 * looked at again after this long. */
const CLOSE_RECHECK_SEC = 60;
/** Socket-table questions per collection at most. */
const MAX_CLOSE_CHECKS_PER_RUN = 512;
const TCP_FIN = 0x01;
const TCP_RST = 0x04;
const TCP_TIME_WAIT = 6;
const TCP_CLOSE = 7;
const TCP_LISTEN = 10;
/** old_state of an inferred close: no TCP state, so readers name it "unknown" (bpf/sockets.h
 * EMON_INFERRED_OLD_STATE: the classifier's closes inferred at a tuple's reuse carry it too). */
const INFERRED_OLD_STATE = 0xff;

/** What the collector needs to report a close the kernel missed (Monitor sets it). */
export interface CloseReconciler {
  /** The socket's TCP state (sock_diag) for a flow key, null when there is none (-1: the
   * question failed; asked again later); null itself when the kernel cannot be asked
   * (flows of every network namespace). */
  verify: ((key: Uint8Array) => number | null) | null;
  /** Takes a close record in the kernel's layout (EVENT_CLOSE). */
  emit: (record: Buffer) => void;
}

function finBothWays(vv: DataView, vo: number): boolean {
  return (vv.getUint8(vo + FLOW.fields.tcp_flags_tx.offset) & vv.getUint8(vo + FLOW.fields.tcp_flags_rx.offset) & TCP_FIN) !== 0;
}

/** The flow's packets say the connection is over: FIN both ways, or a reset either way. */
function tcpEnded(vv: DataView, vo: number): boolean {
  return finBothWays(vv, vo) || ((vv.getUint8(vo + FLOW.fields.tcp_flags_tx.offset) | vv.getUint8(vo + FLOW.fields.tcp_flags_rx.offset)) & TCP_RST) !== 0;
}

/**
 * A close record as bpf/sockets.bpf.c emit_close() writes it, from the flow: its owner,
 * counts, and its first and last packets' times for the duration and the close time. What only the socket knew is not there: the payload counts are 0
 * and the previous state is none (previousState "unknown"), which is how a reader tells
 * an inferred close.
 */
function closeRecord(kb: Uint8Array, vv: DataView, bootMinusMono: bigint): Buffer {
  const E = EVENT_CLOSE.fields;
  const F = FLOW.fields;
  const b = Buffer.alloc(EVENT_CLOSE.size);
  b.writeUInt16LE(EV.CLOSE, E.hdr.offset + EVENT_HDR.fields.type.offset);
  b.writeUInt16LE(EVENT_CLOSE.size, E.hdr.offset + EVENT_HDR.fields.size.offset);
  // The connection ended with its last packet: that is when it closed, not when the
  // collector noticed (flows count in CLOCK_MONOTONIC, records in CLOCK_BOOTTIME).
  const first = vv.getBigUint64(F.first_ns.offset, true);
  const last = vv.getBigUint64(F.last_ns.offset, true);
  b.writeBigUInt64LE(last + bootMinusMono, E.hdr.offset + EVENT_HDR.fields.ts_ns.offset);
  b.set(kb.subarray(0, FLOW_KEY.size), E.key.offset);
  b.set(new Uint8Array(vv.buffer, vv.byteOffset + F.owner.offset, OWNER.size), E.owner.offset);
  b.writeBigUInt64LE(vv.getBigUint64(F.tx_bytes.offset, true), E.tx_bytes.offset);
  b.writeBigUInt64LE(vv.getBigUint64(F.rx_bytes.offset, true), E.rx_bytes.offset);
  b.writeBigUInt64LE(vv.getBigUint64(F.tx_packets.offset, true), E.tx_packets.offset);
  b.writeBigUInt64LE(vv.getBigUint64(F.rx_packets.offset, true), E.rx_packets.offset);
  b.writeBigUInt64LE(first && last > first ? last - first : 0n, E.duration_ns.offset);
  b.writeUInt32LE(vv.getUint32(F.ifindex.offset, true), E.ifindex.offset);
  b.writeUInt8(INFERRED_OLD_STATE, E.old_state.offset);
  b.writeUInt8(1, E.flow_seen.offset);
  b.writeUInt8(vv.getUint8(F.direction.offset), E.direction.offset);
  return b;
}
/** Lookups or deletions between two turns of the event loop. Each read by key costs a
 * lookup and its bookkeeping (5-15 us at 10k connections/s): 4096 of them (a walk's chunk)
 * ran the event loop's thread for up to 62 ms in one piece during the dirty-ring refreshes
 * (bench/attribution's loop probe, docs/benchmarks.md); 1024 still made pieces of 15-18 ms
 * on this loaded 2-core VM (bench/lib/long-tasks.ts); 512 halve them. */
const YIELD_EVERY = 512;

/** History's listing builds a Flow per flow (a few us each): a turn of the event loop every
 * this many read by key, and walk chunks this small for a full listing (512 made pieces of
 * 16-22 ms under 10k connections/s, bench/lib/long-tasks.ts). */
const LIST_YIELD_EVERY = 256;
const LIST_CHUNK = 256;

/** A key found gone, named as history names flows (ICMP: id and type as the ports). */
function goneFlow(kb: Buffer, goneAtMs: number): GoneFlow {
  const family = kb[FLOW_KEY.fields.family.offset]!;
  return {
    protocol: protocolName(kb[FLOW_KEY.fields.proto.offset]!),
    localAddr: formatIpAt(kb, FLOW_KEY.fields.laddr.offset, family), localPort: kb.readUInt16LE(FLOW_KEY.fields.lport.offset),
    remoteAddr: formatIpAt(kb, FLOW_KEY.fields.raddr.offset, family), remotePort: kb.readUInt16LE(FLOW_KEY.fields.rport.offset),
    goneAtMs,
  };
}

/** One collected flow's counts, on their way to the per-process totals. */
interface RetiredCount { pid: number; comm: string; uid: number; cgroupId: string | null; tx: number; rx: number; txp: number; rxp: number; last: bigint; learnedNs: bigint }

function retiredCount(vv: DataView, vo: number, vbytes: Uint8Array): RetiredCount {
  const ow = vo + FLOW.fields.owner.offset;
  const how = vv.getUint8(ow + OWNER.fields.how.offset);
  const owned = ownedByProcess(how);
  return {
    pid: owned ? vv.getUint32(ow + OWNER.fields.tgid.offset, true) : how === HOW_KERNEL ? RETIRED_KERNEL : RETIRED_UNKNOWN,
    comm: owned ? cString(vbytes, ow + OWNER.fields.comm.offset, 16) : how === HOW_KERNEL ? KERNEL_COMM : '',
    uid: owned ? vv.getUint32(ow + OWNER.fields.uid.offset, true) : -1,
    cgroupId: owned ? vv.getBigUint64(ow + OWNER.fields.cgroup_id.offset, true).toString() : null,
    tx: Number(vv.getBigUint64(vo + FLOW.fields.tx_bytes.offset, true)),
    rx: Number(vv.getBigUint64(vo + FLOW.fields.rx_bytes.offset, true)),
    txp: Number(vv.getBigUint64(vo + FLOW.fields.tx_packets.offset, true)),
    rxp: Number(vv.getBigUint64(vo + FLOW.fields.rx_packets.offset, true)),
    last: vv.getBigUint64(vo + FLOW.fields.last_ns.offset, true),
    learnedNs: owned ? vv.getBigUint64(ow + OWNER.fields.learned_ns.offset, true) : 0n,
  };
}

/** A flow value's four counts, summed (noteChanged()). */
function countsSum(v: DataView, o: number): number {
  return u64(v, o + FLOW.fields.tx_bytes.offset) + u64(v, o + FLOW.fields.rx_bytes.offset) + u64(v, o + FLOW.fields.tx_packets.offset) + u64(v, o + FLOW.fields.rx_packets.offset);
}

/** A u64 counter as a Number without a BigInt (exact below 2^53, as Number(BigInt) is). */
function u64(v: DataView, o: number): number {
  return v.getUint32(o, true) + v.getUint32(o + 4, true) * 0x1_0000_0000;
}

/**
 * The flow key (keyString()) of a TCP flow named as flowIdentity() names it, into `kb`;
 * null when its text is not what flowIdentity() would print for any key (then no flow of
 * the table is that flow).
 */
function tcpKeyOf(f: HttpFlowKey, kb: Buffer): string | null {
  const l = parseIp(f.localAddr);
  const r = parseIp(f.remoteAddr);
  if (!l || !r || l.family !== r.family) return null;
  const af = l.family === 'ipv4' ? AF_INET : AF_INET6;
  if (formatIpAt(l.bytes, 0, af) !== f.localAddr || formatIpAt(r.bytes, 0, af) !== f.remoteAddr) return null;
  if (!Number.isInteger(f.localPort) || !Number.isInteger(f.remotePort) || f.localPort < 0 || f.localPort > 0xffff || f.remotePort < 0 || f.remotePort > 0xffff) return null;
  kb.fill(0);
  kb[FLOW_KEY.fields.family.offset] = af;
  kb[FLOW_KEY.fields.proto.offset] = 6;
  kb.writeUInt16LE(f.localPort, FLOW_KEY.fields.lport.offset);
  kb.writeUInt16LE(f.remotePort, FLOW_KEY.fields.rport.offset);
  kb.set(l.bytes.subarray(0, af === AF_INET ? 4 : 16), FLOW_KEY.fields.laddr.offset);
  kb.set(r.bytes.subarray(0, af === AF_INET ? 4 : 16), FLOW_KEY.fields.raddr.offset);
  return keyString(kb, 0);
}

function flowIdentity(kv: DataView, ko: number, kb: Uint8Array, pid: number | null): FlowIdentity {
  const family = kv.getUint8(ko + FLOW_KEY.fields.family.offset);
  const proto = kv.getUint8(ko + FLOW_KEY.fields.proto.offset);
  const icmp = proto === 1 || proto === 58;
  return {
    protocol: protocolName(proto), pid,
    localAddr: formatIpAt(kb, ko + FLOW_KEY.fields.laddr.offset, family), localPort: icmp ? null : kv.getUint16(ko + FLOW_KEY.fields.lport.offset, true),
    remoteAddr: formatIpAt(kb, ko + FLOW_KEY.fields.raddr.offset, family), remotePort: icmp ? null : kv.getUint16(ko + FLOW_KEY.fields.rport.offset, true),
  };
}

function sortFlows(flows: Flow[], by: FlowSort): void {
  switch (by) {
    case 'bytes':
      flows.sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
      break;
    case 'packets':
      flows.sort((a, b) => b.txPackets + b.rxPackets - (a.txPackets + a.rxPackets));
      break;
    case 'age':
      flows.sort((a, b) => (a.firstSeenAt < b.firstSeenAt ? -1 : a.firstSeenAt > b.firstSeenAt ? 1 : 0));
      break;
    case 'recent':
      flows.sort((a, b) => (a.lastSeenAt > b.lastSeenAt ? -1 : a.lastSeenAt < b.lastSeenAt ? 1 : 0));
      break;
  }
}
