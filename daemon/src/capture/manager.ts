// SPDX-License-Identifier: Apache-2.0
// Capture and mirror sessions in the daemon: the capture component deployed on the
// classifier's pins, the engine (engine.ts), the perf rings read while capture sessions
// run, one pcapng stream per capture session written to the client's sink, and the
// mirrors with their tunnel devices, restored from the kernel after a daemon restart.
// Knows no transport: adapters hand it a sink and tell it when the client asked to stop or
// went away.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Deployment } from '../bpf/deployment.js';
import type { ProbeStatus } from '../bpf/manifest.js';
import { AppError } from '../errors.js';
import { parseIp } from '../net/ip.js';
import { getLink, listLinks } from '../net/netlink.js';
import { CAPTURE_LATENCY_MS, CAPTURE_RESUME_GRACE_SEC } from '../contract/capture.js';
import type { OwnerIdentity } from '../contract/identity.js';
import type {
  CaptureCounters, CaptureDelivery, CaptureInterface, CaptureResume, CaptureSelector, CaptureSessionView, CaptureStartResult, CaptureStatus, MirrorCounters, MirrorEncap, MirrorSpec,
  MirrorView,
} from '../contract/capture.js';
import { CaptureEngine, type ClassifierHooks, type KernelCounters, type MirrorTarget, type SessionSpec } from './engine.js';
import { PerfRingReader } from './perfbuf.js';
import { loadNativeDrain, NativeDrain, type DrainSession, type NativeDrainLoad } from './nativedrain.js';
import { procDetails } from './procinfo.js';
import type { ProcessDetails } from './comments.js';
import { linkTypeOf, resolveSelector, type ResolvedSelector } from './resolve.js';
import { CaptureStream } from './stream.js';
import { TimeBase } from './timebase.js';
import { pathTo, TunnelUnavailable, Tunnels, TUNNEL_DEVICES, tunnelKind, tunnelOverhead, type PathInfo } from './tunnels.js';
import { CAP_KIND, CAP_MAPS, CAP_PROGS, CAP_SESSIONS, CAP_SPEC_BYTES, CAPTURE_COMPONENT } from './wire.js';
import type { TunnelKind } from '../net/netlink.js';

export interface CaptureOptions {
  /** Pages per CPU of the perf rings (a power of two). */
  perfPagesPerCpu: number;
  /** Default interval of statistics blocks while streaming (ms; 0: only at the end). */
  statsIntervalMs: number;
  /** UDP port of the vxlan tunnel device. */
  vxlanPort: number;
  /** Bytes a client may have unread before its session drops packets (counted). */
  maxClientBacklog: number;
  /** Capture sessions one uid may run at once (root and the ebpfmon group too). */
  maxSessionsPerUid: number;
  /** How the perf rings are read: 'auto' (the native drain when its library loads, else
   * the TypeScript one) or 'typescript'. */
  drain?: 'auto' | 'typescript';
}

export interface CaptureDeps {
  deployment: Deployment;
  hooks: ClassifierHooks;
  logger: Logger;
  options: CaptureOptions;
  /** What is known about a process for packet comments (default: /proc). */
  describe?: (pid: number) => ProcessDetails | null;
  /** The identity service's names for a cgroup id: the container and app selectors (without
   * it they are refused as not available). */
  identityOf?: (cgroupId: string) => OwnerIdentity;
  /** The interfaces the classifier runs on now. */
  interfaces: () => CaptureInterface[];
}

/** Where a capture session's pcapng goes (the adapter's client connection). */
export interface CaptureSink {
  /** Hands a chunk to the client. */
  write(chunk: Buffer): void;
  /** Bytes handed and not yet taken by the client. */
  backlog(): number;
  /** No more data: flush and close the stream. */
  end(): void;
  /** A synchronous gather write (the client's regular file, `fd` delivery): packets are
   * written straight from the perf ring (PcapngWriter's vectored mode). */
  writevSync?(parts: Uint8Array[]): void;
  /** The daemon stops: write what is queued now (waiting at most `ms`), then close. */
  endSync?(ms: number): number;
}

/** A running capture session, as the adapter holds it. */
export interface CaptureHandle {
  readonly id: string;
  readonly result: CaptureStartResult;
  /** The client asked to stop: the last packets and statistics are written, then the sink ends. */
  finish(): void;
  /** The client went away: the session ends at once, nothing more is written. */
  abort(): void;
  /** Resolves when the session ended, with its final counts. */
  readonly done: Promise<CaptureCounters>;
  /** Packets written so far (every connection of the session). */
  written(): number;
  /** `cb` runs after each of the reader's drains and timer runs, once the session's packets
   * are written (null: none): a client's progress rides on the reader's wakeups instead of
   * waking the daemon on a timer of its own. */
  onFlushed(cb: (() => void) | null): void;
  /** The daemon stopped under the session (kept in the kernel for its client to resume): not ended. */
  readonly detached: boolean;
}

export interface CaptureRequest {
  selector: ResolvedSelector;
  /** The user's selector as given (capture.list shows it). */
  given: CaptureSelector;
  snaplen: number;
  count?: number;
  durationMs?: number;
  statsIntervalMs?: number;
  /** The longest its packets may wait in the kernel's ring (CAPTURE_LATENCY_MS). */
  latencyMs: number;
  owner: { uid: number; pid: number | null };
  /** Continue a session of a previous daemon (capture.start `resume`). */
  resume?: CaptureResume;
  /** How the pcapng reaches the client (default: the stream on its connection). */
  delivery?: { kind: CaptureDelivery; reason?: string };
}

