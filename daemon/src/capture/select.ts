// SPDX-License-Identifier: Apache-2.0
// The capture engine program (tc_cap_select, slot EMON_HOOK_SLOT_CAPTURE of the classifier's
// hook chain), generated whenever the set of sessions changes: every session's selectors
// (interface, direction, pid, uid, cgroup, command name) as constant comparisons against
// what the classifier left in emon_pkt_meta, then its translated pcap-filter expression for
// the packet's link type. Sessions that match set their bit in the match mask; if any did,
// the program leaves the mask in emon_cap_state and tail-calls the delivery program
// (bpf/capture.bpf.c), else it returns at once. One program for all sessions: a packet no
// session wants costs a few compares (bench/capture).
//
// Why generate the selectors instead of reading them from a map: constants cost a
// compare each and nothing else; a map lookup per packet per session is what the budget
// (10 ns for an unselected packet) cannot afford.
import { Asm, Jmp, Op, R0, R1, R2, R3, R6, R7, R9, R10, Sz, HELPER } from './ebpf.js';
import type { CInsn } from './cbpf.js';
import { emitFilter, STACK, type TranslateOptions } from './translate.js';
import { DLT, type LinkType } from './pcap.js';
import { CAP_PROG, CAP_SESSIONS } from './wire.js';
import { CaptureError } from './errors.js';

export type Direction = 'in' | 'out';

/** Where the engine finds what it compares, in emon_pkt_meta (the classifier's hand-over,
 * bpf/flows.h; the monitor's PKT_META spec, given by the daemon's wiring). */
export interface MetaLayout {
  ifindex: number;
  /** u8: 1 the packet arrived, 0 it leaves. */
  ingress: number;
  /** u16: 14 Ethernet, 0 raw IP, anything else: not known. */
  l2Len: number;
  ownerTgid: number;
  ownerUid: number;
  ownerCgroupId: number;
  ownerComm: number;
  /** u8: how the owner was learned; 0: no owner (not a flow, or not attributed). */
  ownerHow: number;
}

export interface EngineSession {
  /** Bit in the match mask and index into emon_cap_sess / emon_cap_stats. */
  slot: number;
  ifindexes?: readonly number[];
  direction?: Direction;
  /** Process ids (tgid: every thread of the process). */
  tgids?: readonly number[];
  uids?: readonly number[];
  cgroupIds?: readonly bigint[];
  /** Command names as the kernel keeps them (at most 15 bytes). */
  comms?: readonly string[];
  /** The compiled expression per link type: null matches every packet; a link type absent
   * from the map never matches (the expression does not exist for it, e.g. `arp` on raw IP). */
  filters: ReadonlyMap<LinkType, CInsn[] | null>;
}

export interface EngineMaps {
  /** emon_pkt_meta */
  metaFd: number;
  /** emon_cap_state */
  stateFd: number;
  /** emon_cap_progs */
  progsFd: number;
  layout: MetaLayout;
}

/** Slots below the translator's (see translate.ts STACK). */
const KEY = STACK.free - 4; // u32 map key
const META = STACK.free - 16; // spilled emon_pkt_meta pointer
const MASK = STACK.free - 24; // u32 match mask

const L2_LEN: Record<LinkType, number> = { [DLT.EN10MB]: 14, [DLT.RAW]: 0 };
const INGRESS: Record<Direction, number> = { out: 0, in: 1 };

/** Two little-endian u64 words of a 16-byte, NUL-padded command name. */
function commWords(comm: string): [bigint, bigint] {
  const b = Buffer.alloc(16);
  const n = Buffer.byteLength(comm);
  if (n === 0 || n > 15) throw new CaptureError('BAD_FILTER', `command name ${JSON.stringify(comm)}: the kernel keeps 1 to 15 bytes`);
  b.write(comm);
  return [b.readBigUInt64LE(0), b.readBigUInt64LE(8)];
}

/**
 * Jumps to `next` unless the value in R1 is one of `values` (u32) - or for the 64-bit
 * form, R1 equals one of the 64-bit values.
 */
function anyOf32(a: Asm, values: readonly number[], next: string): void {
  const ok = a.label('sel_ok');
  for (const v of values) a.j32Imm(Jmp.JEQ, R1, v, ok);
  a.ja(next).bind(ok);
}

function anyOf64(a: Asm, values: readonly bigint[], next: string): void {
  const ok = a.label('sel_ok');
  for (const v of values) a.ldImm64(R2, v).jReg(Jmp.JEQ, R1, R2, ok);
  a.ja(next).bind(ok);
}

