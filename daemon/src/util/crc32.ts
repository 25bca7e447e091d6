// SPDX-License-Identifier: Apache-2.0
// CRC-32 (IEEE 802.3, as zlib and gzip compute it) for the history journal's records.
// zlib.crc32 exists from Node 20.15 / 22.2; ebpfmon runs on any Node 20, so older ones
// get the table-driven version below (ten lines: no package is worth adding for it).
import zlib from 'node:zlib';

let table: Uint32Array | undefined;

/** The CRC of `data`, continuing from `crc` (0 to start): zlib.crc32's contract. */
export function crc32Js(data: Uint8Array, crc = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

type Crc32 = (data: Uint8Array, crc?: number) => number;
export const crc32: Crc32 = (zlib as unknown as { crc32?: Crc32 }).crc32 ?? crc32Js;
