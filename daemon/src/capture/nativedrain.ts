// SPDX-License-Identifier: Apache-2.0
// The native drain (daemon/native/capdrain.c, built into build/native/libemoncapdrain.so):
// one koffi call walks every perf ring and lays out the Enhanced Packet Blocks of every
// capture session straight into the sessions' pcapng chunks. What is rare stays here:
// a new interface (the stream writes its IDB), a new owner (option 8 and the ptcpdump
// comments, laid out by the stream and copied into the session's owner table), a full chunk
// (the writer hands it to the sink). The C side returns at the record that needs one of
// them and is called again; see the C file for the contract.
//
// Why C: the per-record JavaScript (record header, EPB, copies) and the runtime around it
// (deoptimisations of the hot loop, GC, inline caches) were most of the daemon's CPU per
// frame (docs/capture.md "The native drain"). The TypeScript drain stays, unchanged, as the
// fallback when the library is missing or does not load; `status` says which runs.
import koffi from 'koffi';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD_DIR } from '../version.js';
import type { PerfRingReader, RingDrain } from './perfbuf.js';
import type { CaptureStream } from './stream.js';

/** Where the build puts the library: build/native/, next to build/js/ (packaged the same way). */
export const NATIVE_DRAIN_LIB = path.join(BUILD_DIR, 'native/libemoncapdrain.so');

/** Layout of capdrain.c's structs (emon_cd_layout() checks these at load). */
const CTX = {
  size: 144, offNs: 0, budgetNs: 8, rings: 16, sessions: 24, lost: 32, samples: 40, nRings: 48, nSessions: 52,
  needSession: 56, needIfindex: 60, needSlot: 64, needBytes: 68, needHdr: 72,
} as const;
const SESS = {
  size: 3152, out: 0, owners: 8, arena: 16, at: 24, cap: 28, bit: 32, snaplen: 36, left: 40, flags: 44, ownerMask: 48, nIfaces: 52,
  read: 56, clientDropped: 60, packets: 64, truncated: 68, unknownIface: 72, ifaceIndex: 80, ifaceId: 1104, written: 2128,
} as const;
const OWNER_BYTES = 32;
const RING_BYTES = 16;
const MAX_IFACES = 256;
const ID_UNKNOWN = 0xffffffff;
const S_BACKLOG = 1;
const S_DONE = 2;
const NO_COUNT = 0xffffffff;
/** Owners per session table (a power of two); cleared at three quarters, as stream.ts's Map at 65536. */
const OWNER_SLOTS = 4096;
const ARENA_BYTES = 1 << 20;

const RC = { DONE: 0, BEHIND: 1, NEED_IFACE: 2, NEED_OWNER: 3, FULL: 4, CORRUPT: -1 } as const;

interface Lib {
  drain: (ctx: Buffer) => number;
  ownerSlot: (table: Buffer, mask: number, tgid: number, tid: number) => number;
}

export type NativeDrainLoad = { ok: true; lib: Lib; file: string } | { ok: false; reason: string };

/** Loads the library and checks its layout against this file's; never throws. */
export function loadNativeDrain(file = process.env.EBPFMON_CAPTURE_DRAIN_LIB ?? NATIVE_DRAIN_LIB): NativeDrainLoad {
  if (!fs.existsSync(file)) return { ok: false, reason: `${file} is missing (npm run build:native)` };
  try {
    const so = koffi.load(file);
    const layout = so.func('void emon_cd_layout(_Out_ uint32_t *out)') as (out: Uint32Array) => void;
    const l = new Uint32Array(8);
    layout(l);
    const want = [CTX.size, SESS.size, OWNER_BYTES, RING_BYTES, SESS.ifaceId, SESS.written, CTX.needHdr, MAX_IFACES];
    if (want.some((v, i) => l[i] !== v)) return { ok: false, reason: `${file}: layout ${[...l].join(',')} is not this daemon's ${want.join(',')} (a stale build?)` };
    return {
      ok: true,
      file,
      lib: {
        drain: so.func('int emon_cd_drain(void *ctx)') as Lib['drain'],
        ownerSlot: so.func('uint32_t emon_cd_owner_slot(void *table, uint32_t mask, uint32_t tgid, uint32_t tid)') as Lib['ownerSlot'],
      },
    };
  } catch (err) {
    return { ok: false, reason: `${file} did not load: ${(err as Error).message}` };
  }
}

/** What the native drain needs of a capture session besides its stream. */
export interface DrainSession {
  readonly slot: number;
  readonly stream: CaptureStream;
  /** The client has too much unread: records are counted as clientDropped, not written. */
  overBacklog(): boolean;
  /** Records read for the session and those of them dropped for the client. */
  addRead(read: number, clientDropped: number): void;
  /** Called after a drain that wrote for the session (the count may have been reached). */
  afterDrain(): void;
}