/** What a capture session keeps in the kernel next to its counters (emon_cap_spec): a
 * restarted daemon goes on selecting for it until its client comes back (resume) or the
 * grace period ends. */
interface CaptureDeclaration {
  v: 1;
  kind: 'capture';
  session: string;
  uid: number;
  snaplen: number;
  filter: { expression: string; ifindexes: number[]; direction?: 'in' | 'out'; tgids: number[]; uids: number[]; cgroupIds: string[]; comms: string[] };
}

/** A capture session of a previous daemon, still selected in the kernel, waiting for its client. */
interface Orphan {
  decl: CaptureDeclaration;
  slot: number;
  timer: NodeJS.Timeout;
}

/** What the client of a resumed session says it received before this daemon. */
interface ResumeBase {
  received: number;
}

/** What a mirror keeps in the kernel next to its counters (emon_cap_spec), to come back after a restart. */
interface MirrorDeclaration {
  v: 1;
  kind: 'mirror';
  spec: MirrorSpec;
  source: 'config' | 'api';
  createdAt: string;
  resolved: {
    tgids: number[];
    uids: number[];
    cgroupIds: string[];
    comms: string[];
    interfaces: CaptureInterface[];
    direction?: 'in' | 'out';
    expression: string;
  };
}

interface Mirror {
  name: string;
  slot: number;
  decl: MirrorDeclaration;
  remote: Buffer;
  kind: TunnelKind;
  path: PathInfo;
  tunnelIfindex: number;
}

const ZERO_CAPTURE: CaptureCounters = { matched: 0, matchedBytes: 0, captured: 0, capturedBytes: 0, dropped: 0, clientDropped: 0, written: 0, truncated: 0, lostInRestart: 0 };

function mirrorCounters(k: KernelCounters): MirrorCounters {
  return {
    matched: k.matched, matchedBytes: k.matchedBytes, mirrored: k.mirrored, mirroredBytes: k.mirroredBytes, truncated: k.truncated,
    rateLimited: k.rateLimited, failed: k.failed, tooBig: k.tooBig,
  };
}

/** The collector's address as the kernel keeps it: 4 bytes (IPv4) or 16. */
function collectorBytes(to: string): Buffer {
  const ip = parseIp(to);
  if (!ip) throw new AppError('InvalidParams', `params.to: ${to} is not an IP address`, { field: 'params.to', value: to });
  return Buffer.from(ip.family === 'ipv4' ? ip.bytes.subarray(0, 4) : ip.bytes);
}

/** Session ids are unique across daemon restarts (a resumed session keeps its id). */
const newSessionId = (): string => `cap-${randomBytes(6).toString('hex')}`;

class CaptureSession implements CaptureHandle, DrainSession {
  readonly startedAt = new Date();
  clientDropped = 0;
  /** Records of this session this daemon read (delivered or dropped for the client). */
  private read = 0;
  private ended = false;
  detached = false;
  private timers: NodeJS.Timeout[] = [];
  private resolveDone!: (c: CaptureCounters) => void;
  readonly done = new Promise<CaptureCounters>((r) => (this.resolveDone = r));
  final: CaptureCounters | null = null;

  constructor(
    readonly id: string,
    readonly slot: number,
    readonly req: CaptureRequest,
    readonly result: CaptureStartResult,
    readonly stream: CaptureStream,
    private readonly sink: CaptureSink,
    private readonly m: CaptureManager,
    private readonly maxBacklog: number,
    private readonly base: ResumeBase | null = null,
  ) {}

  get isEnded(): boolean {
    return this.ended;
  }

  written(): number {
    return (this.base?.received ?? 0) + this.stream.packets;
  }

  start(statsMs: number): void {
    if (statsMs > 0) {
      const t = setInterval(() => {
        this.stream.statistics(this.counters());
        this.stream.writer.flush();
      }, statsMs);
      t.unref();
      this.timers.push(t);
    }
    if (this.req.durationMs !== undefined) {
      const t = setTimeout(() => this.finish(), this.req.durationMs);
      t.unref();
      this.timers.push(t);
    }
  }

  onRecord(buf: Buffer, u32: Uint32Array, off: number, len: number, bit: number): void {
    if (this.ended || this.stream.done) return;
    this.read++;
    if (this.sink.backlog() > this.maxBacklog) {
      this.clientDropped++;
      return;
    }
    this.stream.onRecord(buf, u32, off, len);
    if (this.stream.done) setImmediate(() => this.finish());
    void bit;
  }

  private flushed: (() => void) | null = null;

  onFlushed(cb: (() => void) | null): void {
    this.flushed = cb;
  }

  flush(): void {
    if (this.ended) return;
    this.stream.writer.flush();
    this.flushed?.();
  }

  // --- the native drain (nativedrain.ts): onRecord()'s bookkeeping, done per drain ---

  overBacklog(): boolean {
    return this.sink.backlog() > this.maxBacklog;
  }

  addRead(read: number, clientDropped: number): void {
    this.read += read;
    this.clientDropped += clientDropped;
  }

  private finishing = false;

  afterDrain(): void {
    if (this.stream.done && !this.ended && !this.finishing) {
      this.finishing = true;
      setImmediate(() => this.finish());
    }
  }

