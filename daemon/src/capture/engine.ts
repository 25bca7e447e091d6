// SPDX-License-Identifier: Apache-2.0
// The capture path's kernel state, for any number of sessions: the delivery program
// (build/bpf/capture.bpf.o) loaded on the pinned capture maps, the engine program
// regenerated from all sessions whenever one starts or ends, the by-kind masks in
// emon_cap_conf, each session's row in emon_cap_sess, and the hand-off bit of the
// interfaces that have sessions. Plain inputs (maps, specs), plain outputs (slots,
// counters); no RPC, no file handling (stream.ts writes the files).
import path from 'node:path';
import { BpfObject } from '../bpf/object.js';
import type { BpfMap } from '../bpf/maps.js';
import { CaptureError } from './errors.js';
import { checkProgram, type CInsn } from './cbpf.js';
import { compileFilter, DEFAULT_SNAPLEN, DLT, type LinkType } from './pcap.js';
import { loadSchedCls, type LoadedProgram } from './progload.js';
import { engineProgram, type Direction, type EngineSession } from './select.js';
import { CAP_CONF, CAP_COUNTERS, CAP_KIND, CAP_MAPS, CAP_PROG, CAP_PROGS, CAP_SESSION, CAP_SESSIONS, IFACE_CAP_ON } from './wire.js';
import { IFACE, IFACE_SLOTS } from '../monitor/wire.js';

export interface SessionSpec {
  kind: 'capture' | 'mirror';
  /** pcap-filter expression ('' = every packet). */
  expression: string;
  snaplen?: number;
  /** Interfaces by ifindex; empty or absent: every monitored interface. */
  ifindexes?: readonly number[];
  direction?: Direction;
  tgids?: readonly number[];
  uids?: readonly number[];
  cgroupIds?: readonly bigint[];
  comms?: readonly string[];
  /** Mirror: where clones go. */
  mirrorIfindex?: number;
}

export interface ActiveSession {
  slot: number;
  spec: SessionSpec;
  /** Link types the expression exists for (an `arp` expression never matches on raw IP). */
  linkTypes: LinkType[];
}

export interface KernelCounters {
  matched: number;
  matchedBytes: number;
  delivered: number;
  deliveredBytes: number;
  dropped: number;
  truncated: number;
  failed: number;
}

/** The pinned maps the path runs on (created by the classifier's object, bpf/capture_maps.bpf.h). */
export interface CaptureMaps {
  meta: BpfMap;
  progs: BpfMap;
  conf: BpfMap;
  sessions: BpfMap;
  stats: BpfMap;
  events: BpfMap;
  ifaces: BpfMap;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

export class CaptureEngine {
  private readonly sessions = new Map<number, ActiveSession & { filters: Map<LinkType, CInsn[] | null> }>();
  private engine: LoadedProgram | null = null;
  /** Interfaces whose hand-off bit this engine set (to clear exactly those). */
  private readonly flagged = new Set<number>();
  private closed = false;

  private constructor(private readonly maps: CaptureMaps, private readonly deliver: BpfObject) {}

