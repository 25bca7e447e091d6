// SPDX-License-Identifier: Apache-2.0
// The capture path's kernel state for any number of sessions: each session's row in
// emon_cap_sess, the by-kind masks in emon_cap_conf, the engine program regenerated from all
// sessions whenever one starts or ends and swapped into the classifier's hook chain, and
// the interfaces whose packets the classifier hands over. Plain inputs (specs), plain
// outputs (slots, counters); no RPC, no files, no processes (manager.ts does those).
import type { BpfMap } from '../bpf/maps.js';
import { readU64, readUint, writeU64, writeUint } from '../bpf/layout.js';
import { CaptureError } from './errors.js';
import { checkProgram, type CInsn } from './cbpf.js';
import { compileFilter, DEFAULT_SNAPLEN, DLT, type LinkType } from './pcap.js';
import { loadSchedCls, type LoadedProgram } from './progload.js';
import { engineProgram, type Direction, type EngineSession, type MetaLayout } from './select.js';
import { CAP_CONF, CAP_COUNTERS, CAP_KIND, CAP_PROG, CAP_PROGS, CAP_RATE, CAP_SESSION, CAP_SESSIONS, CAP_SPEC_BYTES, KERNEL_COUNTERS, type KernelCounterName } from './wire.js';

/** Where a mirror session's clones go and how (tc_mirror_out reads it). */
export interface MirrorTarget {
  tunnelIfindex: number;
  tunnelId: number;
  /** Collector address: 4 (IPv4) or 16 bytes. */
  remote: Uint8Array;
  encap: 'vxlan' | 'gre';
  /** Bytes the tunnel adds in front of the inner frame. */
  overhead: number;
  /** Path MTU to the collector (0: not known). */
  mtu: number;
  /** Inner frame bytes kept (0: the whole frame). */
  snaplen: number;
  /** 0: no rate limit. */
  ratePps: number;
}

export interface SessionSpec {
  kind: 'capture' | 'mirror';
  /** pcap-filter expression ('' = every packet). */
  expression: string;
  /** Capture: bytes copied to the daemon. */
  snaplen?: number;
  /** Interfaces by ifindex; empty or absent: every monitored interface. */
  ifindexes?: readonly number[];
  direction?: Direction;
  tgids?: readonly number[];
  uids?: readonly number[];
  cgroupIds?: readonly bigint[];
  comms?: readonly string[];
  mirror?: MirrorTarget;
}

export interface ActiveSession {
  slot: number;
  spec: SessionSpec;
  /** Link types the expression exists for (an `arp` expression never matches on raw IP). */
  linkTypes: LinkType[];
}

export type KernelCounters = Record<KernelCounterName, number>;

/** What the engine needs of the classifier's hook chain (the daemon's wiring provides it
 * from the monitor: the capture domain does not import the monitor). */
export interface ClassifierHooks {
  /** emon_pkt_meta's fd and the offsets the engine compares. */
  metaFd: number;
  layout: MetaLayout;
  /** Puts the engine into the hook chain's capture slot, or empties the slot (null). */
  setStage(progFd: number | null): void;
  /** Which interfaces' packets the classifier hands to the capture stage. */
  setWanted(target: 'all' | readonly number[]): void;
}

/** The capture maps (pinned with the capture component, bpf/capture/maps.bpf.h). */
export interface CaptureMaps {
  state: BpfMap;
  progs: BpfMap;
  conf: BpfMap;
  sessions: BpfMap;
  stats: BpfMap;
  rate: BpfMap;
  spec: BpfMap;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

const AF_INET = 2;
const AF_INET6 = 10;

/** Compiles an expression for both link types the classifier hands over. Ethernet must
 * compile; link-layer expressions (`arp`, `ether host`) do not exist for raw IP. */
export function compileBoth(expression: string, snaplen: number): Map<LinkType, CInsn[] | null> {
  const filters = new Map<LinkType, CInsn[] | null>();
  for (const lt of [DLT.EN10MB, DLT.RAW] as const) {
    if (expression.trim() === '') {
      filters.set(lt, null);
      continue;
    }
    try {
      filters.set(lt, checkProgram(compileFilter(expression, { linkType: lt, snaplen })));
    } catch (err) {
      if (lt === DLT.EN10MB) throw err;
    }
  }
  return filters;
}

export class CaptureEngine {
  private readonly sessions = new Map<number, ActiveSession & { filters: Map<LinkType, CInsn[] | null> }>();
  private engine: LoadedProgram | null = null;
  private closed = false;
  /** Engine programs generated (status: how often the set of sessions changed). */
  generations = 0;

  constructor(private readonly maps: CaptureMaps, private readonly hooks: ClassifierHooks, deliverFd: number) {
    maps.progs.update(u32(CAP_PROG.DELIVER), u32(deliverFd));
  }

