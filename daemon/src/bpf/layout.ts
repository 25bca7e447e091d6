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
