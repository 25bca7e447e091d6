/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* For the stages of the classifier's hook chain (programs in emon_hooks: bpf/l7.bpf.c's
 * tc_l7_flow, capture's tc_cap_select). A stage is tail-called by the classifier (or by the
 * stage before it) with the packet's meta in emon_pkt_meta; it never changes the packet,
 * and it ends with hooks_next(), which runs the next wanted stage or returns the
 * classifier's verdict. */
#ifndef EMON_MONITOR_HOOKS_BPF_H
#define EMON_MONITOR_HOOKS_BPF_H

#include "monitor/helpers.bpf.h"

/* What the classifier returns, and so every stage: "no opinion", later TC filters run. */
#define EMON_TC_VERDICT (-1) /* TC_ACT_UNSPEC */

static __always_inline struct emon_pkt_meta *hooks_meta(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emon_pkt_meta, &zero);
}

/* Ends a stage: clears its own bit and tail-calls the next stage still wanted. Returns the
 * verdict when there is none (or its slot is empty: the tail call falls through). Slots
 * run in order, so a stage only ever looks at the slots after its own. */
static __always_inline int hooks_next(struct __sk_buff *skb, struct emon_pkt_meta *m, __u8 done)
{
	if (!m)
		return EMON_TC_VERDICT;
	m->hooks &= ~done;
	if (m->hooks & EMON_HOOK_CAPTURE)
		bpf_tail_call(skb, &emon_hooks, EMON_HOOK_SLOT_CAPTURE);
	return EMON_TC_VERDICT;
}

#endif /* EMON_MONITOR_HOOKS_BPF_H */