export function engineProgram(sessions: readonly EngineSession[], maps: EngineMaps, opts: TranslateOptions = {}): Buffer {
  if (sessions.length > CAP_SESSIONS) throw new CaptureError('TOO_MANY_SESSIONS', `${sessions.length} sessions; at most ${CAP_SESSIONS} at once`);
  const slots = new Set<number>();
  for (const s of sessions) {
    if (!Number.isInteger(s.slot) || s.slot < 0 || s.slot >= CAP_SESSIONS || slots.has(s.slot)) throw new Error(`session slot ${s.slot} invalid or used twice`);
    slots.add(s.slot);
  }
  const a = new Asm();
  const out = a.label('out');
  const M = maps.layout;

  a.mov64(R6, R1);
  a.st(Sz.W, R10, KEY, 0);
  a.ldMapFd(R1, maps.metaFd).mov64(R2, R10).alu64Imm(Op.ADD, R2, KEY).call(HELPER.map_lookup_elem);
  a.jImm(Jmp.JEQ, R0, 0, out);
  a.stx(Sz.DW, R10, META, R0);
  a.st(Sz.DW, R10, MASK, 0);

  // When every session names processes, a packet of none of them (most packets) leaves
  // after one pass over all the pids, instead of each session's selectors in turn (8 pid
  // sessions: bench/capture "8 pid sessions, packet not selected"). A packet with no owner
  // has tgid 0, which no session names.
  if (sessions.length > 1 && sessions.every((s) => s.tgids?.length)) {
    const all = [...new Set(sessions.flatMap((s) => [...s.tgids!]))];
    a.ldx(Sz.W, R1, R0, M.ownerTgid);
    anyOf32(a, all, out);
  }

  for (const s of sessions) {
    const next = a.label(`s${s.slot}_next`);
    const match = a.label(`s${s.slot}_match`);
    a.ldx(Sz.DW, R9, R10, META);
    // Selectors, cheapest and most selective first.
    if (s.ifindexes?.length) {
      a.ldx(Sz.W, R1, R9, M.ifindex);
      anyOf32(a, s.ifindexes, next);
    }
    if (s.direction) {
      a.ldx(Sz.B, R1, R9, M.ingress);
      a.jImm(Jmp.JNE, R1, INGRESS[s.direction], next);
    }
    // Owner selectors need an owner: a packet without one (not a flow, not attributed)
    // has a zeroed owner, whose uid 0 must not pass for root's.
    if (s.tgids?.length || s.uids?.length || s.cgroupIds?.length || s.comms?.length) {
      a.ldx(Sz.B, R1, R9, M.ownerHow);
      a.jImm(Jmp.JEQ, R1, 0, next);
    }
    if (s.tgids?.length) {
      a.ldx(Sz.W, R1, R9, M.ownerTgid);
      anyOf32(a, s.tgids, next);
    }
    if (s.uids?.length) {
      a.ldx(Sz.W, R1, R9, M.ownerUid);
      anyOf32(a, s.uids, next);
    }
    if (s.cgroupIds?.length) {
      a.ldx(Sz.DW, R1, R9, M.ownerCgroupId);
      anyOf64(a, s.cgroupIds, next);
    }
    if (s.comms?.length) {
      const ok = a.label('comm_ok');
      a.ldx(Sz.DW, R1, R9, M.ownerComm).ldx(Sz.DW, R3, R9, M.ownerComm + 8);
      for (const c of s.comms) {
        const [w0, w1] = commWords(c);
        const no = a.label('comm_no');
        a.ldImm64(R2, w0).jReg(Jmp.JNE, R1, R2, no);
        a.ldImm64(R2, w1).jReg(Jmp.JEQ, R3, R2, ok);
        a.bind(no);
      }
      a.ja(next).bind(ok);
    }
    // The expression for the packet's link type.
    const entries = [...s.filters.entries()];
    const bodies = entries.map(() => a.label('filter'));
    a.ldx(Sz.H, R1, R9, M.l2Len);
    entries.forEach(([lt], i) => a.jImm(Jmp.JEQ, R1, L2_LEN[lt], bodies[i]!));
    a.ja(next);
    entries.forEach(([, insns], i) => {
      a.bind(bodies[i]!);
      if (insns === null) {
        a.ja(match);
        return;
      }
      emitFilter(a, insns, opts, {
        noMatch: next,
        ret: (x, kind, k) => {
          if (kind === 'a') x.j32Imm(Jmp.JNE, R7, 0, match).ja(next);
          else x.ja(k !== 0 ? match : next);
        },
      });
    });
    if (a.referenced(match)) {
      a.bind(match);
      a.ldx(Sz.W, R1, R10, MASK).alu32Imm(Op.OR, R1, 1 << s.slot).stx(Sz.W, R10, MASK, R1);
    }
    a.bind(next);
  }

  // A match: the mask goes to emon_cap_state (this CPU's), then to the delivery program.
  a.ldx(Sz.W, R1, R10, MASK).jImm(Jmp.JEQ, R1, 0, out);
  a.ldMapFd(R1, maps.stateFd).mov64(R2, R10).alu64Imm(Op.ADD, R2, KEY).call(HELPER.map_lookup_elem);
  a.jImm(Jmp.JEQ, R0, 0, out);
  a.ldx(Sz.W, R1, R10, MASK).stx(Sz.W, R0, 0, R1); // emon_cap_state.match
  a.mov64(R1, R6).ldMapFd(R2, maps.progsFd).mov32Imm(R3, CAP_PROG.DELIVER).call(HELPER.tail_call);
  a.bind(out).mov64Imm(R0, -1).exit(); // TC_ACT_UNSPEC
  return a.assemble();
}