  /** Packets held by reference in the ring (a file's vectored writes) are written now. */
  release(): void {
    if (!this.ended) this.stream.writer.release();
  }

  counters(): CaptureCounters {
    if (this.final) return this.final;
    const k = this.m.kernelCounters(this.slot);
    return {
      matched: k.matched, matchedBytes: k.matchedBytes, captured: k.captured, capturedBytes: k.capturedBytes, dropped: k.dropped,
      clientDropped: this.clientDropped, written: (this.base?.received ?? 0) + this.stream.packets, truncated: this.stream.truncated,
      // Captured in the kernel (its counter runs on across daemons) but neither received by
      // the client before the restart nor read here since: what the old daemon held, what
      // waited for the client while it was away. Exact once the rings are drained (at the
      // session's end); until then records still in the rings are counted here too.
      lostInRestart: this.base ? Math.max(0, k.captured - this.base.received - this.read) : 0,
    };
  }

  finish(): void {
    if (this.ended) return;
    this.m.endCapture(this, true);
  }

  abort(): void {
    if (this.ended) return;
    this.m.endCapture(this, false);
  }

  /** The daemon stops under the session: what it holds goes out, the stream ends without
   * final statistics (the kernel keeps selecting; the client resumes with the next daemon). */
  detach(): void {
    this.ended = true;
    this.detached = true;
    for (const t of this.timers) clearTimeout(t);
    this.stream.writer.flush();
    if (this.sink.endSync) this.sink.endSync(1000);
    else this.sink.end();
    this.resolveDone(this.counters());
  }

  /** Called by the manager once the kernel no longer selects for the session. */
  close(graceful: boolean, final: CaptureCounters): void {
    this.ended = true;
    for (const t of this.timers) clearTimeout(t);
    this.final = final;
    if (graceful) {
      this.stream.statistics(final);
      this.stream.writer.flush();
      this.sink.end();
    }
    this.resolveDone(final);
  }
}

export class CaptureManager {
  private readonly log: Logger;
  private readonly captures = new Map<string, CaptureSession>();
  /** The same sessions as an array, for the per-record loop (no Map iterator per record). */
  private live: CaptureSession[] = [];
  private readonly mirrors = new Map<string, Mirror>();
  private reader: PerfRingReader | null = null;
  private readonly timebase = new TimeBase();
  private readonly tunnels: Tunnels;
  private refreshTimer: NodeJS.Timeout | null = null;
  private linkNames = new Map<number, { name: string; l2: number }>();
  /** Losses of ended capture sessions (status reports totals since start). */
  private readonly ended = { dropped: 0, clientDropped: 0, lostInRestart: 0 };
  /** Capture sessions of a previous daemon waiting for their clients, by session id. */
  private readonly orphans = new Map<string, Orphan>();
  /** Their slots' bits (records for them are counted, not delivered). */
  /** Changes with every daemon: a client resuming names the daemon it streamed from. */
  readonly instance = randomBytes(6).toString('hex');
  private ringLostBefore = 0;
  private closed = false;
  /** The native drain's library, loaded at the first capture session (null: not tried yet). */
  private native: NativeDrainLoad | null = null;
  /** The drain of the last reader (status says what ran, also between sessions). */
  private drainKind: 'native' | 'typescript' | null = null;

  private constructor(
    private readonly d: CaptureDeps,
    private readonly engine: CaptureEngine,
    readonly probes: ProbeStatus[],
    private readonly mirrorAvailable: boolean,
  ) {
    this.log = d.logger.child({ component: 'capture' });
    this.tunnels = new Tunnels(d.deployment, d.logger, d.options.vxlanPort);
  }

  /**
   * Deploys capture.bpf.o (adopting the pinned programs when they are current), takes over
   * the kernel's sessions: mirrors come back with their slots and counters, capture
   * sessions of a previous daemon (their clients are gone) are removed. Throws when the
   * capture programs cannot be loaded (the caller reports capture as unavailable).
   */
  static open(d: CaptureDeps): CaptureManager {
    const res = d.deployment.deploy(CAPTURE_COMPONENT);
    const cap = res.probes.find((p) => p.capability === 'capture');
    if (!cap?.active) throw new AppError('NotAvailable', `the capture programs did not load: ${cap?.inactive.map((i) => i.reason).join('; ') ?? 'unknown reason'}`);
    const dep = d.deployment;
    const maps = {
      state: dep.map(CAP_MAPS.state), progs: dep.map(CAP_MAPS.progs), conf: dep.map(CAP_MAPS.conf), sessions: dep.map(CAP_MAPS.sessions),
      stats: dep.map(CAP_MAPS.stats), rate: dep.map(CAP_MAPS.rate), spec: dep.map(CAP_MAPS.spec),
    };
    const engine = new CaptureEngine(maps, d.hooks, dep.progFd(CAP_PROGS.deliver));
    const m = new CaptureManager(d, engine, res.probes, true);
    m.restore();
    m.refreshTimer = setInterval(() => m.refreshMirrors(), 5000);
    m.refreshTimer.unref();
    return m;
  }

  // --- restore ------------------------------------------------------------------------------

