// SPDX-License-Identifier: Apache-2.0
// The capture path's wire format: TypeScript mirrors of bpf/capture.h (checked against the
// BTF of build/bpf/capture.bpf.o by test/unit/daemon/capture/layout.test.ts).
import { field as f, type StructSpec } from '../bpf/layout.js';

export const CAP_SESSIONS = 32;
export const CAP_PROG = { SELECT: 0, DELIVER: 1 } as const;
export const IFACE_CAP_ON = 1;
export const CAP_KIND = { NONE: 0, CAPTURE: 1, MIRROR: 2 } as const;

/** Map names (bpf/capture_maps.bpf.h). */
export const CAP_MAPS = {
  meta: 'emon_cap_meta',
  progs: 'emon_cap_progs',
  conf: 'emon_cap_conf',
  sessions: 'emon_cap_sess',
  stats: 'emon_cap_stats',
  events: 'emon_cap_events',
  ring: 'emon_cap_ring',
} as const;

export const CAP_PROGS = { deliverPerf: 'tc_cap_deliver', deliverRing: 'tc_cap_deliver_rb' } as const;

export const CAP_META = {
  name: 'emon_cap_meta', size: 72, object: 'capture.bpf.o',
  fields: { ifindex: f(0, 4), direction: f(4, 1), l2_len: f(5, 1), _pad: f(6, 2), match: f(8, 4), _pad2: f(12, 4), owner: f(16, 56) },
} as const satisfies StructSpec;

/** Owner fields inside emon_cap_meta (struct emon_owner, see monitor/wire.ts OWNER). */
export const CAP_META_OWNER = { tgid: 16, pid: 20, uid: 24, gid: 28, cgroup_id: 32, comm: 48, how: 64 } as const;

export const CAP_CONF = {
  name: 'emon_cap_conf', size: 16, object: 'capture.bpf.o',
  fields: { capture: f(0, 4), mirror: f(4, 4), snaplen: f(8, 4), _pad: f(12, 4) },
} as const satisfies StructSpec;

export const CAP_SESSION = {
  name: 'emon_cap_session', size: 16, object: 'capture.bpf.o',
  fields: { kind: f(0, 4), snaplen: f(4, 4), ifindex: f(8, 4), flags: f(12, 4) },
} as const satisfies StructSpec;

export const CAP_COUNTERS = {
  name: 'emon_cap_counters', size: 64, object: 'capture.bpf.o',
  fields: {
    matched: f(0, 8), matched_bytes: f(8, 8), delivered: f(16, 8), delivered_bytes: f(24, 8),
    dropped: f(32, 8), truncated: f(40, 8), failed: f(48, 8), _reserved: f(56, 8),
  },
} as const satisfies StructSpec;

export const CAP_RECORD = {
  name: 'emon_cap_record', size: 72, object: 'capture.bpf.o',
  fields: {
    ts_ns: f(0, 8), cgroup_id: f(8, 8), sessions: f(16, 4), ifindex: f(20, 4), wire_len: f(24, 4), cap_len: f(28, 4),
    tgid: f(32, 4), tid: f(36, 4), uid: f(40, 4), gid: f(44, 4), comm: f(48, 16), direction: f(64, 1), l2_len: f(65, 1),
    how: f(66, 1), _pad: f(67, 5),
  },
} as const satisfies StructSpec;

export const CAP_STRUCTS: readonly StructSpec[] = [CAP_META, CAP_CONF, CAP_SESSION, CAP_COUNTERS, CAP_RECORD];
