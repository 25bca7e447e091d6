// SPDX-License-Identifier: Apache-2.0
// Classic BPF as libpcap emits it (struct bpf_insn: u16 code, u8 jt, u8 jf, u32 k; host
// byte order): opcode fields, decoding, and the checks both in-kernel engines rely on
// (every jump lands inside the program and moves forward, every path ends in a RET,
// scratch memory indexes are in range). Numbering from include/uapi/linux/filter.h and
// libpcap's pcap/bpf.h.
import { CaptureError } from './errors.js';
import { CBPF_INSN_SIZE, type CbpfProgram } from './pcap.js';

export const C = {
  // classes
  LD: 0x00, LDX: 0x01, ST: 0x02, STX: 0x03, ALU: 0x04, JMP: 0x05, RET: 0x06, MISC: 0x07,
  // sizes
  W: 0x00, H: 0x08, B: 0x10,
  // modes
  IMM: 0x00, ABS: 0x20, IND: 0x40, MEM: 0x60, LEN: 0x80, MSH: 0xa0,
  // alu ops
  ADD: 0x00, SUB: 0x10, MUL: 0x20, DIV: 0x30, OR: 0x40, AND: 0x50, LSH: 0x60, RSH: 0x70, NEG: 0x80, MOD: 0x90, XOR: 0xa0,
  // jumps
  JA: 0x00, JEQ: 0x10, JGT: 0x20, JGE: 0x30, JSET: 0x40,
  // sources / return values
  K: 0x00, X: 0x08, A: 0x10,
  // misc
  TAX: 0x00, TXA: 0x80,
} as const;

export const BPF_MEMWORDS = 16;
/** Loads at or above this offset are Linux's ancillary data (SKF_AD_OFF = -0x1000):
 * libpcap emits them only for live Linux captures, never for pcap_open_dead handles. */
const SKF_AD_OFF = 0xfffff000;

export interface CInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const cls = (code: number): number => code & 0x07;
export const size = (code: number): number => code & 0x18;
export const mode = (code: number): number => code & 0xe0;
export const op = (code: number): number => code & 0xf0;
export const src = (code: number): number => code & 0x08;
export const rval = (code: number): number => code & 0x18;
export const miscop = (code: number): number => code & 0xf8;

export function decode(prog: CbpfProgram): CInsn[] {
  const out: CInsn[] = [];
  for (let i = 0; i < prog.count; i++) {
    const o = i * CBPF_INSN_SIZE;
    out.push({ code: prog.insns.readUInt16LE(o), jt: prog.insns[o + 2]!, jf: prog.insns[o + 3]!, k: prog.insns.readUInt32LE(o + 4) });
  }
  return out;
}

/** Bytes a load of this size reads. */
export function loadBytes(code: number): 1 | 2 | 4 {
  const s = size(code);
  return s === C.B ? 1 : s === C.H ? 2 : 4;
}

/**
 * Checks what the translators rely on and returns the instructions. Anything else (the
 * kernel's ancillary loads, a program that could fall off its end) is refused with a
 * message naming the instruction.
 */