  get active(): ActiveSession[] {
    return [...this.sessions.values()].map(({ slot, spec, linkTypes }) => ({ slot, spec, linkTypes }));
  }

  has(slot: number): boolean {
    return this.sessions.has(slot);
  }

  /** A free slot, or null. */
  freeSlot(): number | null {
    for (let i = 0; i < CAP_SESSIONS; i++) if (!this.sessions.has(i)) return i;
    return null;
  }

  /**
   * Compiles the expression, takes a slot (`opts.slot`: a mirror restored after a restart
   * keeps its slot and its counters), regenerates the engine with the new session and turns
   * the hand-over on for its interfaces. Errors leave nothing changed.
   */
  add(spec: SessionSpec, opts: { slot?: number; keepCounters?: boolean; declaration?: unknown; defer?: boolean } = {}): ActiveSession {
    if (this.closed) throw new Error('capture engine closed');
    const snaplen = spec.snaplen ?? DEFAULT_SNAPLEN;
    const filters = compileBoth(spec.expression, snaplen);
    const slot = opts.slot ?? this.freeSlot();
    if (slot === null) throw new CaptureError('TOO_MANY_SESSIONS', `${CAP_SESSIONS} capture and mirror sessions run already (the most at once)`);
    if (this.sessions.has(slot)) throw new Error(`capture slot ${slot} is taken`);
    const s = { slot, spec: { ...spec, snaplen }, linkTypes: [...filters.keys()], filters };
    this.sessions.set(slot, s);
    try {
      this.writeSession(slot, spec);
      if (!opts.keepCounters) {
        this.maps.stats.update(u32(slot), Buffer.alloc(this.maps.stats.valueBytes));
        this.maps.rate.update(u32(slot), Buffer.alloc(CAP_RATE.size));
      }
      this.writeDeclaration(slot, opts.declaration ?? null);
      if (!opts.defer) this.rebuild();
    } catch (err) {
      this.sessions.delete(slot);
      this.clearSlot(slot);
      this.rebuild();
      throw err;
    }
    return { slot, spec: s.spec, linkTypes: s.linkTypes };
  }

  /** Updates a mirror's target in place (path MTU, tunnel device after a re-creation). */
  updateMirror(slot: number, mirror: MirrorTarget): void {
    const s = this.sessions.get(slot);
    if (!s || s.spec.kind !== 'mirror') return;
    s.spec = { ...s.spec, mirror };
    this.writeSession(slot, s.spec);
  }

  /** Regenerates the engine for the sessions held now (after deferred adds, or to replace a
   * program a previous daemon left running). */
  sync(): void {
    this.rebuild();
  }

  remove(slot: number): void {
    if (!this.sessions.delete(slot)) return;
    this.rebuild();
    this.clearSlot(slot);
  }

  /** The session's counters, summed over CPUs. */
  counters(slot: number): KernelCounters {
    const v = this.maps.stats.lookup(u32(slot));
    const out = {} as KernelCounters;
    for (const [name, field] of Object.entries(KERNEL_COUNTERS) as Array<[KernelCounterName, keyof typeof CAP_COUNTERS.fields]>) {
      out[name] = v ? Number(this.maps.stats.sumPerCpuU64(v, CAP_COUNTERS.fields[field].offset)) : 0;
    }
    return out;
  }

  /** What a slot holds in the kernel now: its kind and the declaration stored with it
   * (JSON), for the restore after a daemon restart. */
  stored(slot: number): { kind: number; declaration: unknown } {
    const row = this.maps.sessions.lookup(u32(slot));
    const kind = row ? readUint(row, CAP_SESSION.fields.kind) : CAP_KIND.NONE;
    const raw = this.maps.spec.lookup(u32(slot));
    let declaration: unknown = null;
    if (raw) {
      const len = raw.readUInt32LE(0);
      if (len > 0 && len <= CAP_SPEC_BYTES - 4) {
        try {
          declaration = JSON.parse(raw.toString('utf8', 4, 4 + len));
        } catch {
          declaration = null;
        }
      }
    }
    return { kind, declaration };
  }

  /** Empties a slot the kernel still holds from a previous daemon (its capture clients are gone). */
  clearSlot(slot: number): void {
    this.maps.sessions.update(u32(slot), Buffer.alloc(CAP_SESSION.size));
    this.writeDeclaration(slot, null);
  }

  private writeDeclaration(slot: number, declaration: unknown): void {
    const v = Buffer.alloc(CAP_SPEC_BYTES);
    if (declaration !== null && declaration !== undefined) {
      const json = Buffer.from(JSON.stringify(declaration), 'utf8');
      if (json.length > CAP_SPEC_BYTES - 4) throw new CaptureError('BAD_FILTER', `the session's declaration is ${json.length} bytes: at most ${CAP_SPEC_BYTES - 4} (a shorter expression?)`);
      v.writeUInt32LE(json.length, 0);
      json.copy(v, 4);
    }
    this.maps.spec.update(u32(slot), v);
  }