/** A session's memory the C side works on: its struct, owner table and option arena. */
class SessionState {
  readonly s = Buffer.from(new ArrayBuffer(SESS.size));
  readonly u32 = new Uint32Array(this.s.buffer);
  readonly owners = Buffer.from(new ArrayBuffer(OWNER_SLOTS * OWNER_BYTES));
  readonly ou32 = new Uint32Array(this.owners.buffer);
  readonly arena = Buffer.from(new ArrayBuffer(ARENA_BYTES));
  arenaUsed = 0;
  ownerCount = 0;
  nIfaces = 0;
  readonly addr: bigint;

  constructor(readonly session: DrainSession) {
    const v = this.u32;
    this.addr = koffi.address(this.s) as bigint;
    this.s.writeBigUInt64LE(koffi.address(this.owners) as bigint, SESS.owners);
    this.s.writeBigUInt64LE(koffi.address(this.arena) as bigint, SESS.arena);
    v[SESS.bit / 4] = (1 << session.slot) >>> 0;
    v[SESS.snaplen / 4] = session.stream.snaplen;
    v[SESS.ownerMask / 4] = OWNER_SLOTS - 1;
  }

  clearOwners(): void {
    this.owners.fill(0);
    this.arenaUsed = 0;
    this.ownerCount = 0;
  }
}

/**
 * Drains a PerfRingReader's rings with the native library for a set of capture sessions
 * (the manager's live sessions, read at every drain).
 */
export class NativeDrain {
  private readonly ctx = Buffer.from(new ArrayBuffer(CTX.size));
  private readonly cu32 = new Uint32Array(this.ctx.buffer);
  private readonly hdrU32 = new Uint32Array(this.ctx.buffer, CTX.needHdr, 72 / 4);
  private readonly hdr = Buffer.from(this.ctx.buffer, CTX.needHdr, 72);
  private rings: Buffer;
  private sessionPtrs = Buffer.from(new ArrayBuffer(32 * 8));
  private readonly states = new Map<DrainSession, SessionState>();
  /** Calls into C (for status and tests). */
  calls = 0;

  constructor(private readonly lib: Lib, private readonly reader: PerfRingReader, private readonly sessions: () => readonly DrainSession[], private readonly offsetNs: () => bigint) {
    const mem = reader.ringMemory();
    this.rings = Buffer.from(new ArrayBuffer(Math.max(1, mem.length) * RING_BYTES));
    mem.forEach((r, i) => {
      this.rings.writeBigUInt64LE(r.base, i * RING_BYTES);
      this.rings.writeBigUInt64LE(BigInt(r.size), i * RING_BYTES + 8);
    });
    this.ctx.writeBigUInt64LE(koffi.address(this.rings) as bigint, CTX.rings);
    this.ctx.writeBigUInt64LE(koffi.address(this.sessionPtrs) as bigint, CTX.sessions);
    this.cu32[CTX.nRings / 4] = mem.length;
  }

  /** For PerfRingReader.setDrain(). */
  readonly drain: RingDrain = (budgetMs) => this.run(budgetMs);

  private state(s: DrainSession): SessionState {
    let st = this.states.get(s);
    if (!st) {
      st = new SessionState(s);
      this.states.set(s, st);
    }
    return st;
  }

  private run(budgetMs: number): { samples: number; behind: boolean } {
    const live = this.sessions();
    if (live.length > 32) throw new RangeError(`${live.length} capture sessions: the native drain takes at most 32`);
    // Forget sessions that ended; retry interfaces that were unknown (stream.ts asks for
    // them again at every record: once per drain is enough to see one appear).
    for (const s of this.states.keys()) if (!live.includes(s)) this.states.delete(s);
    const sts = live.map((s) => this.state(s));
    sts.forEach((st, i) => {
      this.sessionPtrs.writeBigUInt64LE(st.addr, i * 8);
      const v = st.u32;
      for (let k = 0; k < st.nIfaces; k++) {
        if (v[SESS.ifaceId / 4 + k] === ID_UNKNOWN) {
          v[SESS.ifaceIndex / 4 + k] = v[SESS.ifaceIndex / 4 + st.nIfaces - 1]!;
          v[SESS.ifaceId / 4 + k] = v[SESS.ifaceId / 4 + st.nIfaces - 1]!;
          st.nIfaces--;
          k--;
        }
      }
      v[SESS.nIfaces / 4] = st.nIfaces;
    });
    const c = this.cu32;
    c[CTX.nSessions / 4] = sts.length;
    this.ctx.writeBigInt64LE(this.offsetNs(), CTX.offNs);
    const deadline = performance.now() + budgetMs;
    let samples = 0;
    let behind = false;
    // Calls end with the rings empty, the budget spent (C looks at the clock every 256
    // records), or something to resolve here; each of those is resolved once (an
    // interface, an owner, a flush), so the loop ends.
    for (;;) {
      const left = deadline - performance.now();
      this.ctx.writeBigUInt64LE(BigInt(Math.max(1, Math.ceil(left * 1e6))), CTX.budgetNs);
      for (const st of sts) this.before(st);
      this.ctx.writeBigUInt64LE(0n, CTX.lost);
      this.ctx.writeBigUInt64LE(0n, CTX.samples);
      this.calls++;
      const rc = this.lib.drain(this.ctx);
      samples += Number(this.ctx.readBigUInt64LE(CTX.samples));
      this.reader.stats.lost += Number(this.ctx.readBigUInt64LE(CTX.lost));
      for (const st of sts) this.after(st);
      if (rc === RC.DONE) break;
      if (rc === RC.BEHIND) {
        behind = true;
        break;
      }
      if (rc === RC.CORRUPT) break; // as the TypeScript walk: the record stays (never seen)
      const st = sts[c[CTX.needSession / 4]!]!;
      if (rc === RC.FULL) st.session.stream.writer.flush();
      else if (rc === RC.NEED_IFACE) this.addIface(st, c[CTX.needIfindex / 4]!);
      else if (rc === RC.NEED_OWNER) this.addOwner(st, c[CTX.needSlot / 4]!);
      else throw new Error(`native capture drain: unexpected return ${rc}`);
    }
    for (const st of sts) st.session.afterDrain();
    return { samples, behind };
  }

