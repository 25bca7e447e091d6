/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Counters (per-CPU: no atomics) and the per-packet clock. */
#ifndef EMON_LB_HELPERS_BPF_H
#define EMON_LB_HELPERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lb.h"
#include "lb/maps.bpf.h"

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_lb_stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other CPU writes it */
}

static __always_inline int drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&emon_lb_drops, &reason);

	if (v)
		*v += 1;
	return XDP_DROP;
}

static __always_inline int pass(void)
{
	stat_inc(EMON_LB_STAT_PASS);
	return XDP_PASS;
}

static __always_inline void ctr_add(void *map, __u32 idx, __u32 bytes, bool reply, bool newflow)
{
	struct emon_lb_ctr *c = bpf_map_lookup_elem(map, &idx);

	if (!c)
		return;
	if (reply) {
		c->rpackets += 1;
		c->rbytes += bytes;
	} else {
		c->packets += 1;
		c->bytes += bytes;
	}
	if (newflow)
		c->flows += 1;
}

extern unsigned int CONFIG_HZ __kconfig __weak;

/* The per-packet clock (see EMON_LB_TOUCH_NS): jiffies when HZ is known, else coarse ns. */
static __always_inline __u64 tick_now(void)
{
	return CONFIG_HZ ? bpf_jiffies64() : bpf_ktime_get_coarse_ns();
}

/* Ticks per second. */
static __always_inline __u64 tick_hz(void)
{
	return CONFIG_HZ ? CONFIG_HZ : 1000000000ULL;
}

#endif /* EMON_LB_HELPERS_BPF_H */