  private restore(): void {
    let stale = 0;
    for (let slot = 0; slot < CAP_SESSIONS; slot++) {
      const { kind, declaration } = this.engine.stored(slot);
      if (kind === CAP_KIND.NONE) continue;
      const decl = declaration as MirrorDeclaration | null;
      const cdecl = declaration as CaptureDeclaration | null;
      if (kind === CAP_KIND.CAPTURE && cdecl?.v === 1 && cdecl.kind === 'capture' && !this.orphans.has(cdecl.session)) {
        try {
          this.adoptOrphan(cdecl, slot);
          continue;
        } catch (err) {
          this.log.error({ err, session: cdecl.session }, `capture session ${cdecl.session} could not be kept for its client: ${(err as Error).message}`);
        }
      }
      if (kind === CAP_KIND.MIRROR && decl?.v === 1 && decl.kind === 'mirror' && !this.mirrors.has(decl.spec.name)) {
        try {
          this.startMirror(decl, slot, true);
          continue;
        } catch (err) {
          this.log.error({ err, mirror: decl.spec.name }, `mirror ${decl.spec.name} could not be restored: ${(err as Error).message}`);
        }
      }
      this.engine.clearSlot(slot);
      stale++;
    }
    // The running engine may still select for sessions of a previous daemon: replace it.
    this.engine.sync();
    if (this.mirrors.size || stale || this.orphans.size) this.log.info({ mirrors: [...this.mirrors.keys()], waitingCaptureSessions: [...this.orphans.keys()], staleCaptureSessions: stale }, 'capture sessions taken over from the kernel');
  }

  /** A capture session of the previous daemon: the kernel goes on selecting for it (same
   * slot, counters kept) until its client resumes it or the grace period ends. */
  private adoptOrphan(decl: CaptureDeclaration, slot: number): void {
    const f = decl.filter;
    this.engine.add({
      kind: 'capture', expression: f.expression, snaplen: decl.snaplen, ifindexes: f.ifindexes, direction: f.direction, tgids: f.tgids, uids: f.uids,
      cgroupIds: f.cgroupIds.map((c) => BigInt(c)), comms: f.comms,
    }, { slot, keepCounters: true, declaration: decl, defer: true });
    const timer = setTimeout(() => this.expireOrphan(decl.session), CAPTURE_RESUME_GRACE_SEC * 1000);
    timer.unref();
    this.orphans.set(decl.session, { decl, slot, timer });
  }

  /** The selection a waiting session was started with, as the kernel keeps it. */
  private selectorOf(decl: CaptureDeclaration): ResolvedSelector {
    const f = decl.filter;
    const interfaces = f.ifindexes.flatMap((i): CaptureInterface[] => {
      const x = this.interfaceOf(i);
      return x ? [{ name: x.name, ifindex: i, linkType: x.l2Len === 0 ? 'raw' : 'ethernet' }] : [];
    });
    return {
      tgids: f.tgids, pidOwners: new Map(), uids: f.uids, cgroupIds: f.cgroupIds.map((c) => BigInt(c)), cgroups: [], comms: f.comms,
      interfaces, ...(f.direction ? { direction: f.direction } : {}), expression: f.expression,
    };
  }

  private dropOrphan(o: Orphan): void {
    clearTimeout(o.timer);
    this.orphans.delete(o.decl.session);
  }

  private expireOrphan(id: string): void {
    const o = this.orphans.get(id);
    if (!o) return;
    this.dropOrphan(o);
    const k = this.engine.counters(o.slot);
    this.engine.remove(o.slot);
    this.ended.dropped += k.dropped;
    this.releaseReaderIfIdle();
    this.log.info({ session: id, uid: o.decl.uid, ...k }, `capture session ${id} ended: its client did not come back within ${CAPTURE_RESUME_GRACE_SEC} s`);
  }

  // --- capture sessions ---------------------------------------------------------------------

  /** A selector as the kernel will compare it (throws InvalidParams naming the field). */
  resolve(sel: CaptureSelector, prefix = 'params'): ResolvedSelector {
    return resolveSelector(sel, { monitored: () => new Set(this.d.interfaces().map((i) => i.name)), ...(this.d.identityOf ? { identityOf: this.d.identityOf } : {}) }, prefix);
  }

  kernelCounters(slot: number): KernelCounters {
    return this.engine.counters(slot);
  }

  private interfaceOf(ifindex: number): { ifindex: number; name: string; l2Len: number } | undefined {
    let hit = this.linkNames.get(ifindex);
    if (!hit) {
      this.linkNames = new Map(listLinks().flatMap((l) => {
        const lt = linkTypeOf(l);
        return lt ? [[l.ifindex, { name: l.name, l2: lt === 'ethernet' ? 14 : 0 }] as const] : [];
      }));
      hit = this.linkNames.get(ifindex);
    }
    return hit ? { ifindex, name: hit.name, l2Len: hit.l2 } : undefined;
  }

  /** Capture sessions of `uid` running now. */
  sessionsOf(uid: number): number {
    return [...this.captures.values()].filter((s) => s.req.owner.uid === uid).length;
  }

