// SPDX-License-Identifier: Apache-2.0
// The capture path's wire format: TypeScript mirrors of bpf/capture.h (checked against the
// BTF of build/bpf/capture.bpf.o by test/unit/daemon/capture/layout.test.ts), and the names
// of its maps and programs (bpf/capture/maps.bpf.h, bpf/capture.bpf.c).
import { field as f, type StructSpec } from '../bpf/layout.js';
import type { ComponentDef } from '../bpf/component.js';

export const CAP_SESSIONS = 32;
/** emon_cap_progs slots */
export const CAP_PROG = { DELIVER: 0 } as const;
export const CAP_KIND = { NONE: 0, CAPTURE: 1, MIRROR: 2 } as const;
export const CAP_ENCAP = { vxlan: 1, gre: 2 } as const;
export const CAP_CB_MAGIC = 0x63617031;
export const CAP_SPEC_BYTES = 4096;

/** Map names (bpf/capture/maps.bpf.h). */
export const CAP_MAPS = {
  state: 'emon_cap_state',
  progs: 'emon_cap_progs',
  conf: 'emon_cap_conf',
  sessions: 'emon_cap_sess',
  stats: 'emon_cap_stats',
  rate: 'emon_cap_rate',
  spec: 'emon_cap_spec',
  events: 'emon_cap_events',
} as const;

/** Program names (bpf/capture.bpf.c); the engine is generated at run time (select.ts). */
export const CAP_PROGS = { deliver: 'tc_cap_deliver', mirrorOut: 'tc_mirror_out', mirrorIn: 'tc_mirror_in', select: 'tc_cap_select' } as const;

/** capture.bpf.o: the delivery program and the mirror's tunnel-device programs, loaded on
 * the classifier's pinned maps and pinned with the capture maps. */
export const CAPTURE_COMPONENT: ComponentDef = {
  name: 'capture',
  file: 'capture.bpf.o',
  groups: [
    {
      capability: 'capture',
      required: false,
      alternatives: [
        {
          id: 'perf',
          label: 'generated engine + bpf_perf_event_output + bpf_clone_redirect',
          attach: [{ prog: CAP_PROGS.deliver, kind: 'tc' }, { prog: CAP_PROGS.mirrorOut, kind: 'tc' }, { prog: CAP_PROGS.mirrorIn, kind: 'tc' }],
        },
      ],
    },
  ],
};

export const CAP_STATE = {
  name: 'emon_cap_state', size: 8, object: 'capture.bpf.o',
  fields: { match: f(0, 4), _pad: f(4, 4) },
} as const satisfies StructSpec;

export const CAP_CONF = {
  name: 'emon_cap_conf', size: 16, object: 'capture.bpf.o',
  fields: { capture: f(0, 4), mirror: f(4, 4), snaplen: f(8, 4), _pad: f(12, 4) },
} as const satisfies StructSpec;

export const CAP_SESSION = {
  name: 'emon_cap_session', size: 56, object: 'capture.bpf.o',
  fields: {
    kind: f(0, 4), snaplen: f(4, 4), tunnel_ifindex: f(8, 4), tunnel_id: f(12, 4), interval_ns: f(16, 8), burst_ns: f(24, 8),
    remote: f(32, 16), mtu: f(48, 4), overhead: f(52, 2), family: f(54, 1), encap: f(55, 1),
  },
} as const satisfies StructSpec;

export const CAP_RATE = {
  name: 'emon_cap_rate', size: 8, object: 'capture.bpf.o',
  fields: { tat_ns: f(0, 8) },
} as const satisfies StructSpec;

export const CAP_COUNTERS = {
  name: 'emon_cap_counters', size: 96, object: 'capture.bpf.o',
  fields: {
    matched: f(0, 8), matched_bytes: f(8, 8), captured: f(16, 8), captured_bytes: f(24, 8), dropped: f(32, 8), mirrored: f(40, 8),
    mirrored_bytes: f(48, 8), truncated: f(56, 8), rate_limited: f(64, 8), failed: f(72, 8), too_big: f(80, 8), _reserved: f(88, 8),
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

export const CAP_STRUCTS: readonly StructSpec[] = [CAP_STATE, CAP_CONF, CAP_SESSION, CAP_RATE, CAP_COUNTERS, CAP_RECORD];

/** Kernel counter fields by their user-space names (the C field in camelCase). */
export type KernelCounterName = 'matched' | 'matchedBytes' | 'captured' | 'capturedBytes' | 'dropped' | 'mirrored' | 'mirroredBytes' | 'truncated' | 'rateLimited' | 'failed' | 'tooBig';
export const KERNEL_COUNTERS: Readonly<Record<KernelCounterName, keyof typeof CAP_COUNTERS.fields>> = {
  matched: 'matched', matchedBytes: 'matched_bytes', captured: 'captured', capturedBytes: 'captured_bytes', dropped: 'dropped', mirrored: 'mirrored',
  mirroredBytes: 'mirrored_bytes', truncated: 'truncated', rateLimited: 'rate_limited', failed: 'failed', tooBig: 'too_big',
};