  /** Loads the delivery program on `maps` and puts it in emon_cap_progs. */
  static open(maps: CaptureMaps, objectDir: string): CaptureEngine {
    const obj = BpfObject.open(path.join(objectDir, 'capture.bpf.o'));
    try {
      const byName: Record<string, BpfMap> = {
        [CAP_MAPS.meta]: maps.meta, [CAP_MAPS.progs]: maps.progs, [CAP_MAPS.conf]: maps.conf,
        [CAP_MAPS.sessions]: maps.sessions, [CAP_MAPS.stats]: maps.stats, [CAP_MAPS.events]: maps.events,
      };
      for (const m of obj.mapNames()) if (byName[m]) obj.reuseMap(m, byName[m]!.fd);
      // Only the perf delivery (docs/capture.md: the ring-buffer variant measured slower).
      obj.setAutoload(CAP_PROGS.deliverRing, false);
      obj.load();
      maps.progs.update(u32(CAP_PROG.DELIVER), u32(obj.progFd(CAP_PROGS.deliverPerf)));
      return new CaptureEngine(maps, obj);
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  get active(): ActiveSession[] {
    return [...this.sessions.values()].map(({ slot, spec, linkTypes }) => ({ slot, spec, linkTypes }));
  }

  /**
   * Compiles the expression, takes a free slot, regenerates the engine with the new
   * session and turns the hand-off on for its interfaces. Errors leave nothing changed.
   */
  add(spec: SessionSpec): ActiveSession {
    if (this.closed) throw new Error('capture engine closed');
    const snaplen = spec.snaplen ?? DEFAULT_SNAPLEN;
    const filters = new Map<LinkType, CInsn[] | null>();
    let firstError: unknown = null;
    for (const lt of [DLT.EN10MB, DLT.RAW] as const) {
      if (spec.expression.trim() === '') {
        filters.set(lt, null);
        continue;
      }
      try {
        filters.set(lt, checkProgram(compileFilter(spec.expression, { linkType: lt, snaplen })));
      } catch (err) {
        // Link-layer expressions do not exist for raw IP; Ethernet must compile.
        firstError ??= err;
        if (lt === DLT.EN10MB) throw err;
      }
    }
    if (filters.size === 0) throw firstError;
    let slot = -1;
    for (let i = 0; i < CAP_SESSIONS; i++) if (!this.sessions.has(i)) { slot = i; break; }
    if (slot < 0) throw new CaptureError('TOO_MANY_SESSIONS', `${CAP_SESSIONS} capture and mirror sessions run already`);
    const s = { slot, spec: { ...spec, snaplen }, linkTypes: [...filters.keys()], filters };
    this.sessions.set(slot, s);
    try {
      this.writeSession(slot, spec.kind === 'capture' ? CAP_KIND.CAPTURE : CAP_KIND.MIRROR, snaplen, spec.mirrorIfindex ?? 0);
      this.zeroCounters(slot);
      this.rebuild();
    } catch (err) {
      this.sessions.delete(slot);
      this.writeSession(slot, CAP_KIND.NONE, 0, 0);
      this.rebuild();
      throw err;
    }
    return { slot, spec: s.spec, linkTypes: s.linkTypes };
  }

  remove(slot: number): void {
    if (!this.sessions.delete(slot)) return;
    this.rebuild();
    this.writeSession(slot, CAP_KIND.NONE, 0, 0);
  }

  /** The session's counters, summed over CPUs. */
  counters(slot: number): KernelCounters {
    const v = this.maps.stats.lookup(u32(slot));
    const F = CAP_COUNTERS.fields;
    const sum = (off: number) => (v ? Number(this.maps.stats.sumPerCpuU64(v, off)) : 0);
    return {
      matched: sum(F.matched.offset), matchedBytes: sum(F.matched_bytes.offset), delivered: sum(F.delivered.offset),
      deliveredBytes: sum(F.delivered_bytes.offset), dropped: sum(F.dropped.offset), truncated: sum(F.truncated.offset), failed: sum(F.failed.offset),
    };
  }

  private zeroCounters(slot: number): void {
    this.maps.stats.update(u32(slot), Buffer.alloc(this.maps.stats.valueBytes));
  }

  private writeSession(slot: number, kind: number, snaplen: number, ifindex: number): void {
    const v = Buffer.alloc(CAP_SESSION.size);
    v.writeUInt32LE(kind, CAP_SESSION.fields.kind.offset);
    v.writeUInt32LE(snaplen, CAP_SESSION.fields.snaplen.offset);
    v.writeUInt32LE(ifindex, CAP_SESSION.fields.ifindex.offset);
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
    conf.writeUInt32LE(capture >>> 0, CAP_CONF.fields.capture.offset);
    conf.writeUInt32LE(mirror >>> 0, CAP_CONF.fields.mirror.offset);
    conf.writeUInt32LE(snaplen, CAP_CONF.fields.snaplen.offset);

    if (list.length === 0) {
      this.setHandoff(new Set());
      this.maps.progs.delete(u32(CAP_PROG.SELECT));
      this.engine?.close();
      this.engine = null;
      this.maps.conf.update(u32(0), conf);
      return;
    }
    const sessions: EngineSession[] = list.map((s) => ({
      slot: s.slot, ifindexes: s.spec.ifindexes, direction: s.spec.direction, tgids: s.spec.tgids, uids: s.spec.uids,
      cgroupIds: s.spec.cgroupIds, comms: s.spec.comms, filters: s.filters,
    }));
    const prog = loadSchedCls('emon_cap_select', engineProgram(sessions, { metaFd: this.maps.meta.fd, progsFd: this.maps.progs.fd }));
    this.maps.conf.update(u32(0), conf);
    this.maps.progs.update(u32(CAP_PROG.SELECT), u32(prog.fd)); // atomic swap of the engine
    this.engine?.close();
    this.engine = prog;
    const want = new Set<number>();
    const all = list.some((s) => !s.spec.ifindexes?.length);
    for (const ifindex of all ? this.monitoredIfindexes() : list.flatMap((s) => [...(s.spec.ifindexes ?? [])])) want.add(ifindex);
    this.setHandoff(want);
  }

  /** Turns the hand-off on for interfaces that appeared since (sessions on every
   * interface); call on link events. */
  refreshInterfaces(): void {
    if (this.sessions.size === 0) return;
    const list = [...this.sessions.values()];
    const all = list.some((s) => !s.spec.ifindexes?.length);
    this.setHandoff(new Set(all ? this.monitoredIfindexes() : list.flatMap((s) => [...(s.spec.ifindexes ?? [])])));
  }

  /** Interfaces the classifier is attached to (emon_ifaces entries). */
  monitoredIfindexes(): number[] {
    const out: number[] = [];
    for (let slot = 0; slot < IFACE_SLOTS; slot++) {
      const v = this.maps.ifaces.lookup(u32(slot));
      const ifindex = v?.readUInt32LE(IFACE.fields.ifindex.offset) ?? 0;
      if (ifindex) out.push(ifindex);
    }
    return out;
  }

  /** Link-layer header length the classifier recorded for `ifindex` (null: not monitored). */
  l2Len(ifindex: number): number | null {
    const v = this.maps.ifaces.lookup(u32(ifindex & (IFACE_SLOTS - 1)));
    if (!v || v.readUInt32LE(IFACE.fields.ifindex.offset) !== ifindex) return null;
    return v.readUInt16LE(IFACE.fields.l2_len.offset);
  }

  /** Sets the hand-off bit on exactly `want` (and clears it where this engine set it before). */
  private setHandoff(want: Set<number>): void {
    for (const ifindex of new Set([...want, ...this.flagged])) {
      const key = u32(ifindex & (IFACE_SLOTS - 1));
      const v = this.maps.ifaces.lookup(key);
      if (!v || v.readUInt32LE(IFACE.fields.ifindex.offset) !== ifindex) continue; // not monitored (yet)
      const on = want.has(ifindex);
      const cur = v[IFACE.fields.capture.offset]!;
      const next = on ? cur | IFACE_CAP_ON : cur & ~IFACE_CAP_ON;
      if (next !== cur) {
        v[IFACE.fields.capture.offset] = next;
        this.maps.ifaces.update(key, v);
      }
      if (on) this.flagged.add(ifindex);
      else this.flagged.delete(ifindex);
    }
  }

  /** Removes every session and the programs (the maps stay: they are the classifier's). */
  close(): void {
    if (this.closed) return;
    for (const slot of [...this.sessions.keys()]) this.sessions.delete(slot);
    this.rebuild();
    this.maps.progs.delete(u32(CAP_PROG.DELIVER));
    this.deliver.close();
    this.closed = true;
  }
}
