/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The L7 programs' own maps (bpf/l7.bpf.c; the OpenSSL uprobes have theirs in
 * bpf/ssl.bpf.c). The daemon pins them with the L7 component; the L7 object reuses the
 * monitor's maps (emon_flows, emon_owners, emon_config, emon_ifaces, emon_hooks,
 * emon_pkt_meta) by pin. */
#ifndef EMON_L7_MAPS_BPF_H
#define EMON_L7_MAPS_BPF_H

#include "monitor/hooks.bpf.h"
#include "l7.h"

/* payload pieces for user space (kept apart from emon_events: a burst of payload must not
 * push connect/close events out) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} emon_l7_events SEC(".maps");

/* enum emon_l7_stat -> per-CPU counter */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_L7_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_l7_stats SEC(".maps");

static __always_inline void l7_stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&emon_l7_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, n); /* TC and the OpenSSL uprobes share these: see stat_inc in monitor/helpers.bpf.h */
}

/* What the record writers need of the packet: where the network header is, where the
 * payload starts (from the network header), how long it is, and the TCP numbers. */
struct l7_pkt {
	__u32 net_off;     /* network header's offset from skb->data (see l7_net_off) */
	__u32 payload_off;
	__u32 payload_len;
	__u32 seq;
	__u32 ack;
	__u8  tcp_flags;
	__u8  dir;
	__u8  kind;
	__u8  flags;
};

/* One record's place in its packet: `n` bytes copied from `off` (from the network header),
 * standing for `wire` bytes from sequence number `seq`. (A struct because BPF functions
 * take at most five arguments.) */
struct l7_piece {
	__u32 off;
	__u32 n;
	__u32 wire;
	__u32 seq;
};

/* Per-CPU working space of the L7 program. (TC programs do not nest on a CPU: egress runs
 * with bottom halves off, ingress in the softirq.) A tail-called program starts with a fresh
 * 512-byte stack, but the record writers' buffers and the piece being written live here so
 * that the verifier tracks them as map values, not stack slots. */
struct l7_scratch {
	struct l7_pkt lp;
	struct l7_piece pc;
	__u8 b[16];
};

/* 0 -> struct l7_scratch (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_scratch);
} emon_l7_scratch SEC(".maps");

static __always_inline struct l7_scratch *l7_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emon_l7_scratch, &zero);
}

#endif /* EMON_L7_MAPS_BPF_H */
