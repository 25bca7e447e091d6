// SPDX-License-Identifier: Apache-2.0
// A small eBPF assembler: instructions as the kernel reads them (struct bpf_insn, 8
// bytes: u8 code; u8 dst:4 src:4; s16 off; s32 imm), forward and backward labels, and
// 64-bit immediates (two slots). Only what the filter translator emits. Encodings from
// include/uapi/linux/bpf.h and bpf_common.h.
import { CaptureError } from './errors.js';

export const enum Cls { LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, ALU = 0x04, JMP = 0x05, JMP32 = 0x06, ALU64 = 0x07 }
export const enum Sz { W = 0x00, H = 0x08, B = 0x10, DW = 0x18 }
export const enum Mode { IMM = 0x00, MEM = 0x60 }
export const enum Op {
  ADD = 0x00, SUB = 0x10, MUL = 0x20, DIV = 0x30, OR = 0x40, AND = 0x50, LSH = 0x60, RSH = 0x70,
  NEG = 0x80, MOD = 0x90, XOR = 0xa0, MOV = 0xb0, END = 0xd0,
}
export const enum Jmp { JA = 0x00, JEQ = 0x10, JGT = 0x20, JGE = 0x30, JSET = 0x40, JNE = 0x50, CALL = 0x80, EXIT = 0x90, JLT = 0xa0, JLE = 0xb0 }
const SRC_X = 0x08;
const TO_BE = 0x08;
/** ld_imm64 src_reg: the immediate is a map fd. */
const PSEUDO_MAP_FD = 1;

export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R7 = 7, R8 = 8, R9 = 9, R10 = 10;

/** Helper function ids (enum bpf_func_id). */
export const HELPER = {
  map_lookup_elem: 1,
  ktime_get_ns: 5,
  tail_call: 12,
  perf_event_output: 25,
  skb_load_bytes: 26,
} as const;

/** Field offsets in struct __sk_buff (checked against the kernel's BTF by the tests). */
export const SKB = { len: 0, ifindex: 40, cb: 48, data: 76, data_end: 80 } as const;

export const INSN_SIZE = 8;

type Patch = { at: number; label: string };

export class Asm {
  private readonly buf: number[][] = []; // [code, regs, off, imm]
  private readonly labels = new Map<string, number>();
  private readonly patches: Patch[] = [];
  private nextLabel = 0;

  get length(): number {
    return this.buf.length;
  }

  /** A fresh label name (unique in this program). */
  label(hint = 'L'): string {
    return `${hint}#${this.nextLabel++}`;
  }

  /** Whether any jump emitted so far goes to `name` (code only reachable through an unused
   * label must not be emitted: the verifier refuses unreachable instructions). */
  referenced(name: string): boolean {
    return this.patches.some((p) => p.label === name);
  }

