// SPDX-License-Identifier: Apache-2.0
// The little of ELF ebpfmon reads: a file's section names (is it a Go program? does it
// keep a symbol table?) and where a function's code is in the file (a uprobe is placed at
// a file offset). Hand-written: a few dozen lines of fixed-layout reads (64-bit
// little-endian ELF, the hosts ebpfmon runs on) against a dependency; every read is
// bounded by the file's own sizes.
import fs from 'node:fs';

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const SHN_UNDEF = 0;
/** Symbol tables larger than this are not read (libssl's .dynsym is about 30 KiB). */
const MAX_TABLE = 64 << 20;

interface Section {
  name: string;
  type: number;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

class ElfFile {
  private constructor(private readonly fd: number, readonly sections: Section[]) {}

  static open(file: string): ElfFile | null {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return null;
    }
    try {
      const h = readAt(fd, 0, 64);
      if (h.length < 64 || h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
      const shoff = Number(h.readBigUInt64LE(0x28));
      const shentsize = h.readUInt16LE(0x3a);
      const shnum = h.readUInt16LE(0x3c);
      const shstrndx = h.readUInt16LE(0x3e);
      if (shentsize < 64 || shnum === 0 || shnum > 4096 || shstrndx >= shnum) throw new Error('no usable section table');
      const table = readAt(fd, shoff, shnum * shentsize);
      if (table.length < shnum * shentsize) throw new Error('section table truncated');
      const raw = Array.from({ length: shnum }, (_, i) => {
        const o = i * shentsize;
        return {
          nameAt: table.readUInt32LE(o), type: table.readUInt32LE(o + 4), addr: table.readBigUInt64LE(o + 0x10),
          offset: Number(table.readBigUInt64LE(o + 0x18)), size: Number(table.readBigUInt64LE(o + 0x20)),
          link: table.readUInt32LE(o + 0x28), entsize: Number(table.readBigUInt64LE(o + 0x38)),
        };
      });
      const strs = readAt(fd, raw[shstrndx]!.offset, Math.min(raw[shstrndx]!.size, 1 << 20));
      const sections = raw.map((r) => ({ ...r, name: cstr(strs, r.nameAt) }));
      return new ElfFile(fd, sections);
    } catch {
      fs.closeSync(fd);
      return null;
    }
  }

  /** File offset of a defined function symbol, from .dynsym then .symtab; null when absent. */
  functionOffset(name: string): number | null {
    for (const type of [SHT_DYNSYM, SHT_SYMTAB]) {
      const symtab = this.sections.find((s) => s.type === type);
      if (!symtab || symtab.entsize < 24 || symtab.size > MAX_TABLE) continue;
      const strtab = this.sections[symtab.link];
      if (!strtab || strtab.size > MAX_TABLE) continue;
      const syms = readAt(this.fd, symtab.offset, symtab.size);
      const strs = readAt(this.fd, strtab.offset, strtab.size);
      const want = Buffer.from(`${name}\0`, 'latin1');
      for (let o = 0; o + 24 <= syms.length; o += symtab.entsize) {
        const at = syms.readUInt32LE(o);
        if (at >= strs.length || strs.compare(want, 0, want.length, at, at + want.length) !== 0) continue;
        const kind = syms[o + 4]! & 0xf;
        const shndx = syms.readUInt16LE(o + 6);
        const value = syms.readBigUInt64LE(o + 8);
        if ((kind !== STT_FUNC && kind !== STT_GNU_IFUNC) || shndx === SHN_UNDEF || value === 0n) continue;
        const sec = this.sections[shndx];
        if (!sec) continue;
        // Where the code is in the file: its address's distance into its section, from
        // the section's file offset (what libbpf's elf_find_func_offset does).
        return Number(value - sec.addr) + sec.offset;
      }
    }
    return null;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  const n = fs.readSync(fd, b, 0, len, pos);
  return b.subarray(0, n);
}

function cstr(b: Buffer, at: number): string {
  if (at >= b.length) return '';
  const end = b.indexOf(0, at);
  return b.toString('latin1', at, end < 0 ? b.length : end);
}

/** Section names of a 64-bit little-endian ELF file; null when it is not one. */
export function elfSectionNames(file: string): string[] | null {
  const elf = ElfFile.open(file);
  if (!elf) return null;
  try {
    return elf.sections.map((s) => s.name);
  } finally {
    elf.close();
  }
}

/** File offsets of the named functions (absent ones left out); null when `file` is not a
 * 64-bit little-endian ELF file. */
export function elfFunctionOffsets(file: string, names: readonly string[]): Map<string, number> | null {
  const elf = ElfFile.open(file);
  if (!elf) return null;
  try {
    const out = new Map<string, number>();
    for (const n of names) {
      const off = elf.functionOffset(n);
      if (off !== null) out.set(n, off);
    }
    return out;
  } finally {
    elf.close();
  }
}
