// SPDX-License-Identifier: Apache-2.0
// The monitor's wire format: TypeScript mirrors of bpf/monitor/common.h, bpf/flows.h,
// bpf/sockets.h and bpf/procs.h. Each layout lists the byte offset and size of every
// field; test/unit/layout.test.ts checks them against the BTF of the built objects,
// so a change on one side that is not made on the other fails the build's tests.
import { field as f, type StructSpec } from '../bpf/layout.js';

export const EVENT_HDR = {
  name: 'emon_event_hdr', size: 16, object: 'sockets.bpf.o',
  fields: { type: f(0, 2), size: f(2, 2), cpu: f(4, 4), ts_ns: f(8, 8) },
} as const satisfies StructSpec;

export const FLOW_KEY = {
  name: 'emon_flow_key', size: 40, object: 'flows.bpf.o',
  fields: { family: f(0, 1), proto: f(1, 1), lport: f(2, 2), rport: f(4, 2), _pad: f(6, 2), laddr: f(8, 16), raddr: f(24, 16) },
} as const satisfies StructSpec;

export const OWNER = {
  name: 'emon_owner', size: 56, object: 'flows.bpf.o',
  fields: {
    tgid: f(0, 4), pid: f(4, 4), uid: f(8, 4), gid: f(12, 4), cgroup_id: f(16, 8), learned_ns: f(24, 8),
    comm: f(32, 16), how: f(48, 1), _pad: f(49, 7),
  },
} as const satisfies StructSpec;

export const FLOW = {
  name: 'emon_flow', size: 144, object: 'flows.bpf.o',
  fields: {
    tx_bytes: f(0, 8), rx_bytes: f(8, 8), tx_packets: f(16, 8), rx_packets: f(24, 8), first_ns: f(32, 8),
    last_ns: f(40, 8), closed_ns: f(48, 8), ifindex: f(56, 4), frags: f(60, 4), last_tick: f(64, 4), tcp_flags_tx: f(68, 1),
    tcp_flags_rx: f(69, 1), sock_state: f(70, 1), direction: f(71, 1), flags: f(72, 1),
    l7_state: f(73, 1), l7_budget: f(74, 4), l7_flags: f(78, 1), _pad: f(79, 1), owner: f(80, 56), close_sum: f(136, 8),
  },
} as const satisfies StructSpec;

export const ENDPOINT = {
  name: 'emon_endpoint', size: 24, object: 'flows.bpf.o',
  fields: { family: f(0, 1), proto: f(1, 1), port: f(2, 2), _pad: f(4, 4), addr: f(8, 16) },
} as const satisfies StructSpec;

/** emon_owner_ports (bpf/sockets.h EMON_OWNER_PORT_WORDS): 64-bit words of port marks, the
 * kernel's first, then as many of the daemon's (monitor/ownerports.ts). */
export const OWNER_PORT_WORDS = 1024;

export const FRAG_KEY = {
  name: 'emon_frag_key', size: 40, object: 'flows.bpf.o',
  fields: { family: f(0, 1), proto: f(1, 1), _pad: f(2, 2), id: f(4, 4), saddr: f(8, 16), daddr: f(24, 16) },
} as const satisfies StructSpec;

export const IFACE = {
  name: 'emon_iface', size: 8, object: 'flows.bpf.o',
  fields: { ifindex: f(0, 4), l2_len: f(4, 2), hooks: f(6, 1), _pad: f(7, 1) },
} as const satisfies StructSpec;
export const IFACE_SLOTS = 1024;
/** EMON_L2_UNKNOWN: the classifier reads headers relative to the network header. */
export const L2_UNKNOWN = 0xffff;

/** The classifier's hook chain (bpf/monitor/common.h EMON_HOOK_*): each stage's bit in
 * emon_iface.hooks and emon_pkt_meta.hooks, and its slot in emon_hooks. */
export const HOOK = {
  l7: { bit: 1 << 0, slot: 0 },
  capture: { bit: 1 << 1, slot: 1 },
} as const;
export type HookName = keyof typeof HOOK;
export const HOOK_SLOTS = 4;

/** emon_pkt_meta value: the packet the classifier hands to the hook chain's stages. */
export const PKT_META = {
  name: 'emon_pkt_meta', size: 120, object: 'flows.bpf.o',
  fields: {
    key: f(0, 40), owner: f(40, 56), ip_bytes: f(96, 4), ifindex: f(100, 4), l4_off: f(104, 2), l2_len: f(106, 2),
    l4_hlen: f(108, 1), ingress: f(109, 1), hooks: f(110, 1), flags: f(111, 1), tcp_flags: f(112, 1), _pad: f(113, 7),
  },
} as const satisfies StructSpec;
/** EMON_META_F_* */
export const META_F = { PARSED: 1, FLOW: 2, FRAGMENT: 4 } as const;

