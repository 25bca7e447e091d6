// SPDX-License-Identifier: Apache-2.0
// Reading BTF: the running kernel's (to choose between probe variants whose signatures
// differ across versions) and a built object's (for the layout check in test/unit).
import koffi from 'koffi';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { lastErrno } from '../sys/libc.js';

export const BTF_KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, TYPEDEF: 8, FUNC: 12, VAR: 14, DATASEC: 15 } as const;

export interface StructLayout {
  name: string;
  size: number;
  members: Map<string, { offset: number; size: number }>;
}

export class Btf {
  private constructor(private ptr: L.Ptr | null, readonly source: string) {}

  static vmlinux(): Btf {
    const p = L.btf__load_vmlinux_btf();
    if (p === null) throw new BpfError('reading', 'kernel BTF', lastErrno(), { target: '/sys/kernel/btf/vmlinux' });
    return new Btf(p, 'vmlinux');
  }

  static fromObject(file: string): Btf {
    const p = L.btf__parse(file, null);
    if (p === null) throw new BpfError('reading', 'BTF', lastErrno(), { target: file });
    return new Btf(p, file);
  }

  private get handle(): L.Ptr {
    if (this.ptr === null) throw new Error('BTF closed');
    return this.ptr;
  }

  find(name: string, kind: number): number {
    return L.btf__find_by_name_kind(this.handle, name, kind);
  }

  hasStruct(name: string): boolean {
    return this.find(name, BTF_KIND.STRUCT) > 0;
  }

  /** Size and member offsets of a struct (nested members are not flattened). */
  struct(name: string): StructLayout | null {
    const id = this.find(name, BTF_KIND.STRUCT);
    if (id <= 0) return null;
    const t = L.btf__type_by_id(this.handle, id);
    if (t === null) return null;
    // struct btf_type { u32 name_off; u32 info; u32 size; } + vlen x struct btf_member { u32 name_off, type, offset }
    const head = koffi.view(t, 12);
    const dv = new DataView(head);
    const info = dv.getUint32(4, true);
    const vlen = info & 0xffff;
    const kflag = info >>> 31;
    const size = dv.getUint32(8, true);
    const mdv = new DataView(koffi.view(t, 12 + vlen * 12), 12);
    const members = new Map<string, { offset: number; size: number }>();
    for (let i = 0; i < vlen; i++) {
      const nameOff = mdv.getUint32(i * 12, true);
      const type = mdv.getUint32(i * 12 + 4, true);
      const off = mdv.getUint32(i * 12 + 8, true);
      const bitOffset = kflag ? off & 0xffffff : off;
      const mname = L.btf__name_by_offset(this.handle, nameOff) ?? '';
      members.set(mname, { offset: bitOffset / 8, size: Number(L.btf__resolve_size(this.handle, type)) });
    }
    return { name, size, members };
  }

  /** An enum's enumerators, in declaration order (with their values). */
  enum(name: string): Array<{ name: string; value: number }> | null {
    const id = this.find(name, BTF_KIND.ENUM);
    if (id <= 0) return null;
    const t = L.btf__type_by_id(this.handle, id);
    if (t === null) return null;
    // struct btf_type (12 bytes) + vlen x struct btf_enum { u32 name_off; s32 val; }
    const vlen = new DataView(koffi.view(t, 12)).getUint32(4, true) & 0xffff;
    const dv = new DataView(koffi.view(t, 12 + vlen * 8), 12);
    const out: Array<{ name: string; value: number }> = [];
    for (let i = 0; i < vlen; i++) out.push({ name: L.btf__name_by_offset(this.handle, dv.getUint32(i * 8, true)) ?? '', value: dv.getInt32(i * 8 + 4, true) });
    return out;
  }

  close(): void {
    if (this.ptr !== null) L.btf__free(this.ptr);
    this.ptr = null;
  }
}

let kernelStructs: Map<string, boolean> | null = null;
/** Whether the running kernel's BTF has `struct name` (cached; the kernel does not change under us). */
export function kernelHasStruct(name: string): boolean {
  kernelStructs ??= new Map();
  let v = kernelStructs.get(name);
  if (v === undefined) {
    const btf = Btf.vmlinux();
    try {
      v = btf.hasStruct(name);
    } finally {
      btf.close();
    }
    kernelStructs.set(name, v);
  }
  return v;
}
