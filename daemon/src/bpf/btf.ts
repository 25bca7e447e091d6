// SPDX-License-Identifier: Apache-2.0
// Reading BTF: the running kernel's (to choose between probe variants whose signatures
// differ across versions) and a built object's (for the layout check in test/unit).
import koffi from 'koffi';
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { lastErrno } from '../sys/libc.js';
import { ERRNO } from '../sys/errno.js';

export const BTF_KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, TYPEDEF: 8, FUNC: 12, VAR: 14, DATASEC: 15 } as const;

export interface StructLayout {
  name: string;
  size: number;
  members: Map<string, { offset: number; size: number }>;
}

/** A map's key or value type as its definition names it. */
export interface MapSideType {
  name: string;
  size: number;
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

  /**
   * The key and value types of every BTF-defined map (`.maps` section) by map name: the
   * named type each `__type(key, T)` points to (typedefs kept: `__u32`, not `unsigned int`)
   * and its size. Null for a side declared by size only (`__uint(key_size, N)`).
   */
  mapTypes(): Map<string, { key: MapSideType | null; value: MapSideType | null }> {
    const out = new Map<string, { key: MapSideType | null; value: MapSideType | null }>();
    const sec = this.find('.maps', BTF_KIND.DATASEC);
    if (sec <= 0) return out;
    const ds = this.raw(sec);
    for (let i = 0; i < ds.vlen; i++) {
      const v = this.raw(ds.body.getUint32(i * 12, true)); // btf_var_secinfo { type, offset, size }
      if (v.kind !== BTF_KIND.VAR) continue;
      const def = this.raw(v.sizeOrType); // the anonymous struct of __uint/__type members
      const sides: Record<string, MapSideType | null> = { key: null, value: null };
      for (let m = 0; m < def.vlen; m++) {
        const name = L.btf__name_by_offset(this.handle, def.body.getUint32(m * 12, true)) ?? '';
        if (name !== 'key' && name !== 'value') continue;
        const ptr = this.raw(def.body.getUint32(m * 12 + 4, true));
        if (ptr.kind !== BTF_KIND.PTR) continue;
        sides[name] = { name: this.raw(ptr.sizeOrType).name, size: Number(L.btf__resolve_size(this.handle, ptr.sizeOrType)) };
      }
      out.set(v.name, { key: sides.key ?? null, value: sides.value ?? null });
    }
    return out;
  }

  /** One type record: struct btf_type { u32 name_off; u32 info; u32 size/type; } and what follows it. */
  private raw(id: number): { kind: number; name: string; vlen: number; sizeOrType: number; body: DataView } {
    const t = L.btf__type_by_id(this.handle, id);
    if (t === null) throw new BpfError('reading', 'BTF', ERRNO.EINVAL, { target: this.source, detail: `no type ${id}` });
    const head = new DataView(koffi.view(t, 12));
    const info = head.getUint32(4, true);
    const vlen = info & 0xffff;
    const kind = (info >>> 24) & 0x1f;
    // Members (struct), var_secinfo (datasec): 12 bytes each. Nothing else is read here.
    const body = new DataView(koffi.view(t, 12 + vlen * 12), 12);
    return { kind, name: L.btf__name_by_offset(this.handle, head.getUint32(0, true)) ?? '', vlen, sizeOrType: head.getUint32(8, true), body };
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
