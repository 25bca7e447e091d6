// SPDX-License-Identifier: Apache-2.0
// Raw records of a classic pcap file (what `tcpdump -w` writes): link type, and per packet
// the captured bytes and the length on the wire. test/helpers/pcap.ts parses headers for
// flow totals; this keeps the bytes (capture tests compare frames byte for byte).
import fs from 'node:fs';

export interface PcapRecord {
  tsSec: number;
  tsFrac: number;
  data: Buffer;
  wireLen: number;
}

export function readPcapRecords(file: string): { linkType: number; records: PcapRecord[] } {
  const b = fs.readFileSync(file);
  if (b.length < 24) return { linkType: -1, records: [] };
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && b.readUInt32BE(0) !== 0xa1b2c3d4 && b.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${file}: not a pcap file (magic 0x${magic.toString(16)})`);
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const records: PcapRecord[] = [];
  for (let off = 24; off + 16 <= b.length; ) {
    const incl = u32(off + 8);
    if (off + 16 + incl > b.length) break; // the writer was stopped mid-record
    records.push({ tsSec: u32(off), tsFrac: u32(off + 4), wireLen: u32(off + 12), data: Buffer.from(b.subarray(off + 16, off + 16 + incl)) });
    off += 16 + incl;
  }
  return { linkType: u32(20), records };
}
