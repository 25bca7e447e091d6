// SPDX-License-Identifier: Apache-2.0
// A streaming pcapng writer (draft-ietf-opsawg-pcapng): one Section Header Block, an
// Interface Description Block per interface, Enhanced Packet Blocks, Interface Statistics
// Blocks. Blocks are laid out in big chunks and handed to a sink (a file, a pipe to
// `tshark -r -`); nothing is kept once written, so a capture can stream for days.
//
// Written by hand: the npm pcapng packages read files or write only basic blocks; none
// writes EPB options 2 and 8, ISBs or if_filter, and a per-packet object or Buffer from a
// library is what a writer at a million packets per second cannot afford. Little-endian
// section (the byte-order magic says so to readers).
import os from 'node:os';
import { CaptureError } from './errors.js';

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const ISB = 0x00000005;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes. */
export const OPT = {
  endofopt: 0, comment: 1,
  shb_hardware: 2, shb_os: 3, shb_userappl: 4,
  if_name: 2, if_description: 3, if_tsresol: 9, if_filter: 11, if_os: 12,
  epb_flags: 2, epb_dropcount: 4, epb_processid_threadid: 8,
  isb_starttime: 2, isb_endtime: 3, isb_ifrecv: 4, isb_ifdrop: 5, isb_filteraccept: 6, isb_osdrop: 7, isb_usrdeliv: 8,
} as const;

/** LINKTYPE_* values files carry (not the DLT_* of pcap_open_dead: DLT_RAW is 12, LINKTYPE_RAW 101). */
export const LINKTYPE = { ETHERNET: 1, RAW: 101 } as const;

export interface InterfaceDescription {
  name: string;
  linkType: number;
  snaplen: number;
  /** The capture filter expression (if_filter, type 0: a libpcap filter string). */
  filter?: string;
  description?: string;
}

export type PacketDirection = 'in' | 'out';

/** Options of one packet that stay the same for a process: laid out once (see processOptions()). */
export type PacketOptions = Uint8Array;

export interface InterfaceStatistics {
  /** Time of the statistics, ns since the epoch. */
  tsNs: bigint;
  startNs?: bigint;
  endNs?: bigint;
  ifrecv?: bigint | number;
  ifdrop?: bigint | number;
  filteraccept?: bigint | number;
  osdrop?: bigint | number;
  usrdeliv?: bigint | number;
  comment?: string;
}

/** Where finished chunks go. Returning false asks the producer to pause (see PcapngWriter.writable). */
export interface ChunkSink {
  write(chunk: Buffer): boolean;
  /**
   * A synchronous gather write (a file): packets are then not copied into the writer's
   * chunks but written straight from where they lie (the perf ring), and flush() must run
   * before that memory is given back. See packet().
   */
  writevSync?(parts: Uint8Array[]): void;
}

/** Packets up to this long are copied byte by byte (no view object per packet). */
const SMALL_COPY = 128;
/** Packets at least this long go by reference in vectored mode; shorter ones are cheaper to copy. */
const VEC_MIN = 192;
/** Gather entries per write (IOV_MAX is 1024). */
const VEC_MAX = 1000;