/** emon_dirty record: a changed flow's key and stamp (bpf/flows.h). */
export const DIRTY_REC = {
  name: 'emon_dirty_rec', size: 48, object: 'flows.bpf.o',
  fields: { key: f(0, 40), stamp: f(40, 8) },
} as const satisfies StructSpec;

/** bpf/flowread.bpf.c: one flow to read by key, and what was read. */
export const READ_SLOT = {
  name: 'emon_read_slot', size: 192, object: 'flowread.bpf.o',
  fields: { key: f(0, 40), found: f(40, 4), _pad: f(44, 4), val: f(48, 144) },
} as const satisfies StructSpec;

/** EMON_READ_BATCH in bpf/flowread.bpf.c: slots per run. */
export const READ_BATCH = 256;

export const READ_BUF = {
  name: 'emon_readbuf', size: 8 + READ_BATCH * READ_SLOT.size, object: 'flowread.bpf.o',
  fields: { count: f(0, 4), done: f(4, 4), slots: f(8, READ_BATCH * READ_SLOT.size) },
} as const satisfies StructSpec;

export const CONFIG = {
  name: 'emon_config', size: 16, object: 'flows.bpf.o',
  fields: { netns_cookie: f(0, 8), flags: f(8, 4), pidns_inum: f(12, 4) },
} as const satisfies StructSpec;

export const EVENT_CONN = {
  name: 'emon_event_conn', size: 120, object: 'sockets.bpf.o',
  fields: { hdr: f(0, 16), key: f(16, 40), owner: f(56, 56), cookie: f(112, 8) },
} as const satisfies StructSpec;

export const EVENT_CLOSE = {
  name: 'emon_event_close', size: 176, object: 'sockets.bpf.o',
  fields: {
    hdr: f(0, 16), key: f(16, 40), owner: f(56, 56), tx_bytes: f(112, 8), rx_bytes: f(120, 8), tx_packets: f(128, 8),
    rx_packets: f(136, 8), duration_ns: f(144, 8), payload_sent: f(152, 8), payload_received: f(160, 8),
    ifindex: f(168, 4), old_state: f(172, 1), flow_seen: f(173, 1), direction: f(174, 1), _pad: f(175, 1),
  },
} as const satisfies StructSpec;

export const EVENT_EXEC = {
  name: 'emon_event_exec', size: 576, object: 'procs.bpf.o',
  fields: {
    hdr: f(0, 16), tgid: f(16, 4), ppid: f(20, 4), uid: f(24, 4), gid: f(28, 4), cgroup_id: f(32, 8), comm: f(40, 16),
    filename_len: f(56, 2), args_len: f(58, 2), args_truncated: f(60, 1), _pad: f(61, 3), filename: f(64, 256), args: f(320, 256),
  },
} as const satisfies StructSpec;

export const EVENT_EXIT = {
  name: 'emon_event_exit', size: 56, object: 'procs.bpf.o',
  fields: { hdr: f(0, 16), tgid: f(16, 4), ppid: f(20, 4), uid: f(24, 4), exit_code: f(28, 4), start_ns: f(32, 8), comm: f(40, 16) },
} as const satisfies StructSpec;

export const ALL_STRUCTS: readonly StructSpec[] = [EVENT_HDR, FLOW_KEY, OWNER, FLOW, ENDPOINT, FRAG_KEY, IFACE, PKT_META, DIRTY_REC, READ_SLOT, READ_BUF, CONFIG, EVENT_CONN, EVENT_CLOSE, EVENT_EXEC, EVENT_EXIT];

/** enum emon_event_type */
export const EV = { CONNECT: 1, ACCEPT: 2, CLOSE: 3, EXEC: 4, EXIT: 5 } as const;

/** enum emon_how: the index into contract ATTRIBUTIONS. `how` of traffic the kernel sends
 * on its own behalf: no process owns it. */
export const HOW_KERNEL = 7;
export const HOW_PROC = 6;
/** True when an owner record names a process (not unknown, not the kernel). */
export const ownedByProcess = (how: number): boolean => how !== 0 && how !== HOW_KERNEL;

/** EMON_FLOW_F_* */
export const FLOW_F = { IP_OPTIONS: 1, IPV6_EXT: 2, FRAGMENTS: 4 } as const;

/** EMON_CFG_* */
export const CFG_EXEC_ARGS = 1;

/** emon_stats slots: enum emon_stat, named by contract MONITOR_COUNTERS (index = position). */
export const STAT_MAX = 32;
/** Slots the daemon itself maintains in emon_stats, after the BPF ones: flows it deleted,
 * and closes the kernel did not report that the collector inferred (flows.ts). */
export const STAT_FLOWS_DELETED = 31;
export const STAT_CLOSES_INFERRED = 30;

// --- decoding -------------------------------------------------------------------------------

export function cString(buf: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && buf[end] !== 0) end++;
  return Buffer.from(buf.buffer, buf.byteOffset + off, end - off).toString('utf8');
}
