// SPDX-License-Identifier: Apache-2.0
// Classic BPF -> eBPF, at run time, for sched_cls programs (the kernel's
// bpf_convert_filter() and Cloudflare's cbpfc do the same job; neither is reachable from
// here: the first runs only inside the kernel for SO_ATTACH_FILTER, the second is Go).
//
// Registers while a filter runs:
//   R6 = the skb (ctx)      R7 = A      R8 = X      R9 = skb->data (packet pointer)
//   stack: M[0..15] at fp-64..fp-4, a load buffer at fp-72 (see STACK).
// A and X live in the low 32 bits with the high half zero (every ALU op is 32-bit, every
// compare is JMP32), so the semantics are classic BPF's unsigned 32-bit ones.
//
// Packet loads: a bounds check against data_end and a direct load (the common case: the
// bytes are in the linear area), else bpf_skb_load_bytes (bytes in fragments, offsets
// beyond the direct range). A load past the end of the packet ends the filter with "no
// match", as in libpcap's bpf_filter() and the kernel's cBPF. Unlike the kernel's own
// conversion this never uses eBPF's legacy LD_ABS/LD_IND, which exit the whole program
// with 0 on a short packet: 0 is TC_ACT_OK, which would skip the TC filters after ours.
import { Asm, Jmp, Op, R0, R1, R2, R3, R4, R6, R7, R8, R9, R10, Sz, HELPER, SKB } from './ebpf.js';
import { C, cls, loadBytes, miscop, mode, op, rval, src, type CInsn } from './cbpf.js';

/** Stack slots (offsets from fp) the translated code uses. Programs that embed a filter
 * keep their own slots below STACK.free. */
export const STACK = {
  mem: -64, // M[i] at mem + 4 * i
  loadBuf: -72,
  free: -72,
} as const;

/** Largest constant offset read by direct packet access (an insn's s16 offset field). */
const DIRECT_MAX_CONST = 0x7fff;
/** Largest variable offset (X + k) read by direct access; the verifier allows 0xffff. */
const DIRECT_MAX_VAR = 0x3fff;

export interface TranslateOptions {
  /**
   * Bytes between skb->data and the start of the packet the filter was compiled for.
   * 0 in production (Ethernet code on Ethernet interfaces, raw-IP code on L3 ones); tests
   * run raw-IP code on Ethernet frames with 14.
   */
  base?: number;
  /** false: every load through bpf_skb_load_bytes (tests the fallback on linear test packets). */
  directAccess?: boolean;
  /**
   * Backward jumps (libpcap's `protochain` loop over the header chain) are unrolled: the
   * program is emitted again for each pass, a backward jump leads into the next copy, and
   * after `loops` passes the filter does not match. eBPF code must be loop-free for the
   * verifier to finish; 8 passes follow 8 extension headers, as far as the classifier
   * walks (MAX_EXT_HDRS). Default DEFAULT_LOOPS.
   */
  loops?: number;
}

/** Passes unrolled for a loop when the caller does not say. */
export const DEFAULT_LOOPS = 8;

export interface FilterExits {
  /** Emits what a RET does. kind 'k': the constant; kind 'a': the value is in R7. */
  ret: (a: Asm, kind: 'k' | 'a', k: number) => void;
  /** Label jumped to when a load fails or X is 0 in a division (the filter returns 0). */
  noMatch: string;
}

/** Scratch words the program reads (the verifier refuses reads of uninitialised stack). */
function memRead(insns: CInsn[]): number[] {
  const read = new Set<number>();
  for (const i of insns) if ((cls(i.code) === C.LD || cls(i.code) === C.LDX) && mode(i.code) === C.MEM) read.add(i.k);
  return [...read].sort((a, b) => a - b);
}

/** Where a JA goes: forward by k, or backward when k is negative as a signed 32-bit value. */
function jaTarget(i: number, k: number): { to: number; back: boolean } {
  const rel = k | 0;
  return { to: i + 1 + rel, back: rel < 0 };
}

/**
 * Instructions reachable in each unrolled copy: copy 0 from the first instruction, copy
 * c + 1 from the targets of copy c's backward jumps (libpcap's optimizer leaves nothing
 * unreachable in copy 0, an unoptimized program may; the verifier refuses unreachable code).
 */
export function reachable(insns: CInsn[], copies = 1): boolean[][] {
  const seen = Array.from({ length: copies }, () => insns.map(() => false));
  seen[0]![0] = true;
  for (let c = 0; c < copies; c++) {
    const live = seen[c]!;
    for (let i = 0; i < insns.length; i++) {
      if (!live[i]) continue;
      const code = insns[i]!.code;
      if (cls(code) === C.RET) continue;
      if (cls(code) === C.JMP) {
        if (op(code) === C.JA) {
          const { to, back } = jaTarget(i, insns[i]!.k);
          if (!back) live[to] = true;
          else if (c + 1 < copies) seen[c + 1]![to] = true;
        } else {
          live[i + 1 + insns[i]!.jt] = live[i + 1 + insns[i]!.jf] = true;
        }
      } else {
        live[i + 1] = true;
      }
    }
  }
  return seen;
}