/** Writes all of `parts` to `fd` (writev may write less than asked, e.g. to a pipe). */
export function writevAll(fs: { writevSync(fd: number, b: readonly NodeJS.ArrayBufferView[]): number }, fd: number, parts: Uint8Array[]): void {
  let rest = parts;
  let left = rest.reduce((n, p) => n + p.length, 0);
  while (left > 0) {
    let n = fs.writevSync(fd, rest);
    left -= n;
    if (left === 0) break;
    let i = 0;
    while (n >= rest[i]!.length) n -= rest[i++]!.length;
    rest = [rest[i]!.subarray(n), ...rest.slice(i + 1)];
  }
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** Options as bytes: code, length, value padded to 4. Without the end-of-options marker. */
class OptionList {
  private readonly parts: Buffer[] = [];
  add(code: number, value: Uint8Array): this {
    const b = Buffer.alloc(4 + pad4(value.length));
    b.writeUInt16LE(code, 0);
    b.writeUInt16LE(value.length, 2);
    b.set(value, 4);
    this.parts.push(b);
    return this;
  }
  str(code: number, s: string | undefined): this {
    if (s === undefined) return this;
    const v = Buffer.from(s, 'utf8');
    if (v.length > 0xffff) throw new CaptureError('PCAPNG', `option ${code}: ${v.length} bytes (at most 65535)`);
    return this.add(code, v);
  }
  u64(code: number, v: bigint | number | undefined): this {
    if (v === undefined) return this;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return this.add(code, b);
  }
  ts(code: number, ns: bigint | undefined): this {
    if (ns === undefined) return this;
    const b = Buffer.alloc(8);
    b.writeUInt32LE(Number(ns >> 32n), 0);
    b.writeUInt32LE(Number(ns & 0xffffffffn), 4);
    return this.add(code, b);
  }
  /** With the end-of-options marker (none at all when empty, as the format allows). */
  bytes(): Buffer {
    return this.parts.length ? Buffer.concat([...this.parts, Buffer.alloc(4)]) : Buffer.alloc(0);
  }
}

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/**
 * The per-process options of an EPB, ready to copy: epb_processid_threadid (option 8:
 * pid and tid as u32) and the comments (ptcpdump's format, see comments.ts).
 * Without epb_flags and without the end-of-options marker; pass to packet().
 */
export function processOptions(pid: number | null, tid: number | null, comments: readonly string[]): PacketOptions {
  const o = new OptionList();
  if (pid !== null) {
    const v = Buffer.alloc(8);
    v.writeUInt32LE(pid >>> 0, 0);
    v.writeUInt32LE((tid ?? 0) >>> 0, 4);
    o.add(OPT.epb_processid_threadid, v);
  }
  for (const c of comments) o.str(OPT.comment, c);
  const b = o.bytes();
  return b.length ? b.subarray(0, b.length - 4) : b; // the marker is added per packet
}

const EMPTY = new Uint8Array(0);
const CHUNK = 1 << 20;

/** Zero bytes for padding packets written by reference. */
const ZEROS = new Uint8Array(4);

/**
 * Writes little-endian sections with 32-bit word stores into 4-aligned chunks (every block
 * is a multiple of 4): a DataView store per field costs more. Little-endian hosts only,
 * which is every host the package is built for (amd64).
 */
export class PcapngWriter {
  private chunk = Buffer.from(new ArrayBuffer(CHUNK));
  private u32 = new Uint32Array(this.chunk.buffer, 0, CHUNK / 4);
  private at = 0;
  private readonly ifaces: InterfaceDescription[] = [];
  /** Packets written per interface (what isb_usrdeliv reports unless told otherwise). */
  readonly written: number[] = [];
  bytes = 0;
  /** false once the sink asked for a pause; the caller stops producing until it drains. */
  writable = true;
  private readonly vectored: boolean;
  /** Vectored mode: what the next writev sends, and where unsent chunk bytes start. */
  private parts: Uint8Array[] = [];
  private mark = 0;

  constructor(private readonly sink: ChunkSink, opts: { application?: string; hardware?: string; comment?: string } = {}) {
    if (os.endianness() !== 'LE') throw new CaptureError('PCAPNG', 'the pcapng writer lays out little-endian sections: big-endian hosts are not supported');
    this.vectored = typeof sink.writevSync === 'function';
    const o = new OptionList()
      .str(OPT.comment, opts.comment)
      .str(OPT.shb_hardware, opts.hardware ?? os.cpus()[0]?.model)
      .str(OPT.shb_os, `${os.type()} ${os.release()}`)
      .str(OPT.shb_userappl, opts.application ?? 'ebpfmon');
    const head = Buffer.alloc(16);
    head.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
    head.writeUInt16LE(1, 4); // major
    head.writeUInt16LE(0, 6); // minor
    head.writeBigInt64LE(-1n, 8); // section length not known (streaming)
    this.put(block(SHB, Buffer.concat([head, o.bytes()])));
  }

  /** Adds an interface; returns its interface id (the order of IDBs, from 0). */
  addInterface(i: InterfaceDescription): number {
    if (!Number.isInteger(i.snaplen) || i.snaplen < 0) throw new CaptureError('PCAPNG', `interface ${i.name}: snaplen ${i.snaplen}`);
    const o = new OptionList().str(OPT.if_name, i.name).str(OPT.if_description, i.description);
    o.add(OPT.if_tsresol, Uint8Array.of(9)); // timestamps in nanoseconds
    if (i.filter !== undefined && i.filter !== '') o.add(OPT.if_filter, Buffer.concat([Uint8Array.of(0), Buffer.from(i.filter, 'utf8')]));
    o.str(OPT.if_os, `${os.type()} ${os.release()}`);
    const head = Buffer.alloc(8);
    head.writeUInt16LE(i.linkType, 0);
    head.writeUInt32LE(i.snaplen, 4);
    this.put(block(IDB, Buffer.concat([head, o.bytes()])));
    this.ifaces.push(i);
    this.written.push(0);
    return this.ifaces.length - 1;
  }

  get interfaces(): readonly InterfaceDescription[] {
    return this.ifaces;
  }

  /**
   * One Enhanced Packet Block. `tsHi`/`tsLo` are the 64-bit timestamp in ns since the epoch
   * as two u32 (see timebase.ts: no BigInt per packet). The packet is src[start, start +
   * capLen), copied (a Buffer over the ring: copying from it allocates nothing). `srcU32`, when
   * given, is the same memory as `src` as 32-bit words (offset 0): a short packet starting on a
   * word is then copied a word at a time.
   */
  packet(ifaceId: number, tsHi: number, tsLo: number, src: Uint8Array, start: number, capLen: number, wireLen: number, dir: PacketDirection | null, opts: PacketOptions = EMPTY, srcU32?: Uint32Array): void {
    if (ifaceId >= this.ifaces.length) throw new CaptureError('PCAPNG', `packet on interface ${ifaceId}: only ${this.ifaces.length} described`);
    const optLen = (dir ? 8 : 0) + opts.length;
    const total = 32 + pad4(capLen) + (optLen ? optLen + 4 : 0);
    if (this.vectored && capLen >= VEC_MIN) {
      // By reference: the header goes into the chunk, the packet bytes stay where they are.
      if (this.at + total - pad4(capLen) > CHUNK || this.parts.length >= VEC_MAX) this.flush();
      const o = this.at;
      this.header(this.u32, o, total, ifaceId, tsHi, tsLo, capLen, wireLen);
      this.parts.push(this.chunk.subarray(this.mark, o + 28), src.subarray(start, start + capLen));
      const pad = pad4(capLen) - capLen;
      if (pad) this.parts.push(ZEROS.subarray(0, pad)); // keeps the chunk 4-aligned
      this.at = this.mark = o + 28;
      this.at = this.tail(this.chunk, this.u32, this.at, 0, total, dir, opts);
      this.written[ifaceId]!++;
      return;
    }
    if (this.at + total > CHUNK) this.flush();
    if (total > CHUNK) {
      // A single huge packet (a 256 KiB GSO frame with comments): its own buffer.
      const big = Buffer.from(new ArrayBuffer(total));
      this.layout(big, new Uint32Array(big.buffer), 0, total, ifaceId, tsHi, tsLo, src, start, capLen, wireLen, dir, opts, undefined);
      this.emit(big);
    } else {
      this.layout(this.chunk, this.u32, this.at, total, ifaceId, tsHi, tsLo, src, start, capLen, wireLen, dir, opts, srcU32);
      this.at += total;
    }
    this.written[ifaceId]!++;
  }

  private header(u: Uint32Array, o: number, total: number, ifaceId: number, tsHi: number, tsLo: number, capLen: number, wireLen: number): void {
    const w = o >> 2;
    u[w] = EPB;
    u[w + 1] = total;
    u[w + 2] = ifaceId;
    u[w + 3] = tsHi;
    u[w + 4] = tsLo;
    u[w + 5] = capLen;
    u[w + 6] = wireLen;
  }

  private layout(buf: Buffer, v: Uint32Array, o: number, total: number, ifaceId: number, tsHi: number, tsLo: number, src: Uint8Array, start: number, capLen: number, wireLen: number, dir: PacketDirection | null, opts: PacketOptions, srcU32: Uint32Array | undefined): void {
    this.header(v, o, total, ifaceId, tsHi, tsLo, capLen, wireLen);
    if (capLen <= SMALL_COPY && srcU32 !== undefined && (start & 3) === 0) {
      // Word by word (both sides 4-aligned: records in the ring and blocks in the chunk),
      // the last 0-3 bytes one by one: a quarter of the loop's turns.
      const words = capLen >> 2;
      const d = (o + 28) >> 2;
      const s = start >> 2;
      for (let i = 0; i < words; i++) v[d + i] = srcU32[s + i]!;
      for (let i = words << 2; i < capLen; i++) buf[o + 28 + i] = src[start + i]!;
    } else if (capLen <= SMALL_COPY) {
      // A short packet byte by byte: cheaper than making a subarray view for set().
      for (let i = 0; i < capLen; i++) buf[o + 28 + i] = src[start + i]!;
    } else {
      // TypedArray set of a subarray: Buffer.copy costs 2-5x more per packet (its JS
      // wrapper validates and builds a view anyway; measured in bench/capture).
      buf.set(src.subarray(start, start + capLen), o + 28);
    }
    this.tail(buf, v, o + 28 + capLen, pad4(capLen) - capLen, total, dir, opts);
  }

  /** Padding after the packet bytes, the options and the trailing length; returns the end. */
  private tail(buf: Buffer, u: Uint32Array, p: number, pad: number, total: number, dir: PacketDirection | null, opts: PacketOptions): number {
    for (let i = 0; i < pad; i++) buf[p++] = 0;
    if (dir || opts.length) {
      if (dir) {
        u[p >> 2] = OPT.epb_flags | (4 << 16);
        u[(p >> 2) + 1] = dir === 'in' ? 1 : 2; // direction bits: 01 inbound, 10 outbound
        p += 8;
      }
      if (opts.length) {
        buf.set(opts, p);
        p += opts.length;
      }
      u[p >> 2] = 0; // opt_endofopt
      p += 4;
    }
    u[p >> 2] = total;
    return p + 4;
  }

  /** An Interface Statistics Block for `ifaceId`. */
  statistics(ifaceId: number, s: InterfaceStatistics): void {
    const o = new OptionList()
      .str(OPT.comment, s.comment)
      .ts(OPT.isb_starttime, s.startNs)
      .ts(OPT.isb_endtime, s.endNs)
      .u64(OPT.isb_ifrecv, s.ifrecv)
      .u64(OPT.isb_ifdrop, s.ifdrop)
      .u64(OPT.isb_filteraccept, s.filteraccept)
      .u64(OPT.isb_osdrop, s.osdrop)
      .u64(OPT.isb_usrdeliv, s.usrdeliv ?? this.written[ifaceId]);
    const head = Buffer.alloc(12);
    head.writeUInt32LE(ifaceId, 0);
    head.writeUInt32LE(Number(s.tsNs >> 32n), 4);
    head.writeUInt32LE(Number(s.tsNs & 0xffffffffn), 8);
    this.put(block(ISB, Buffer.concat([head, o.bytes()])));
  }

  private put(b: Buffer): void {
    if (this.at + b.length > CHUNK) this.flush();
    if (b.length > CHUNK) {
      if (this.vectored) {
        this.flush();
        this.bytes += b.length;
        this.sink.writevSync!([b]);
        return;
      }
      this.emit(b);
      return;
    }
    b.copy(this.chunk, this.at);
    this.at += b.length;
  }

  private emit(b: Buffer): void {
    this.bytes += b.length;
    if (!this.sink.write(b)) this.writable = false;
  }

  /** Hands what is laid out to the sink (a new chunk is started: the sink keeps the old one).
   * In vectored mode, writes synchronously; the packets' memory may be reused afterwards. */
  flush(): void {
    if (this.vectored) {
      if (this.at > this.mark) this.parts.push(this.chunk.subarray(this.mark, this.at));
      if (!this.parts.length) return;
      for (const p of this.parts) this.bytes += p.length;
      this.sink.writevSync!(this.parts);
      this.parts = [];
      this.at = this.mark = 0; // written synchronously: the chunk is free again
      return;
    }
    if (this.at === 0) return;
    if (this.at < CHUNK / 4) {
      // A streaming sink is flushed often with little in the chunk: hand over a copy and
      // keep the chunk (a fresh 1 MiB per flush would keep the collector busy).
      this.emit(Buffer.from(this.chunk.subarray(0, this.at)));
      this.at = 0;
      return;
    }
    this.emit(this.chunk.subarray(0, this.at));
    this.chunk = Buffer.from(new ArrayBuffer(CHUNK));
    this.u32 = new Uint32Array(this.chunk.buffer, 0, CHUNK / 4);
    this.at = 0;
  }

  /**
   * Vectored mode: writes out the packets still referenced where they lie, so that their
   * memory can be given back (the perf reader calls this before it moves its tail).
   * Nothing to do when no packet is held by reference.
   */
  release(): void {
    if (this.vectored && this.parts.length) this.flush();
  }

  /**
   * Where another writer of blocks (the native drain) may lay out whole blocks: the current
   * chunk from `at` to `cap`. It must call commitExternal() with its new position before
   * this writer is used again, and count its packets into `written`.
   */
  external(): { chunk: Buffer; at: number; cap: number } {
    return { chunk: this.chunk, at: this.at, cap: CHUNK };
  }

  commitExternal(at: number): void {
    if (at < this.at || at > CHUNK || (at & 3) !== 0) throw new CaptureError('PCAPNG', `external blocks end at ${at} (chunk at ${this.at} of ${CHUNK})`);
    this.at = at;
  }

  /** Bytes laid out and not yet handed to the sink. */
  get pending(): number {
    return this.at;
  }
}