  startCapture(req: CaptureRequest, sink: CaptureSink): CaptureHandle {
    if (this.closed) throw new AppError('NotAvailable', 'the daemon is stopping');
    if (this.sessionsOf(req.owner.uid) >= this.d.options.maxSessionsPerUid) {
      throw new AppError('TooManySessions', `uid ${req.owner.uid} runs ${this.d.options.maxSessionsPerUid} capture sessions already (capture.maxSessionsPerUid)`);
    }
    let sel = req.selector;
    let id = newSessionId();
    let base: ResumeBase | undefined;
    let active: { slot: number; linkTypes: number[] };
    if (req.resume) {
      const r = req.resume;
      const o = this.orphans.get(r.session);
      if (!o || o.decl.uid !== req.owner.uid) {
        const ended = r.instance === this.instance;
        throw new AppError('NotFound', ended
          ? `capture session ${r.session} has ended`
          : `no capture session ${r.session} to resume${o ? ` of uid ${req.owner.uid}` : ` (the daemon restarted more than ${CAPTURE_RESUME_GRACE_SEC} s ago, or was stopped with --teardown)`}`,
        { field: 'params.resume.session', value: r.session, reason: ended ? 'ended' : 'unknown' });
      }
      this.dropOrphan(o);
      sel = this.selectorOf(o.decl);
      // Records of the slot read from now on go to this session (lostInRestart: what the
      // kernel captured that neither its client received before nor this daemon reads).
      this.ensureReader();
      base = { received: r.received };
      id = r.session;
      active = { slot: o.slot, linkTypes: this.engine.active.find((x) => x.slot === o.slot)?.linkTypes ?? [] };
    } else {
      const spec: SessionSpec = {
        kind: 'capture', expression: sel.expression, snaplen: req.snaplen, ifindexes: sel.interfaces.map((i) => i.ifindex), direction: sel.direction,
        tgids: sel.tgids, uids: sel.uids, cgroupIds: sel.cgroupIds, comms: sel.comms,
      };
      const decl: CaptureDeclaration = {
        v: 1, kind: 'capture', session: id, uid: req.owner.uid, snaplen: req.snaplen,
        filter: {
          expression: sel.expression, ifindexes: sel.interfaces.map((i) => i.ifindex), ...(sel.direction ? { direction: sel.direction } : {}),
          tgids: sel.tgids, uids: sel.uids, cgroupIds: sel.cgroupIds.map(String), comms: sel.comms,
        },
      };
      // A declaration too large for the kernel's slot (a very long expression with many
      // pids) only means the session cannot outlive this daemon.
      const fits = Buffer.byteLength(JSON.stringify(decl)) <= CAP_SPEC_BYTES - 4;
      active = this.engine.add(spec, fits ? { declaration: decl } : {});
    }
    let stream: CaptureStream;
    try {
      this.ensureReader();
      const chunks = sink.writevSync ? { write: (b: Buffer) => (sink.write(b), true), writevSync: (p: Uint8Array[]) => sink.writevSync!(p) } : { write: (b: Buffer) => (sink.write(b), true) };
      stream = new CaptureStream(chunks, {
        slot: active.slot, snaplen: req.snaplen, filter: sel.expression, timebase: this.timebase, count: req.count,
        interfaceOf: (i) => this.interfaceOf(i),
        describe: this.d.describe ?? procDetails,
      });
    } catch (err) {
      this.engine.remove(active.slot);
      this.releaseReaderIfIdle();
      throw err;
    }
    const ifaces = sel.interfaces.length ? sel.interfaces : this.monitoredInterfaces();
    const result: CaptureStartResult = {
      session: '',
      pids: sel.tgids,
      uids: sel.uids,
      cgroupIds: sel.cgroupIds.map(String),
      interfaces: ifaces,
      expressionMissingOn: ifaces.filter((i) => !active.linkTypes.includes(i.linkType === 'ethernet' ? 1 : 12)).map((i) => i.name),
      snaplen: req.snaplen,
      format: 'pcapng',
      instance: this.instance,
      resumed: base !== undefined,
      delivery: req.delivery?.kind ?? 'stream',
      ...(req.delivery?.reason ? { deliveryReason: req.delivery.reason } : {}),
    };
    const s = new CaptureSession(id, active.slot, req, result, stream, sink, this, this.d.options.maxClientBacklog, base);
    result.session = s.id;
    this.captures.set(s.id, s);
    this.live = [...this.captures.values()];
    this.retime();
    stream.writer.flush(); // the section header, at once: `| tshark -r -` starts reading
    s.start(req.statsIntervalMs ?? this.d.options.statsIntervalMs);
    this.log.info({ session: s.id, uid: req.owner.uid, pid: req.owner.pid, slot: active.slot, delivery: result.delivery, ...(result.deliveryReason ? { deliveryReason: result.deliveryReason } : {}), expression: sel.expression, ...(base ? { resumed: base } : {}) }, base ? 'capture session resumed' : 'capture session started');
    return s;
  }

  /** Ends a capture session: the kernel stops selecting for it first, then what the rings
   * hold is written (graceful) and the final statistics. */
  endCapture(s: CaptureSession, graceful: boolean): void {
    if (s.isEnded) return;
    this.engine.remove(s.slot);
    if (graceful && this.reader) this.drainAll();
    const final = s.counters();
    this.captures.delete(s.id);
    this.live = [...this.captures.values()];
    this.retime();
    s.close(graceful, final);
    this.ended.dropped += final.dropped;
    this.ended.clientDropped += final.clientDropped;
    this.ended.lostInRestart += final.lostInRestart;
    this.releaseReaderIfIdle();
    this.log.info({ session: s.id, ...final, graceful }, 'capture session ended');
  }