  private writeSession(slot: number, spec: SessionSpec): void {
    const v = Buffer.alloc(CAP_SESSION.size);
    const F = CAP_SESSION.fields;
    writeUint(v, F.kind, spec.kind === 'capture' ? CAP_KIND.CAPTURE : CAP_KIND.MIRROR);
    const m = spec.mirror;
    if (m) {
      writeUint(v, F.snaplen, m.snaplen);
      writeUint(v, F.tunnel_ifindex, m.tunnelIfindex);
      writeUint(v, F.tunnel_id, m.tunnelId);
      const interval = m.ratePps > 0 ? BigInt(Math.max(1, Math.round(1e9 / m.ratePps))) : 0n;
      writeU64(v, F.interval_ns, interval);
      // A burst of a tenth of a second's packets (at least one): smooths scheduling
      // jitter without letting a rate of a few per second through in clumps.
      writeU64(v, F.burst_ns, interval === 0n ? 0n : BigInt(Math.max(Number(interval), 100_000_000)));
      Buffer.from(m.remote).copy(v, F.remote.offset);
      writeUint(v, F.mtu, m.mtu);
      writeUint(v, F.overhead, m.overhead);
      writeUint(v, F.family, m.remote.length === 16 ? AF_INET6 : AF_INET);
      writeUint(v, F.encap, m.encap === 'gre' ? 2 : 1);
    } else {
      writeUint(v, F.snaplen, spec.snaplen ?? DEFAULT_SNAPLEN);
    }
    this.maps.sessions.update(u32(slot), v);
  }

  /** Engine program, conf masks and interface bits for the current sessions, in an order
   * that never leaves the kernel pointing at something missing. */
  private rebuild(): void {
    const list = [...this.sessions.values()];
    let capture = 0;
    let mirror = 0;
    let snaplen = 0;
    for (const s of list) {
      if (s.spec.kind === 'capture') {
        capture |= 1 << s.slot;
        snaplen = Math.max(snaplen, s.spec.snaplen ?? DEFAULT_SNAPLEN);
      } else {
        mirror |= 1 << s.slot;
      }
    }
    const conf = Buffer.alloc(CAP_CONF.size);
    writeUint(conf, CAP_CONF.fields.capture, capture >>> 0);
    writeUint(conf, CAP_CONF.fields.mirror, mirror >>> 0);
    writeUint(conf, CAP_CONF.fields.snaplen, snaplen);

    if (list.length === 0) {
      this.hooks.setWanted([]);
      this.hooks.setStage(null);
      this.engine?.close();
      this.engine = null;
      this.maps.conf.update(u32(0), conf);
      return;
    }
    const sessions: EngineSession[] = list.map((s) => ({
      slot: s.slot, ifindexes: s.spec.ifindexes, direction: s.spec.direction, tgids: s.spec.tgids, uids: s.spec.uids,
      cgroupIds: s.spec.cgroupIds, comms: s.spec.comms, filters: s.filters,
    }));
    const prog = loadSchedCls(CAP_PROGS.select, engineProgram(sessions, { metaFd: this.hooks.metaFd, stateFd: this.maps.state.fd, progsFd: this.maps.progs.fd, layout: this.hooks.layout }));
    // conf first: a session's packets are never sorted by the old masks once the new engine selects them.
    this.maps.conf.update(u32(0), conf);
    this.hooks.setStage(prog.fd); // atomic swap of the engine
    this.engine?.close();
    this.engine = prog;
    this.generations++;
    const all = list.some((s) => !s.spec.ifindexes?.length);
    this.hooks.setWanted(all ? 'all' : [...new Set(list.flatMap((s) => [...(s.spec.ifindexes ?? [])]))]);
  }

  /** The program running now (kernel fd), for tests and benches. */
  get engineFd(): number | null {
    return this.engine?.fd ?? null;
  }

  /**
   * Releases this process's handles. `keep`: leave the kernel running the remaining
   * sessions (mirrors outlive the daemon); capture sessions must have been removed first.
   * Without `keep` every session is removed and the stage emptied.
   */
  close(keep: boolean): void {
    if (this.closed) return;
    if (!keep) {
      for (const slot of [...this.sessions.keys()]) {
        this.sessions.delete(slot);
        this.clearSlot(slot);
      }
      this.rebuild();
    }
    this.engine?.close();
    this.engine = null;
    this.closed = true;
  }
}

/** The tat of a session's limiter (tests). */
export function rateState(maps: Pick<CaptureMaps, 'rate'>, slot: number): bigint {
  const v = maps.rate.lookup(u32(slot));
  return v ? readU64(v, CAP_RATE.fields.tat_ns) : 0n;
}