export function checkProgram(prog: CbpfProgram, opts: { loops?: boolean } = {}): CInsn[] {
  const insns = decode(prog);
  const n = insns.length;
  const bad = (i: number, why: string): never => {
    throw new CaptureError('FILTER_UNSUPPORTED', `filter ${JSON.stringify(prog.expression)}: instruction ${i} (${disasm(insns[i]!)}): ${why}`);
  };
  insns.forEach((ins, i) => {
    const c = ins.code;
    switch (cls(c)) {
      case C.LD:
      case C.LDX: {
        const m = mode(c);
        if (cls(c) === C.LDX && !(m === C.IMM || m === C.MEM || m === C.LEN || (m === C.MSH && size(c) === C.B))) bad(i, 'unknown LDX mode');
        if (cls(c) === C.LD && m !== C.IMM && m !== C.ABS && m !== C.IND && m !== C.MEM && m !== C.LEN) bad(i, 'unknown LD mode');
        if ((m === C.ABS || m === C.IND) && size(c) === 0x18) bad(i, 'unknown load size');
        if ((m === C.ABS || m === C.IND || m === C.MSH) && ins.k >= SKF_AD_OFF) bad(i, 'Linux ancillary data loads are not supported');
        if (m === C.MEM && ins.k >= BPF_MEMWORDS) bad(i, 'scratch memory index out of range');
        break;
      }
      case C.ST:
      case C.STX:
        if (ins.k >= BPF_MEMWORDS) bad(i, 'scratch memory index out of range');
        break;
      case C.ALU: {
        const o = op(c);
        if (o > C.XOR) bad(i, 'unknown ALU operation');
        if (src(c) === C.K && (o === C.DIV || o === C.MOD) && ins.k === 0) bad(i, 'division by a constant zero');
        break;
      }
      case C.JMP: {
        const o = op(c);
        if (o === C.JA) {
          // libpcap compiles `protochain` to a loop over the header chain (a backward
          // jump; its own interpreter wraps k around). The kernel's classic BPF refuses
          // those (tcpdump then filters in user space); the translator unrolls them.
          if (ins.k >= 0x80000000) {
            if (opts.loops === false) bad(i, 'it jumps backwards (a loop, as `protochain` compiles to)');
            if (i + 1 + ins.k - 0x100000000 < 0) bad(i, 'jump before the start');
          } else if (i + 1 + ins.k >= n) {
            bad(i, 'jump past the end');
          }
        } else {
          if (o > C.JSET) bad(i, 'unknown jump');
          if (i + 1 + Math.max(ins.jt, ins.jf) >= n) bad(i, 'jump past the end');
        }
        break;
      }
      case C.RET:
        if (rval(c) === C.X) bad(i, 'RET X is not classic BPF');
        break;
      case C.MISC:
        if (miscop(c) !== C.TAX && miscop(c) !== C.TXA) bad(i, 'unknown MISC operation');
        break;
    }
  });
  if (cls(insns[n - 1]!.code) !== C.RET) bad(n - 1, 'the program does not end with RET');
  return insns;
}

/** tcpdump -d style text of one instruction, for messages and debugging. */
export function disasm(ins: CInsn): string {
  const c = ins.code;
  const sz = size(c) === C.B ? 'b' : size(c) === C.H ? 'h' : '';
  const k = `#0x${ins.k.toString(16)}`;
  switch (cls(c)) {
    case C.LD:
    case C.LDX: {
      const x = cls(c) === C.LDX ? 'x' : '';
      switch (mode(c)) {
        case C.IMM: return `ld${x} ${k}`;
        case C.ABS: return `ld${sz} [${ins.k}]`;
        case C.IND: return `ld${sz} [x + ${ins.k}]`;
        case C.MEM: return `ld${x} M[${ins.k}]`;
        case C.LEN: return `ld${x} #pktlen`;
        case C.MSH: return `ldxb 4*([${ins.k}]&0xf)`;
      }
      return `ld? 0x${c.toString(16)}`;
    }
    case C.ST: return `st M[${ins.k}]`;
    case C.STX: return `stx M[${ins.k}]`;
    case C.ALU: {
      const names = ['add', 'sub', 'mul', 'div', 'or', 'and', 'lsh', 'rsh', 'neg', 'mod', 'xor'];
      const name = names[op(c) >> 4] ?? '?';
      return op(c) === C.NEG ? 'neg' : `${name} ${src(c) === C.X ? 'x' : k}`;
    }
    case C.JMP: {
      if (op(c) === C.JA) return `ja +${ins.k}`;
      const names: Record<number, string> = { [C.JEQ]: 'jeq', [C.JGT]: 'jgt', [C.JGE]: 'jge', [C.JSET]: 'jset' };
      return `${names[op(c)] ?? 'j?'} ${src(c) === C.X ? 'x' : k} jt +${ins.jt} jf +${ins.jf}`;
    }
    case C.RET: return rval(c) === C.A ? 'ret a' : `ret ${k}`;
    case C.MISC: return miscop(c) === C.TAX ? 'tax' : 'txa';
  }
  return `? 0x${c.toString(16)}`;
}