  /** Places `name` at the next instruction. */
  bind(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} bound twice`);
    this.labels.set(name, this.buf.length);
    return this;
  }

  raw(code: number, dst: number, src: number, off: number, imm: number): this {
    this.buf.push([code, (src << 4) | dst, off, imm | 0]);
    return this;
  }

  // --- ALU ---------------------------------------------------------------------------
  alu64Imm(op: Op, dst: number, imm: number): this { return this.raw(Cls.ALU64 | op, dst, 0, 0, imm); }
  alu64Reg(op: Op, dst: number, src: number): this { return this.raw(Cls.ALU64 | op | SRC_X, dst, src, 0, 0); }
  alu32Imm(op: Op, dst: number, imm: number): this { return this.raw(Cls.ALU | op, dst, 0, 0, imm); }
  alu32Reg(op: Op, dst: number, src: number): this { return this.raw(Cls.ALU | op | SRC_X, dst, src, 0, 0); }
  mov64(dst: number, src: number): this { return this.alu64Reg(Op.MOV, dst, src); }
  /** dst = imm, sign-extended to 64 bits. */
  mov64Imm(dst: number, imm: number): this { return this.alu64Imm(Op.MOV, dst, imm); }
  /** dst = (u32)imm, upper half zero. */
  mov32Imm(dst: number, imm: number): this { return this.alu32Imm(Op.MOV, dst, imm); }
  mov32(dst: number, src: number): this { return this.alu32Reg(Op.MOV, dst, src); }
  /** Big-endian to host order of the low `bits` (16/32) of dst (upper bits cleared). */
  be(dst: number, bits: 16 | 32): this { return this.raw(Cls.ALU | Op.END | TO_BE, dst, 0, 0, bits); }

  // --- memory ------------------------------------------------------------------------
  ldx(size: Sz, dst: number, src: number, off: number): this { return this.raw(Cls.LDX | Mode.MEM | size, dst, src, off, 0); }
  stx(size: Sz, dst: number, off: number, src: number): this { return this.raw(Cls.STX | Mode.MEM | size, dst, src, off, 0); }
  st(size: Sz, dst: number, off: number, imm: number): this { return this.raw(Cls.ST | Mode.MEM | size, dst, 0, off, imm); }
  /** dst = 64-bit immediate (two slots). */
  ldImm64(dst: number, value: bigint): this {
    const v = BigInt.asUintN(64, value);
    this.raw(Cls.LD | Sz.DW | Mode.IMM, dst, 0, 0, Number(v & 0xffffffffn));
    return this.raw(0, 0, 0, 0, Number(v >> 32n));
  }
  /** dst = the map with this fd (ld_imm64 BPF_PSEUDO_MAP_FD). */
  ldMapFd(dst: number, fd: number): this {
    this.raw(Cls.LD | Sz.DW | Mode.IMM, dst, PSEUDO_MAP_FD, 0, fd);
    return this.raw(0, 0, 0, 0, 0);
  }

  // --- jumps -------------------------------------------------------------------------
  private jump(code: number, dst: number, src: number, imm: number, label: string): this {
    this.patches.push({ at: this.buf.length, label });
    return this.raw(code, dst, src, 0, imm);
  }
  ja(label: string): this { return this.jump(Cls.JMP | Jmp.JA, 0, 0, 0, label); }
  /** 64-bit compare with a sign-extended immediate. */
  jImm(op: Jmp, dst: number, imm: number, label: string): this { return this.jump(Cls.JMP | op, dst, 0, imm, label); }
  jReg(op: Jmp, dst: number, src: number, label: string): this { return this.jump(Cls.JMP | op | SRC_X, dst, src, 0, label); }
  /** 32-bit compare (unsigned on the low halves; the immediate is not sign-extended beyond 32 bits). */
  j32Imm(op: Jmp, dst: number, imm: number, label: string): this { return this.jump(Cls.JMP32 | op, dst, 0, imm, label); }
  j32Reg(op: Jmp, dst: number, src: number, label: string): this { return this.jump(Cls.JMP32 | op | SRC_X, dst, src, 0, label); }
  call(helper: number): this { return this.raw(Cls.JMP | Jmp.CALL, 0, 0, 0, helper); }
  exit(): this { return this.raw(Cls.JMP | Jmp.EXIT, 0, 0, 0, 0); }

  /** Resolves labels and returns the program (struct bpf_insn[]). */
  assemble(): Buffer {
    for (const p of this.patches) {
      const target = this.labels.get(p.label);
      if (target === undefined) throw new Error(`label ${p.label} never bound`);
      const off = target - p.at - 1;
      if (off < -32768 || off > 32767) {
        throw new CaptureError('TOO_MANY_SESSIONS', `generated filter program too long: a jump spans ${off} instructions (limit 32767)`);
      }
      this.buf[p.at]![2] = off;
    }
    const out = Buffer.alloc(this.buf.length * INSN_SIZE);
    this.buf.forEach(([code, regs, off, imm], i) => {
      out[i * 8] = code!;
      out[i * 8 + 1] = regs!;
      out.writeInt16LE(off!, i * 8 + 2);
      out.writeInt32LE(imm!, i * 8 + 4);
    });
    return out;
  }
}