  stopCapture(id: string, caller: { uid: number; seesAll: boolean }): Promise<CaptureCounters> {
    const s = this.captures.get(id);
    if (!s || (!caller.seesAll && s.req.owner.uid !== caller.uid)) throw new AppError('NotFound', `no capture session ${id}${caller.seesAll ? '' : ` of uid ${caller.uid}`}`, { field: 'params.session', value: id });
    s.finish();
    return s.done;
  }

  listCaptures(uid?: number): CaptureSessionView[] {
    return [...this.captures.values()].filter((s) => uid === undefined || s.req.owner.uid === uid).map((s) => ({
      session: s.id, uid: s.req.owner.uid, pid: s.req.owner.pid, startedAt: s.startedAt.toISOString(), selector: s.req.given, snaplen: s.req.snaplen,
      delivery: s.result.delivery, ...(s.result.deliveryReason ? { deliveryReason: s.result.deliveryReason } : {}), counters: s.counters(),
    }));
  }

  private monitoredInterfaces(): CaptureInterface[] {
    return this.d.interfaces();
  }

  private readonly onSample = (buf: Buffer, u32: Uint32Array, off: number, len: number): void => {
    if (len < 20) return;
    const sessions = u32[(off >> 2) + 4]!; // emon_cap_record.sessions
    const live = this.live;
    for (let i = 0; i < live.length; i++) {
      const s = live[i]!;
      const bit = 1 << s.slot;
      if (sessions & bit) s.onRecord(buf, u32, off, len, bit);
    }
  };

  private readonly flushAll = (): void => {
    for (const s of this.captures.values()) s.flush();
  };

  /** Before the reader gives ring space back: only what is referenced there must go out
   * (copied packets wait in the chunk for the drain's end: one large write per drain, not
   * one per 64 records). */
  private readonly releaseAll = (): void => {
    for (const s of this.live) s.release();
  };

  private drainAll(): void {
    while (this.reader && this.reader.drain(this.onSample, 1000, this.releaseAll) > 0);
    this.flushAll();
  }

  private ensureReader(): void {
    if (this.reader) return;
    const r = new PerfRingReader(this.d.deployment.map(CAP_MAPS.events).fd, this.d.options.perfPagesPerCpu);
    const native = this.nativeDrain();
    if (native.ok) r.setDrain(new NativeDrain(native.lib, r, () => this.live, () => this.timebase.offsetNs()).drain);
    this.drainKind = r.drainKind;
    r.start(this.onSample, { maxDelayMs: this.latencyMs(), beforeRelease: this.releaseAll, afterDrain: this.flushAll });
    this.reader = r;
  }

  /** The reader's latency bound: the shortest that an open session asked for. */
  private latencyMs(): number {
    let ms: number = CAPTURE_LATENCY_MS.max;
    for (const s of this.captures.values()) ms = Math.min(ms, s.req.latencyMs);
    return ms;
  }

  /** After the set of sessions changed: the reader's timer follows their shortest bound. */
  private retime(): void {
    this.reader?.setMaxDelay(this.latencyMs());
  }

  /** The native drain's library (loaded once), or why the TypeScript drain runs. */
  private nativeDrain(): NativeDrainLoad {
    if (this.native) return this.native;
    this.native = this.d.options.drain === 'typescript' ? { ok: false, reason: 'capture.drain is "typescript" in the configuration' } : loadNativeDrain();
    if (this.native.ok) this.log.info({ file: this.native.file }, 'capture: native drain loaded');
    else this.log.warn({ reason: this.native.reason }, 'capture: the native drain did not load; the TypeScript drain reads the rings');
    return this.native;
  }

  private releaseReaderIfIdle(): void {
    if (this.captures.size > 0 || !this.reader) return;
    // Records still in the rings for waiting sessions are counted before the rings go.
    if (this.orphans.size) this.drainAll();
    this.ringLostBefore += this.reader.stats.lost;
    this.reader.close();
    this.reader = null;
  }

  // --- mirrors --------------------------------------------------------------------------------

  private target(mi: Pick<Mirror, 'decl' | 'remote' | 'path' | 'tunnelIfindex'>): MirrorTarget {
    const spec = mi.decl.spec;
    const encap: MirrorEncap = spec.encap ?? 'vxlan';
    return {
      tunnelIfindex: mi.tunnelIfindex,
      tunnelId: spec.vni ?? (encap === 'vxlan' ? 1 : 0),
      remote: mi.remote,
      encap,
      overhead: tunnelOverhead(encap, mi.remote.length === 16),
      mtu: mi.path.mtu ?? 0,
      snaplen: spec.snaplen ?? 0,
      ratePps: spec.ratePps ?? 0,
    };
  }

