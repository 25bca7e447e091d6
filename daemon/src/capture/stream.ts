// SPDX-License-Identifier: Apache-2.0
// One capture session's output: decodes the records the kernel delivered (struct
// emon_cap_record + packet bytes, see wire.ts), keeps the ones for this session, and
// writes them as pcapng: an IDB the first time an interface appears, an EPB per packet
// with its direction, option 8 (pid, tid) and ptcpdump-style comments, ISBs on request.
// Plain inputs and outputs: records in, bytes to a sink; the kernel counters come from
// the caller (they live in emon_cap_stats).
import { CAP_RECORD } from './wire.js';
import { ptcpdumpComments, type ProcessDetails } from './comments.js';
import { LINKTYPE, PcapngWriter, processOptions, type ChunkSink, type PacketOptions } from './pcapng.js';
import type { TimeBase } from './timebase.js';

const R = CAP_RECORD.fields;
const HDR = CAP_RECORD.size;
/** Word indexes of the record's u32 fields (little-endian host: the low word of a u64 first). */
const W = {
  ts_ns: R.ts_ns.offset / 4, sessions: R.sessions.offset / 4, ifindex: R.ifindex.offset / 4, wire_len: R.wire_len.offset / 4,
  cap_len: R.cap_len.offset / 4, tgid: R.tgid.offset / 4, tid: R.tid.offset / 4, uid: R.uid.offset / 4, comm: R.comm.offset / 4,
} as const;
const DIR_OUT = 1;
const DIR_IN = 2;

export interface CaptureInterface {
  ifindex: number;
  name: string;
  /** Link-layer header length at TC: 14 Ethernet, 0 raw IP. */
  l2Len: number;
}

/** What the statistics blocks report (contract/capture.ts CaptureCounters). */
export interface SessionCounters {
  matched: number;
  captured: number;
  /** The kernel could not queue the copy (ring full). */
  dropped: number;
  /** The daemon did not send the copy (the client read too slowly). */
  clientDropped: number;
  /** Copies lost while the daemon restarted (a resumed session). */
  lostInRestart?: number;
  /** Packets written since the session started, on every connection (default: this stream's). */
  written?: number;
}

export interface CaptureStreamOptions {
  slot: number;
  snaplen: number;
  /** The expression as the user wrote it (if_filter of every IDB). */
  filter: string;
  interfaceOf: (ifindex: number) => CaptureInterface | undefined;
  /** What is known about a process; null: only what the record carries. */
  describe: (pid: number) => ProcessDetails | null;
  timebase: TimeBase;
  /** Stop after this many packets (-c). */
  count?: number;
  application?: string;
}

interface CachedOwner {
  c0: number;
  c1: number;
  c2: number;
  c3: number;
  opts: PacketOptions;
}

export class CaptureStream {
  readonly writer: PcapngWriter;
  private readonly bit: number;
  private readonly ifaceIds = new Map<number, number>();
  private readonly owners = new Map<number, CachedOwner>();
  private readonly ts = new Uint32Array(2);
  readonly startNs: bigint;
  packets = 0;
  /** Packets written shorter than they were (the snap length). */
  truncated = 0;
  /** Records for this session whose interface is unknown (skipped, counted). */
  unknownInterface = 0;
  done = false;

  constructor(sink: ChunkSink, private readonly o: CaptureStreamOptions) {
    this.bit = 1 << o.slot;
    this.writer = new PcapngWriter(sink, { application: o.application ?? 'ebpfmon capture' });
    this.startNs = o.timebase.nowNs();
  }

  get snaplen(): number {
    return this.o.snaplen;
  }

  /** Packets before the count (-c) is reached; undefined without a count. */
  countLeft(): number | undefined {
    return this.o.count === undefined ? undefined : Math.max(0, this.o.count - this.packets);
  }

  /** What the native drain wrote for this session (nativedrain.ts). */
  addNative(packets: number, truncated: number, unknownInterface: number, done: boolean): void {
    this.packets += packets;
    this.truncated += truncated;
    this.unknownInterface += unknownInterface;
    if (done || (this.o.count !== undefined && this.packets >= this.o.count)) this.done = true;
  }

  /** The IDB id of an interface (its IDB is written the first time); undefined when unknown. */
  interfaceId(ifindex: number): number | undefined {
    return this.ifaceId(ifindex);
  }

  private ifaceId(ifindex: number): number | undefined {
    let id = this.ifaceIds.get(ifindex);
    if (id !== undefined) return id;
    const i = this.o.interfaceOf(ifindex);
    if (!i) return undefined;
    id = this.writer.addInterface({ name: i.name, linkType: i.l2Len === 0 ? LINKTYPE.RAW : LINKTYPE.ETHERNET, snaplen: this.o.snaplen, filter: this.o.filter });
    this.ifaceIds.set(ifindex, id);
    return id;
  }