  /** The session's output position and flags, into its struct. */
  private before(st: SessionState): void {
    const v = st.u32;
    const stream = st.session.stream;
    const out = stream.writer.external();
    st.s.writeBigUInt64LE(koffi.address(out.chunk) as bigint, SESS.out);
    v[SESS.at / 4] = out.at;
    v[SESS.cap / 4] = out.cap;
    v[SESS.left / 4] = stream.countLeft() ?? NO_COUNT;
    v[SESS.flags / 4] = (st.session.overBacklog() ? S_BACKLOG : 0) | (stream.done ? S_DONE : 0);
  }

  /** What C wrote and counted, back into the stream and the session. */
  private after(st: SessionState): void {
    const v = st.u32;
    const stream = st.session.stream;
    const written = stream.writer.written;
    const packets = v[SESS.packets / 4]!;
    if (packets) {
      for (let id = 0; id < written.length && id < MAX_IFACES; id++) {
        const n = v[SESS.written / 4 + id]!;
        if (n) {
          written[id]! += n;
          v[SESS.written / 4 + id] = 0;
        }
      }
    }
    stream.writer.commitExternal(v[SESS.at / 4]!);
    stream.addNative(packets, v[SESS.truncated / 4]!, v[SESS.unknownIface / 4]!, (v[SESS.flags / 4]! & S_DONE) !== 0);
    st.session.addRead(v[SESS.read / 4]!, v[SESS.clientDropped / 4]!);
    v[SESS.packets / 4] = v[SESS.truncated / 4] = v[SESS.unknownIface / 4] = v[SESS.read / 4] = v[SESS.clientDropped / 4] = 0;
  }

  private addIface(st: SessionState, ifindex: number): void {
    if (st.nIfaces >= MAX_IFACES) throw new RangeError(`native capture drain: more than ${MAX_IFACES} interfaces in one session`);
    const id = st.session.stream.interfaceId(ifindex);
    const v = st.u32;
    v[SESS.ifaceIndex / 4 + st.nIfaces] = ifindex;
    v[SESS.ifaceId / 4 + st.nIfaces] = id ?? ID_UNKNOWN;
    st.nIfaces++;
    v[SESS.nIfaces / 4] = st.nIfaces;
  }

  private addOwner(st: SessionState, slot: number): void {
    const h = this.hdrU32;
    const tgid = h[8]!; // emon_cap_record.tgid (byte 32)
    const tid = h[9]!;
    const opts = st.session.stream.ownerOptions(this.hdr, this.hdrU32, 0);
    const optBytes = opts ?? new Uint8Array(0);
    if (slot === 0xffffffff || st.ownerCount >= (OWNER_SLOTS * 3) / 4 || st.arenaUsed + optBytes.length > ARENA_BYTES) {
      st.clearOwners();
      slot = this.lib.ownerSlot(st.owners, OWNER_SLOTS - 1, tgid, tid);
    }
    if (optBytes.length > ARENA_BYTES) throw new RangeError(`native capture drain: ${optBytes.length} bytes of packet options for pid ${tgid}`);
    const o = st.ou32;
    const w = slot * (OWNER_BYTES / 4);
    if (o[w] === 0) st.ownerCount++;
    o[w] = tgid;
    o[w + 1] = tid;
    for (let i = 0; i < 4; i++) o[w + 2 + i] = h[12 + i]!; // comm (byte 48)
    o[w + 6] = st.arenaUsed;
    o[w + 7] = optBytes.length;
    st.arena.set(optBytes, st.arenaUsed);
    st.arenaUsed += optBytes.length;
  }
}
