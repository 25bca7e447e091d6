// SPDX-License-Identifier: Apache-2.0
// Flow records into a DuckDB data chunk without a JavaScript value per cell. Why not the
// node-api's DuckDBDataChunk.setColumns: it takes one JS value per cell (a BigInt for every
// 64-bit column: eight allocations a record) and sets validity bit by bit through BigInt
// arithmetic; at 10,000 records a second that and the garbage it makes were the largest
// part of the writer thread's CPU (CPU profile of the writer, docs/history.md). Here every
// fixed-width column is a typed array filled with plain numbers and copied into the chunk's
// vector in one call (@duckdb/node-bindings copy_data_to_vector, the call the node-api
// itself uses at flush), validity likewise; only strings go one native call each.
import duckdb from '@duckdb/node-bindings';
import { DuckDBDataChunk, type DuckDBType } from '@duckdb/node-api';
import type { StoredAddr } from './addr.js';

export const CHUNK_ROWS = 2048;
const TWO32 = 4294967296;

type Width = 1 | 2 | 4 | 8 | 16;

/** One column of a chunk being filled: its bytes, its null bits. */
export class ColumnBuf {
  readonly bytes: ArrayBuffer;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly strings: Array<string | null> | null;
  readonly validity = new Uint8Array(CHUNK_ROWS / 8);
  hasNull = false;

  constructor(readonly width: Width | 'varchar') {
    const w = width === 'varchar' ? 0 : width;
    this.bytes = new ArrayBuffer(Math.max(8, w * CHUNK_ROWS));
    this.u8 = new Uint8Array(this.bytes);
    this.u16 = new Uint16Array(this.bytes);
    this.u32 = new Uint32Array(this.bytes);
    this.i32 = new Int32Array(this.bytes);
    this.strings = width === 'varchar' ? new Array<string | null>(CHUNK_ROWS).fill(null) : null;
  }

  reset(): void {
    if (this.hasNull) this.validity.fill(0xff);
    this.hasNull = false;
  }

  setNull(i: number): void {
    if (!this.hasNull) {
      this.validity.fill(0xff);
      this.hasNull = true;
    }
    this.validity[i >> 3]! &= ~(1 << (i & 7));
  }

  /** A non-negative integer below 2^53 as a 64-bit little-endian value. */
  set64(i: number, v: number): void {
    this.u32[2 * i] = v >>> 0;
    this.u32[2 * i + 1] = Math.floor(v / TWO32);
  }

  /** Into the chunk's vector `col`: `rows` values and, when one was null, the null bits. */
  copyTo(chunk: duckdb.DataChunk, col: number, rows: number): void {
    const vec = duckdb.data_chunk_get_vector(chunk, col);
    if (this.strings) {
      for (let i = 0; i < rows; i++) {
        const s = this.strings[i];
        if (s !== null && s !== undefined) duckdb.vector_assign_string_element(vec, i, s);
      }
    } else {
      duckdb.copy_data_to_vector(vec, 0, this.bytes, 0, (this.width as number) * rows);
    }
    if (this.hasNull) {
      duckdb.vector_ensure_validity_writable(vec);
      duckdb.copy_data_to_vector_validity(vec, 0, this.validity.buffer, 0, Math.ceil(rows / 64) * 8);
    }
  }
}

/** A chunk of `types` filled from the columns' first `rows` values. */
export function makeChunk(types: DuckDBType[], cols: ColumnBuf[], rows: number): DuckDBDataChunk {
  const chunk = DuckDBDataChunk.create(types);
  for (let c = 0; c < cols.length; c++) cols[c]!.copyTo(chunk.chunk, c, rows);
  duckdb.data_chunk_set_size(chunk.chunk, rows);
  return chunk;
}

/** UHUGEINT as DuckDB lays it out (lower 64 bits, then upper; little-endian words). */
export function setU128(col: ColumnBuf, i: number, a: StoredAddr): void {
  const w = a.v6Words!;
  col.u32.set(w, 4 * i);
}