  /** Per-process options, laid out once per (pid, tid, command name). `w` is the record's
   * first word in `u32`. */
  ownerOptions(buf: Buffer, u32: Uint32Array, w: number): PacketOptions | undefined {
    const tgid = u32[w + W.tgid]!;
    if (tgid === 0) return undefined;
    const tid = u32[w + W.tid]!;
    const c0 = u32[w + W.comm]!, c1 = u32[w + W.comm + 1]!, c2 = u32[w + W.comm + 2]!, c3 = u32[w + W.comm + 3]!;
    const c = w * 4 + R.comm.offset;
    const key = tgid * 4194304 + tid; // tids stay below 2^22 (PID_MAX_LIMIT)
    const hit = this.owners.get(key);
    if (hit && hit.c0 === c0 && hit.c1 === c1 && hit.c2 === c2 && hit.c3 === c3) return hit.opts;
    let comm = '';
    for (let i = 0; i < 16; i++) {
      const ch = buf[c + i]!;
      if (!ch) break;
      comm += String.fromCharCode(ch);
    }
    const uid = u32[w + W.uid]!;
    const known = this.o.describe(tgid);
    const details: ProcessDetails = { ...(known ?? { pid: tgid }), pid: tgid, tid, threadName: comm, uid, cmd: known?.cmd ?? comm };
    const opts = processOptions(tgid, tid, ptcpdumpComments(details));
    if (this.owners.size > 65536) this.owners.clear();
    this.owners.set(key, { c0, c1, c2, c3, opts });
    return opts;
  }

  /**
   * One record from the rings (`buf`/`u32` at `off`, a multiple of 4; `len` bytes). Returns true when the
   * packet was written for this session.
   */
  onRecord(buf: Buffer, u32: Uint32Array, off: number, len: number): boolean {
    const w = off >> 2;
    if (this.done || len < HDR || !(u32[w + W.sessions]! & this.bit)) return false;
    const ifindex = u32[w + W.ifindex]!;
    const id = this.ifaceId(ifindex);
    if (id === undefined) {
      this.unknownInterface++;
      return false;
    }
    let capLen = u32[w + W.cap_len]!;
    if (capLen > len - HDR) capLen = len - HDR;
    if (capLen > this.o.snaplen) capLen = this.o.snaplen; // the kernel copied the largest session's snaplen
    const wireLen = u32[w + W.wire_len]!;
    if (capLen < wireLen) this.truncated++;
    this.o.timebase.toEpoch(u32[w + W.ts_ns + 1]!, u32[w + W.ts_ns]!, this.ts);
    const d = buf[off + R.direction.offset];
    this.writer.packet(id, this.ts[0]!, this.ts[1]!, buf, off + HDR, capLen, wireLen,
      d === DIR_IN ? 'in' : d === DIR_OUT ? 'out' : null, this.ownerOptions(buf, u32, w), u32);
    this.packets++;
    if (this.o.count !== undefined && this.packets >= this.o.count) this.done = true;
    return true;
  }

  /**
   * Interface Statistics Blocks: one per interface seen (none before the first packet: a
   * block needs a described interface). The session's counters are session-wide (the
   * engine and the rings do not split them by interface), so they go on the first
   * interface's block, with a comment saying so; every block carries its own interface's
   * packets written (isb_usrdeliv). isb_osdrop counts every packet lost on the way: the
   * kernel ring full, or the client too slow.
   */
  statistics(k: SessionCounters): void {
    const now = this.o.timebase.nowNs();
    if (this.ifaceIds.size === 0) return;
    for (const id of this.ifaceIds.values()) {
      if (id === 0) {
        this.writer.statistics(0, {
          tsNs: now, startNs: this.startNs, endNs: now,
          ifrecv: k.matched, filteraccept: k.matched, osdrop: k.dropped + k.clientDropped + (k.lostInRestart ?? 0),
          comment: `ebpfmon: whole session (all interfaces): matched ${k.matched}, captured ${k.captured}, dropped ${k.dropped} (kernel ring full or no daemon reading), clientDropped ${k.clientDropped} (reader too slow), lostInRestart ${k.lostInRestart ?? 0} (daemon restarted), written ${k.written ?? this.packets}, truncated ${this.truncated}`,
        });
      } else {
        this.writer.statistics(id, { tsNs: now, startNs: this.startNs, endNs: now });
      }
    }
  }
}