/**
 * Emits one filter. On entry R6 must hold the skb; R7..R9 are set here. Jumps to the
 * exits; never falls through.
 */
export function emitFilter(a: Asm, insns: CInsn[], opts: TranslateOptions, exits: FilterExits): void {
  const base = opts.base ?? 0;
  const direct = opts.directAccess !== false;
  // Copies past the first hold code only when the program loops (see reachable()).
  const copies = 1 + (opts.loops ?? DEFAULT_LOOPS);
  const lbl = Array.from({ length: copies }, () => insns.map(() => a.label('c')));
  let copy = 0;
  const target = (i: number, c = copy): string => {
    const l = lbl[c]?.[i];
    if (l === undefined) throw new Error(`jump target ${i} outside the program`);
    return l;
  };

  a.mov32Imm(R7, 0).mov32Imm(R8, 0);
  for (const k of memRead(insns)) a.st(Sz.W, R10, STACK.mem + 4 * k, 0);
  a.ldx(Sz.W, R9, R6, SKB.data);

  /** Loads `bytes` at constant offset k (relative to the packet) into dst, host order. */
  const loadAbs = (dst: number, k: number, bytes: 1 | 2 | 4): void => {
    const sz = bytes === 1 ? Sz.B : bytes === 2 ? Sz.H : Sz.W;
    const done = a.label('ld_done');
    const slow = a.label('ld_slow');
    const off = base + k;
    if (direct && off + bytes <= DIRECT_MAX_CONST) {
      a.ldx(Sz.W, R1, R6, SKB.data_end);
      a.mov64(R2, R9).alu64Imm(Op.ADD, R2, off + bytes);
      a.jReg(Jmp.JGT, R2, R1, slow);
      a.ldx(sz, dst, R9, off);
      if (bytes > 1) a.be(dst, bytes === 2 ? 16 : 32);
      a.ja(done);
    }
    a.bind(slow);
    if (off > 0xffffffff) {
      a.ja(exits.noMatch);
    } else {
      a.mov64(R1, R6).mov32Imm(R2, off).mov64(R3, R10).alu64Imm(Op.ADD, R3, STACK.loadBuf).mov64Imm(R4, bytes);
      a.call(HELPER.skb_load_bytes);
      a.jImm(Jmp.JNE, R0, 0, exits.noMatch);
      a.ldx(sz, dst, R10, STACK.loadBuf);
      if (bytes > 1) a.be(dst, bytes === 2 ? 16 : 32);
    }
    a.bind(done);
  };

  /** Loads at X + k (no wrap-around: an offset past 2^32 does not match, as in libpcap). */
  const loadInd = (k: number, bytes: 1 | 2 | 4): void => {
    const sz = bytes === 1 ? Sz.B : bytes === 2 ? Sz.H : Sz.W;
    const done = a.label('ldi_done');
    const slow = a.label('ldi_slow');
    a.mov32Imm(R1, k).mov64(R2, R8).alu64Reg(Op.ADD, R2, R1); // R2 = X + k, exact in 64 bits
    if (direct) {
      a.jImm(Jmp.JGT, R2, DIRECT_MAX_VAR, slow);
      a.mov64(R3, R9).alu64Reg(Op.ADD, R3, R2);
      a.ldx(Sz.W, R1, R6, SKB.data_end);
      a.mov64(R4, R3).alu64Imm(Op.ADD, R4, base + bytes);
      a.jReg(Jmp.JGT, R4, R1, slow);
      a.ldx(sz, R7, R3, base);
      if (bytes > 1) a.be(R7, bytes === 2 ? 16 : 32);
      a.ja(done);
    }
    a.bind(slow);
    if (base) a.alu64Imm(Op.ADD, R2, base);
    a.mov32Imm(R1, -1); // 0xffffffff, zero-extended
    a.jReg(Jmp.JGT, R2, R1, exits.noMatch);
    a.mov64(R1, R6).mov64(R3, R10).alu64Imm(Op.ADD, R3, STACK.loadBuf).mov64Imm(R4, bytes);
    a.call(HELPER.skb_load_bytes);
    a.jImm(Jmp.JNE, R0, 0, exits.noMatch);
    a.ldx(sz, R7, R10, STACK.loadBuf);
    if (bytes > 1) a.be(R7, bytes === 2 ? 16 : 32);
    a.bind(done);
  };

  const loadLen = (dst: number): void => {
    a.ldx(Sz.W, dst, R6, SKB.len);
    if (base) a.alu32Imm(Op.SUB, dst, base);
  };

  const ALU: Record<number, Op> = {
    [C.ADD]: Op.ADD, [C.SUB]: Op.SUB, [C.MUL]: Op.MUL, [C.DIV]: Op.DIV, [C.OR]: Op.OR,
    [C.AND]: Op.AND, [C.LSH]: Op.LSH, [C.RSH]: Op.RSH, [C.MOD]: Op.MOD, [C.XOR]: Op.XOR,
  };
  const JMP: Record<number, { op: Jmp; inv: Jmp | null }> = {
    [C.JEQ]: { op: Jmp.JEQ, inv: Jmp.JNE },
    [C.JGT]: { op: Jmp.JGT, inv: Jmp.JLE },
    [C.JGE]: { op: Jmp.JGE, inv: Jmp.JLT },
    [C.JSET]: { op: Jmp.JSET, inv: null },
  };

  const live = reachable(insns, copies);
  for (copy = 0; copy < copies; copy++) insns.forEach((ins, i) => {
    if (!live[copy]![i]) return;
    a.bind(target(i));
    const c = ins.code;
    switch (cls(c)) {
      case C.LD:
        switch (mode(c)) {
          case C.IMM: a.mov32Imm(R7, ins.k); break;
          case C.ABS: loadAbs(R7, ins.k, loadBytes(c)); break;
          case C.IND: loadInd(ins.k, loadBytes(c)); break;
          case C.MEM: a.ldx(Sz.W, R7, R10, STACK.mem + 4 * ins.k); break;
          case C.LEN: loadLen(R7); break;
        }
        break;
      case C.LDX:
        switch (mode(c)) {
          case C.IMM: a.mov32Imm(R8, ins.k); break;
          case C.MEM: a.ldx(Sz.W, R8, R10, STACK.mem + 4 * ins.k); break;
          case C.LEN: loadLen(R8); break;
          case C.MSH:
            loadAbs(R8, ins.k, 1);
            a.alu32Imm(Op.AND, R8, 0xf).alu32Imm(Op.LSH, R8, 2);
            break;
        }
        break;
      case C.ST: a.stx(Sz.W, R10, STACK.mem + 4 * ins.k, R7); break;
      case C.STX: a.stx(Sz.W, R10, STACK.mem + 4 * ins.k, R8); break;
      case C.ALU: {
        const o = op(c);
        if (o === C.NEG) {
          a.alu32Imm(Op.NEG, R7, 0);
        } else if (o === C.LSH || o === C.RSH) {
          // libpcap: a shift by 32 or more gives 0 (eBPF would mask the count).
          if (src(c) === C.K) {
            if (ins.k >= 32) a.mov32Imm(R7, 0);
            else a.alu32Imm(ALU[o]!, R7, ins.k);
          } else {
            const big = a.label('shift_big');
            const done = a.label('shift_done');
            a.j32Imm(Jmp.JGE, R8, 32, big);
            a.alu32Reg(ALU[o]!, R7, R8).ja(done);
            a.bind(big).mov32Imm(R7, 0);
            a.bind(done);
          }
        } else if (src(c) === C.K) {
          a.alu32Imm(ALU[o]!, R7, ins.k);
        } else {
          if (o === C.DIV || o === C.MOD) a.j32Imm(Jmp.JEQ, R8, 0, exits.noMatch);
          a.alu32Reg(ALU[o]!, R7, R8);
        }
        break;
      }
      case C.JMP: {
        if (op(c) === C.JA) {
          const { to, back } = jaTarget(i, ins.k);
          if (!back) a.ja(target(to));
          else a.ja(copy + 1 < copies ? target(to, copy + 1) : exits.noMatch); // out of passes
          break;
        }
        const j = JMP[op(c)]!;
        const t = i + 1 + ins.jt;
        const f = i + 1 + ins.jf;
        const cond = (o: Jmp, to: string): void => {
          if (src(c) === C.X) a.j32Reg(o, R7, R8, to);
          else a.j32Imm(o, R7, ins.k, to);
        };
        if (t === f) {
          if (t !== i + 1) a.ja(target(t));
        } else if (t === i + 1 && j.inv !== null) {
          cond(j.inv, target(f));
        } else {
          cond(j.op, target(t));
          if (f !== i + 1) a.ja(target(f));
        }
        break;
      }
      case C.RET:
        if (rval(c) === C.A) exits.ret(a, 'a', 0);
        else exits.ret(a, 'k', ins.k);
        break;
      case C.MISC:
        if (miscop(c) === C.TAX) a.mov32(R8, R7);
        else a.mov32(R7, R8);
        break;
    }
  });
}

/**
 * A whole sched_cls program that returns the filter's verdict (what bpf_filter returns:
 * 0 or the snap length) as its return value: what the property tests and the engine
 * bench run with BPF_PROG_TEST_RUN.
 */
export function verdictProgram(insns: CInsn[], opts: TranslateOptions = {}): Buffer {
  const a = new Asm();
  const noMatch = a.label('nomatch');
  a.mov64(R6, R1);
  emitFilter(a, insns, opts, {
    noMatch,
    ret: (x, kind, k) => {
      if (kind === 'a') x.mov32(R0, R7);
      else x.mov32Imm(R0, k);
      x.exit();
    },
  });
  if (a.referenced(noMatch)) a.bind(noMatch).mov32Imm(R0, 0).exit();
  return a.assemble();
}
