// SPDX-License-Identifier: Apache-2.0
// Byte layouts of the C structs the daemon shares with the BPF programs: each mirror lists
// the offset and size of every field. The unit tests check every mirror against the BTF of
// the built object (test/helpers/layout.ts), so a change on one side only fails the tests.

export interface FieldSpec {
  offset: number;
  size: number;
}

export interface StructSpec {
  /** C struct name (without `struct`). */
  name: string;
  size: number;
  fields: Record<string, FieldSpec>;
  /** Object file whose BTF carries the struct. */
  object: string;
}

export const field = (offset: number, size: number): FieldSpec => ({ offset, size });

// --- field access --------------------------------------------------------------------------
// Encoders and decoders read and write a struct only through its spec: the offset AND the
// width come from the mirror the layout test checks, so a codec cannot read a field at a
// stale offset or with the wrong size. Numbers are little-endian (the hosts ebpfmon runs on,
// x86-64 and arm64, and so the BPF side's host order) unless the name says BE (network
// order: ports the data path compares with packet bytes).

function widthError(f: FieldSpec, what: string): RangeError {
  return new RangeError(`a ${f.size}-byte field at offset ${f.offset} is not ${what}`);
}

export function readUint(b: Buffer, f: FieldSpec, base = 0): number {
  const at = base + f.offset;
  if (f.size === 1) return b.readUInt8(at);
  if (f.size === 2) return b.readUInt16LE(at);
  if (f.size === 4) return b.readUInt32LE(at);
  throw widthError(f, 'a u8, u16 or u32');
}

export function writeUint(b: Buffer, f: FieldSpec, v: number, base = 0): void {
  const at = base + f.offset;
  if (f.size === 1) b.writeUInt8(v, at);
  else if (f.size === 2) b.writeUInt16LE(v, at);
  else if (f.size === 4) b.writeUInt32LE(v >>> 0, at);
  else throw widthError(f, 'a u8, u16 or u32');
}

export function readUintBE(b: Buffer, f: FieldSpec, base = 0): number {
  const at = base + f.offset;
  if (f.size === 2) return b.readUInt16BE(at);
  if (f.size === 4) return b.readUInt32BE(at);
  throw widthError(f, 'a u16 or u32');
}

export function writeUintBE(b: Buffer, f: FieldSpec, v: number, base = 0): void {
  const at = base + f.offset;
  if (f.size === 2) b.writeUInt16BE(v, at);
  else if (f.size === 4) b.writeUInt32BE(v >>> 0, at);
  else throw widthError(f, 'a u16 or u32');
}

export function readU64(b: Buffer, f: FieldSpec, base = 0): bigint {
  if (f.size !== 8) throw widthError(f, 'a u64');
  return b.readBigUInt64LE(base + f.offset);
}

export function writeU64(b: Buffer, f: FieldSpec, v: bigint, base = 0): void {
  if (f.size !== 8) throw widthError(f, 'a u64');
  b.writeBigUInt64LE(v, base + f.offset);
}

/** The field's bytes (a view, not a copy). */
export function fieldBytes(b: Buffer, f: FieldSpec, base = 0): Buffer {
  return b.subarray(base + f.offset, base + f.offset + f.size);
}
