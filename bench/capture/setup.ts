// SPDX-License-Identifier: Apache-2.0
// The capture path as the benches and tests build it without a daemon: the shipped
// classifier with its hook chain (build/bpf/flows.bpf.o), the delivery program
// (build/bpf/capture.bpf.o, on the classifier's maps) and the interpreter candidate
// (test/fixtures/bpf/cap_interp.bpf.o), plus the engine program generated for a list of
// sessions, put into the chain's capture slot as the daemon does.
import path from 'node:path';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { checkProgram } from '../../daemon/src/capture/cbpf.js';
import { compileFilter, DLT, type LinkType } from '../../daemon/src/capture/pcap.js';
import { loadSchedCls, type LoadedProgram } from '../../daemon/src/capture/progload.js';
import { engineProgram, type EngineSession } from '../../daemon/src/capture/select.js';
import { CAP_CONF, CAP_COUNTERS, CAP_KIND, CAP_MAPS, CAP_PROG, CAP_PROGS, CAP_SESSION, CAP_SESSIONS } from '../../daemon/src/capture/wire.js';
import { HOOK, IFACE } from '../../daemon/src/monitor/wire.js';
import { MAP as MONITOR_MAP } from '../../daemon/src/monitor/components.js';
import { pktMetaLayout } from '../../daemon/src/app.js';
import { ROOT } from '../lib/harness.js';

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** Filters for both link types from one expression (raw IP left out when it has no meaning there). */
export function filtersFor(expr: string | null): Map<LinkType, ReturnType<typeof checkProgram> | null> {
  const m = new Map<LinkType, ReturnType<typeof checkProgram> | null>();
  for (const lt of [DLT.EN10MB, DLT.RAW] as const) {
    if (expr === null || expr === '') {
      m.set(lt, null);
      continue;
    }
    try {
      m.set(lt, checkProgram(compileFilter(expr, { linkType: lt })));
    } catch {
      if (lt === DLT.EN10MB) throw new Error(`${expr} does not compile`);
    }
  }
  return m;
}

export class CapturePath {
  readonly flows: BpfObject;
  readonly deliver: BpfObject;
  readonly interp: BpfObject;
  private engine: LoadedProgram | null = null;

  constructor(flowsObj = path.join(ROOT, 'build/bpf/flows.bpf.o')) {
    this.flows = BpfObject.open(flowsObj);
    this.flows.load();
    const flowMaps = new Set(this.flows.mapNames());
    const capMaps = new Set<string>(Object.values(CAP_MAPS));
    const deliver = BpfObject.open(path.join(ROOT, 'build/bpf/capture.bpf.o'));
    for (const m of deliver.mapNames()) if (flowMaps.has(m) && !capMaps.has(m)) deliver.reuseMap(m, this.flows.map(m).fd);
    deliver.load();
    this.deliver = deliver;
    const interp = BpfObject.open(path.join(ROOT, 'build/bpf/fixtures/cap_interp.bpf.o'));
    for (const m of interp.mapNames()) {
      if (capMaps.has(m)) interp.reuseMap(m, this.deliver.map(m).fd);
      else if (flowMaps.has(m)) interp.reuseMap(m, this.flows.map(m).fd);
    }
    interp.load();
    this.interp = interp;
  }

  /** A capture map (they live in capture.bpf.o). */
  capMap(name: string) {
    return this.deliver.map(name);
  }

  private setStage(fd: number | null): void {
    const hooks = this.flows.map(MONITOR_MAP.hooks);
    if (fd === null) hooks.delete(u32(HOOK.capture.slot));
    else hooks.update(u32(HOOK.capture.slot), u32(fd));
  }

  /** emon_ifaces entry of `ifindex`: link-layer length and whether the capture hook bit is set. */
  iface(ifindex: number, l2Len: number, capture: boolean): void {
    const v = Buffer.alloc(IFACE.size);
    v.writeUInt32LE(ifindex, IFACE.fields.ifindex.offset);
    v.writeUInt16LE(l2Len, IFACE.fields.l2_len.offset);
    v[IFACE.fields.hooks.offset] = capture ? HOOK.capture.bit : 0;
    this.flows.map('emon_ifaces').update(u32(ifindex & 1023), v);
  }

  private readonly kinds = new Map<number, { kind: keyof typeof CAP_KIND; snaplen: number }>();