  /** Puts a mirror in the kernel (a new slot, or its own slot when restored). */
  private startMirror(decl: MirrorDeclaration, slot: number | null, restoring: boolean): Mirror {
    const spec = decl.spec;
    const remote = collectorBytes(spec.to);
    const kind = tunnelKind(spec.encap ?? 'vxlan', remote.length === 16);
    let tunnel;
    try {
      tunnel = this.tunnels.ensure(kind);
    } catch (err) {
      if (err instanceof TunnelUnavailable) throw new AppError('NotAvailable', `mirror ${spec.name}: ${err.message}`, { field: 'params.encap', value: spec.encap ?? 'vxlan' });
      throw err;
    }
    const path = pathTo(remote);
    const r = decl.resolved;
    const mi: Mirror = { name: spec.name, slot: -1, decl, remote, kind, path, tunnelIfindex: tunnel.ifindex };
    const active = this.engine.add({
      kind: 'mirror', expression: r.expression, ifindexes: r.interfaces.map((i) => i.ifindex), direction: r.direction, tgids: r.tgids, uids: r.uids,
      cgroupIds: r.cgroupIds.map((c) => BigInt(c)), comms: r.comms, mirror: this.target(mi),
    }, { slot: slot ?? undefined, keepCounters: restoring, declaration: decl, defer: restoring });
    mi.slot = active.slot;
    this.mirrors.set(spec.name, mi);
    this.log.info({ mirror: spec.name, slot: mi.slot, to: spec.to, encap: spec.encap ?? 'vxlan', device: tunnel.name, restored: restoring }, restoring ? 'mirror restored' : 'mirror added');
    return mi;
  }

  addMirror(spec: MirrorSpec, sel: ResolvedSelector, source: 'config' | 'api'): MirrorView {
    if (this.closed) throw new AppError('NotAvailable', 'the daemon is stopping');
    if (!this.mirrorAvailable) throw new AppError('NotAvailable', 'mirror programs are not loaded on this kernel');
    if (this.mirrors.has(spec.name)) throw new AppError('MirrorExists', `a mirror named ${spec.name} exists already`, { field: 'params.name', value: spec.name });
    if (source === 'api' && pathTo(collectorBytes(spec.to)).mtu === null) {
      throw new AppError('NoRoute', `no route to the collector ${spec.to} from the daemon's network namespace`, { field: 'params.to', value: spec.to });
    }
    const decl: MirrorDeclaration = {
      v: 1, kind: 'mirror', spec, source, createdAt: new Date().toISOString(),
      resolved: {
        tgids: sel.tgids, uids: sel.uids, cgroupIds: sel.cgroupIds.map(String), comms: sel.comms, interfaces: sel.interfaces,
        direction: sel.direction, expression: sel.expression,
      },
    };
    return this.view(this.startMirror(decl, null, false));
  }

  removeMirror(name: string): { name: string; counters: MirrorCounters } {
    const mi = this.mirrors.get(name);
    if (!mi) throw new AppError('UnknownMirror', `no mirror named ${name}`, { field: 'params.name', value: name });
    const counters = mirrorCounters(this.engine.counters(mi.slot));
    this.engine.remove(mi.slot);
    this.mirrors.delete(name);
    if (![...this.mirrors.values()].some((m) => m.kind === mi.kind)) this.tunnels.release(mi.kind);
    this.log.info({ mirror: name, ...counters }, 'mirror removed');
    return { name, counters };
  }

  private state(mi: Mirror): string {
    if (mi.path.mtu === null) return `no route to ${mi.decl.spec.to}`;
    return 'active';
  }

  private view(mi: Mirror): MirrorView {
    const spec = mi.decl.spec;
    const encap = spec.encap ?? 'vxlan';
    return {
      name: mi.name, to: spec.to, encap, vni: spec.vni ?? (encap === 'vxlan' ? 1 : 0),
      spec, state: this.state(mi), source: mi.decl.source, createdAt: mi.decl.createdAt, device: TUNNEL_DEVICES[mi.kind], pathMtu: mi.path.mtu,
      interfaces: mi.decl.resolved.interfaces, counters: mirrorCounters(this.engine.counters(mi.slot)),
    };
  }

  listMirrors(): MirrorView[] {
    return [...this.mirrors.values()].map((m) => this.view(m));
  }

  mirror(name: string): MirrorView {
    const mi = this.mirrors.get(name);
    if (!mi) throw new AppError('UnknownMirror', `no mirror named ${name}`, { field: 'params.name', value: name });
    return this.view(mi);
  }

  /** Paths to the collectors change (routes, MTUs, a tunnel device deleted by hand): look again. */
  refreshMirrors(): void {
    for (const mi of this.mirrors.values()) {
      try {
        const path = pathTo(mi.remote);
        const tunnel = this.tunnels.existing(mi.kind) ?? this.tunnels.ensure(mi.kind);
        if (path.mtu !== mi.path.mtu || tunnel.ifindex !== mi.tunnelIfindex) {
          if (path.mtu === null && mi.path.mtu !== null) this.log.warn({ mirror: mi.name, to: mi.decl.spec.to }, 'no route to the collector: copies are lost until there is one');
          mi.path = path;
          mi.tunnelIfindex = tunnel.ifindex;
          this.engine.updateMirror(mi.slot, this.target(mi));
        }
      } catch (err) {
        this.log.warn({ err, mirror: mi.name }, 'refreshing the mirror failed');
      }
    }
  }

