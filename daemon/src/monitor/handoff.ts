// SPDX-License-Identifier: Apache-2.0
// Sockets that change hands (bpf/handoff.bpf.c, docs/identity.md): the owner of a socket's
// traffic is the process that uses it. The kernel side patches owners itself
// (`attributedBy: "user"`); user space reads what it recorded: emon_handoffs (one record
// per socket whose user ever differed from its recorded owner) and its counters
// (emon_hostats, enum emon_ho_stat). TypeScript mirror of bpf/handoff.h, checked against
// the object's BTF by test/unit/layout.test.ts.
import { field as f, type StructSpec } from '../bpf/layout.js';
import type { BpfMap } from '../bpf/maps.js';
import { ATTRIBUTIONS, type AttributedBy } from '../contract/common.js';
import { HANDOFF_COUNTERS, type HandoffCounterName } from '../contract/identity.js';
import { cString, OWNER } from './wire.js';

export const HANDOFF = {
  name: 'emon_handoff', size: 120, object: 'handoff.bpf.o',
  fields: {
    orig: f(0, 56), handoff_ns: f(56, 8), tx_bytes_before: f(64, 8), rx_bytes_before: f(72, 8),
    tx_packets_before: f(80, 8), rx_packets_before: f(88, 8), user_tgid: f(96, 4), prev_tgid: f(100, 4),
    handoffs: f(104, 4), flows_patched: f(108, 4), state: f(112, 1), connected: f(113, 1), _pad: f(114, 6),
  },
} as const satisfies StructSpec;

/** enum emon_how value the handoff programs write (contract ATTRIBUTIONS `user`). */
export const HOW_USER = 8;

/** enum emon_ho_state */
export const HO_STATES: Record<number, HandoffState> = { 1: 'handed', 2: 'shared' };
export type HandoffState = 'handed' | 'shared';

export interface HandoffOwner {
  pid: number;
  tid: number;
  uid: number;
  gid: number;
  cgroupId: string;
  comm: string;
  attributedBy: AttributedBy;
}

/** One socket whose user was, at some point, not its recorded owner. */
export interface HandoffRecord {
  cookie: bigint;
  state: HandoffState;
  /** The recorded owner before the first change (creator, connector, acceptor, binder). */
  original: HandoffOwner;
  /** The process the socket's traffic goes to now (the original owner once shared). */
  userPid: number;
  previousPid: number;
  handoffs: number;
  /** CLOCK_BOOTTIME ns of the last change. */
  changedNs: bigint;
  connected: boolean;
  flowsPatched: number;
  /** The connected socket's flow counters at the last change: the previous owner's share. */
  before: { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number };
}

function decodeOwner(b: Buffer, off: number): HandoffOwner {
  const F = OWNER.fields;
  return {
    pid: b.readUInt32LE(off + F.tgid.offset),
    tid: b.readUInt32LE(off + F.pid.offset),
    uid: b.readUInt32LE(off + F.uid.offset),
    gid: b.readUInt32LE(off + F.gid.offset),
    cgroupId: b.readBigUInt64LE(off + F.cgroup_id.offset).toString(),
    comm: cString(b, off + F.comm.offset, F.comm.size),
    attributedBy: ATTRIBUTIONS[b[off + F.how.offset]!] ?? 'none',
  };
}

export function decodeHandoff(cookie: bigint, b: Buffer): HandoffRecord {
  const F = HANDOFF.fields;
  if (b.length < HANDOFF.size) throw new RangeError(`emon_handoff value is ${b.length} bytes, expected ${HANDOFF.size}`);
  const state = HO_STATES[b[F.state.offset]!];
  if (!state) throw new RangeError(`emon_handoff state ${b[F.state.offset]} is not a known state`);
  const u64 = (o: number) => Number(b.readBigUInt64LE(o));
  return {
    cookie,
    state,
    original: decodeOwner(b, F.orig.offset),
    userPid: b.readUInt32LE(F.user_tgid.offset),
    previousPid: b.readUInt32LE(F.prev_tgid.offset),
    handoffs: b.readUInt32LE(F.handoffs.offset),
    changedNs: b.readBigUInt64LE(F.handoff_ns.offset),
    connected: b[F.connected.offset] === 1,
    flowsPatched: b.readUInt32LE(F.flows_patched.offset),
    before: { txBytes: u64(F.tx_bytes_before.offset), rxBytes: u64(F.rx_bytes_before.offset), txPackets: u64(F.tx_packets_before.offset), rxPackets: u64(F.rx_packets_before.offset) },
  };
}

/** Every record of emon_handoffs. */
export function readHandoffs(map: BpfMap): HandoffRecord[] {
  const out: HandoffRecord[] = [];
  const vs = map.valueBytes;
  map.forEachChunk(({ keys, values, count }) => {
    for (let i = 0; i < count; i++) out.push(decodeHandoff(keys.readBigUInt64LE(i * 8), values.subarray(i * vs, (i + 1) * vs)));
  });
  return out;
}

/** emon_hostats summed over CPUs, named as the contract names them. */
export function handoffCounters(map: BpfMap): Record<HandoffCounterName, number> {
  const out = {} as Record<HandoffCounterName, number>;
  const k = Buffer.alloc(4);
  HANDOFF_COUNTERS.forEach((name, i) => {
    k.writeUInt32LE(i);
    const v = map.lookup(k);
    out[name] = v ? Number(map.sumPerCpuU64(v)) : 0;
  });
  return out;
}