  /** What delivery does for a session slot (and the by-kind masks in emon_cap_conf). */
  session(slot: number, kind: keyof typeof CAP_KIND, snaplen = 262144, ifindex = 0): void {
    const v = Buffer.alloc(CAP_SESSION.size);
    v.writeUInt32LE(CAP_KIND[kind], CAP_SESSION.fields.kind.offset);
    v.writeUInt32LE(snaplen, CAP_SESSION.fields.snaplen.offset);
    v.writeUInt32LE(ifindex, CAP_SESSION.fields.tunnel_ifindex.offset);
    this.capMap(CAP_MAPS.sessions).update(u32(slot), v);
    this.kinds.set(slot, { kind, snaplen });
    const conf = Buffer.alloc(CAP_CONF.size);
    let capture = 0;
    let mirror = 0;
    let snap = 0;
    for (const [s, k] of this.kinds) {
      if (k.kind === 'CAPTURE') {
        capture |= 1 << s;
        snap = Math.max(snap, k.snaplen);
      } else if (k.kind === 'MIRROR') {
        mirror |= 1 << s;
      }
    }
    conf.writeUInt32LE(capture >>> 0, CAP_CONF.fields.capture.offset);
    conf.writeUInt32LE(mirror >>> 0, CAP_CONF.fields.mirror.offset);
    conf.writeUInt32LE(snap, CAP_CONF.fields.snaplen.offset);
    this.capMap(CAP_MAPS.conf).update(u32(0), conf);
  }

  /** Installs the generated engine for `sessions` (or clears the slot). */
  useGenerated(sessions: EngineSession[] | null): LoadedProgram | null {
    const progs = this.capMap(CAP_MAPS.progs);
    if (sessions === null) {
      this.setStage(null);
    } else {
      const code = engineProgram(sessions, { metaFd: this.flows.map(MONITOR_MAP.pktMeta).fd, stateFd: this.capMap(CAP_MAPS.state).fd, progsFd: progs.fd, layout: pktMetaLayout() });
      const p = loadSchedCls(CAP_PROGS.select, code);
      this.setStage(p.fd);
      this.engine?.close();
      this.engine = p;
    }
    return this.engine;
  }

  /** Installs the interpreter as the engine, with its sessions' selectors and programs. */
  useInterpreter(sessions: Array<{ tgids?: number[]; uid?: number; expr: string | null }>): void {
    const sel = this.interp.map('emon_ci_sel');
    const code = this.interp.map('emon_ci_code');
    for (let i = 0; i < 8; i++) {
      const s = sessions[i];
      const v = Buffer.alloc(40);
      if (s) {
        v.writeUInt32LE(1, 0);
        v.writeUInt32LE(s.tgids?.length ?? 0, 4);
        (s.tgids ?? []).forEach((t, j) => v.writeUInt32LE(t, 8 + 4 * j));
        if (s.uid !== undefined) {
          v.writeUInt32LE(1, 24);
          v.writeUInt32LE(s.uid, 28);
        }
        const prog = compileFilter(s.expr ?? '', { linkType: DLT.EN10MB });
        const c = Buffer.alloc(8 + 8 * 512);
        c.writeUInt32LE(prog.count, 0);
        prog.insns.copy(c, 8);
        code.update(u32(i), c);
      }
      sel.update(u32(i), v);
    }
    this.setStage(this.interp.progFd('tc_ci_select'));
  }

  useDeliver(prog: 'tc_cap_deliver' | null): void {
    const progs = this.capMap(CAP_MAPS.progs);
    if (prog === null) progs.delete(u32(CAP_PROG.DELIVER));
    else progs.update(u32(CAP_PROG.DELIVER), u32(this.deliver.progFd(prog)));
  }

  /** Per-session counters summed over CPUs. */
  counters(slot: number): Record<keyof typeof CAP_COUNTERS.fields, number> {
    const m = this.capMap(CAP_MAPS.stats);
    const v = m.lookup(u32(slot))!;
    const out = {} as Record<keyof typeof CAP_COUNTERS.fields, number>;
    for (const [name, f] of Object.entries(CAP_COUNTERS.fields)) out[name as keyof typeof CAP_COUNTERS.fields] = Number(m.sumPerCpuU64(v, f.offset));
    return out;
  }

  resetCounters(): void {
    const m = this.capMap(CAP_MAPS.stats);
    for (let i = 0; i < CAP_SESSIONS; i++) m.update(u32(i), Buffer.alloc(m.valueBytes));
  }

  close(): void {
    this.engine?.close();
    this.interp.close();
    this.deliver.close();
    this.flows.close();
  }
}