  /**
   * Mirrors declared in the configuration: added when absent, removed when a configured one
   * is no longer declared. A running mirror that differs from its declaration is kept and
   * reported (removing it would reset its counters): `ebpfmonctl mirror remove` applies it.
   */
  applyDeclared(declared: Array<{ spec: MirrorSpec; selector: () => ResolvedSelector }>): Array<{ name: string; action: 'added' | 'kept' | 'removed' | 'conflict' | 'failed'; reason?: string }> {
    const out: Array<{ name: string; action: 'added' | 'kept' | 'removed' | 'conflict' | 'failed'; reason?: string }> = [];
    const names = new Set(declared.map((d) => d.spec.name));
    for (const d of declared) {
      const have = this.mirrors.get(d.spec.name);
      if (have) {
        const same = JSON.stringify(have.decl.spec) === JSON.stringify(d.spec);
        out.push({ name: d.spec.name, action: same ? 'kept' : 'conflict' });
        continue;
      }
      try {
        this.addMirror(d.spec, d.selector(), 'config');
        out.push({ name: d.spec.name, action: 'added' });
      } catch (err) {
        out.push({ name: d.spec.name, action: 'failed', reason: (err as Error).message });
      }
    }
    for (const mi of [...this.mirrors.values()]) {
      if (mi.decl.source === 'config' && !names.has(mi.name)) {
        this.removeMirror(mi.name);
        out.push({ name: mi.name, action: 'removed' });
      }
    }
    return out;
  }

  // --- status ---------------------------------------------------------------------------------

  status(pagesPerCpu = this.d.options.perfPagesPerCpu): CaptureStatus {
    const caps = [...this.captures.values()].map((s) => ({
      session: s.id, uid: s.req.owner.uid, delivery: s.result.delivery, ...(s.result.deliveryReason ? { deliveryReason: s.result.deliveryReason } : {}),
      latencyMs: s.req.latencyMs, counters: s.counters(),
    }));
    const mirrors = [...this.mirrors.values()].map((m) => ({ name: m.name, state: this.state(m), counters: mirrorCounters(this.engine.counters(m.slot)) }));
    const encap = (kinds: TunnelKind[]): CaptureStatus['encaps']['vxlan'] => {
      const reason = kinds.map((k) => this.tunnels.reason(k)).find(Boolean);
      // The device of a running mirror (status is asked often: no netlink dump here, one
      // RTM_GETLINK of that device for what its transmit refused).
      const used = [...this.mirrors.values()].find((m) => kinds.includes(m.kind));
      let dev: ReturnType<typeof getLink> = null;
      try {
        dev = used ? getLink(used.tunnelIfindex) : null;
      } catch {
        /* netlink refused: the counts are left out */
      }
      return {
        available: !reason, device: used ? TUNNEL_DEVICES[used.kind] : null, ...(reason ? { reason } : {}),
        ...(dev?.txErrors !== undefined ? { txErrors: dev.txErrors, txDropped: dev.txDropped ?? 0 } : {}),
      };
    };
    const encaps = { vxlan: encap(['vxlan']), gre: encap(['gretap', 'ip6gretap']) };
    return {
      available: true,
      engine: 'generated eBPF (libpcap classic BPF translated, one program for all sessions)',
      delivery: `perf event rings, ${pagesPerCpu} pages per CPU (while capture sessions run)`,
      drain: this.drainStatus(),
      ...(this.reader ? { readerLatencyMs: this.reader.maxDelayMs } : {}),
      encaps,
      sessions: caps,
      mirrors,
      loss: {
        dropped: this.ended.dropped + caps.reduce((n, s) => n + s.counters.dropped, 0),
        clientDropped: this.ended.clientDropped + caps.reduce((n, s) => n + s.counters.clientDropped, 0),
        lostInRestart: this.ended.lostInRestart + caps.reduce((n, s) => n + s.counters.lostInRestart, 0),
        ringLost: this.ringLostBefore + (this.reader?.stats.lost ?? 0),
        mirrorFailed: mirrors.reduce((n, m) => n + m.counters.failed, 0),
        mirrorRateLimited: mirrors.reduce((n, m) => n + m.counters.rateLimited, 0),
        mirrorTooBig: mirrors.reduce((n, m) => n + m.counters.tooBig, 0),
        mirrorDeviceRefused: Object.values(encaps).reduce((n, e) => n + (e.txErrors ?? 0) + (e.txDropped ?? 0), 0),
      },
    };
  }

  /** The drain that reads the rings now (or last did; before any session: the one that would). */
  private drainStatus(): string {
    const n = this.nativeDrain();
    const kind = this.reader?.drainKind ?? this.drainKind ?? (n.ok ? 'native' : 'typescript');
    if (kind === 'native' && n.ok) return `native (${n.file})`;
    return `typescript (${n.ok ? 'the native drain is loaded but not in use' : n.reason})`;
  }

  /**
   * The daemon stops: capture sessions get what the rings hold and their streams end, but
   * stay selected in the kernel with their counters, as after kill -9, so that their
   * clients resume them with the next daemon (a restart); sessions that cannot (no
   * declaration in the kernel) end with their last statistics. Runs before the socket
   * closes (app.ts), so that closing the connections does not end the sessions.
   */
  detachCaptures(): void {
    if (this.reader) this.drainAll();
    for (const s of [...this.captures.values()]) {
      const decl = this.engine.stored(s.slot).declaration as CaptureDeclaration | null;
      if (decl?.kind === 'capture' && decl.session === s.id) {
        this.captures.delete(s.id);
        this.live = [...this.captures.values()];
        s.detach();
      } else {
        this.endCapture(s, true);
      }
    }
  }

  /** The daemon stops: capture sessions as detachCaptures() says, mirrors keep running in
   * the kernel (pinned), this process lets go. */
  close(): void {
    if (this.closed) return;
    this.detachCaptures();
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    for (const o of [...this.orphans.values()]) clearTimeout(o.timer);
    this.engine.close(true);
    this.reader?.close();
    this.reader = null;
  }
}

export { ZERO_CAPTURE };
