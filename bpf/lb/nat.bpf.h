/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* nat mode: the balancer-side port of a flow and its reverse entry in emon_lb_nat (see
 * "NAT design" in lb.bpf.c). */
#ifndef EMON_LB_NAT_BPF_H
#define EMON_LB_NAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"
#include "lb.h"
#include "lb/maps.bpf.h"
#include "lb/consts.bpf.h"
#include "lb/structs.bpf.h"
#include "lb/helpers.bpf.h"
#include "lb/conn.bpf.h"

static __always_inline bool nat_range(const struct emon_lb_config *cfg, __u16 port_be)
{
	__u16 p = bpf_ntohs(port_be);

	return p >= cfg->nat_port_min && p <= cfg->nat_port_max;
}

static __always_inline bool nat_same_client(const struct emon_lb_nat *n, const struct emon_lb_flow_key *k)
{
	return n->cport == k->sport && n->vport == k->dport &&
	       addr_eq(n->caddr, k->saddr) && addr_eq(n->vaddr, k->daddr);
}

/* Finds (existing flow) or claims a balancer-side port for the client flow `k` toward
 * backend `be` from balancer address `laddr`. Returns the port (network order) or 0
 * (drop counted). */
static __always_inline __u16 nat_port(const struct emon_lb_flow_key *k, const struct emon_lb_backend *be,
				      const __u8 *laddr, __u32 bid, __u32 vslot, __u16 hint,
				      const struct emon_lb_config *cfg)
{
	struct emon_lb_flow_key rk = {};
	struct emon_lb_nat nv = {};
	struct emon_lb_nat *n;
	__u32 range, h;
	long err;

	__builtin_memcpy(rk.saddr, be->addr, 16);
	__builtin_memcpy(rk.daddr, laddr, 16);
	rk.sport = be->port;
	rk.proto = k->proto;
	rk.family = k->family;

	__builtin_memcpy(nv.caddr, k->saddr, 16);
	__builtin_memcpy(nv.vaddr, k->daddr, 16);
	nv.cport = k->sport;
	nv.vport = k->dport;
	nv.backend = bid;
	nv.vip = vslot;
	nv.last_ns = bpf_ktime_get_coarse_ns();
	nv.touch = tick_now();

	if (cfg->nat_port_max < cfg->nat_port_min) {
		drop(EMON_LB_DROP_NAT_PORTS);
		return 0;
	}
	range = (__u32)cfg->nat_port_max - cfg->nat_port_min + 1;
	h = hint ? bpf_ntohs(hint) - cfg->nat_port_min : flow_hash(k, EMON_LB_NAT_SEED);

	/* Unrolled: clang lays this loop out with its latch falling through into its header,
	 * and 6.1's verifier (Debian 12's kernel) refuses a back-edge that is not a jump
	 * ("back-edge from insn X to X+1") even in a bounded loop; 6.18's accepts it. */
#pragma clang loop unroll(full)
	for (int i = 0; i < EMON_LB_NAT_TRIES; i++) {
		__u16 port = bpf_htons((__u16)(cfg->nat_port_min + (h + i) % range));

		rk.dport = port;
		err = bpf_map_update_elem(&emon_lb_nat, &rk, &nv, BPF_NOEXIST);
		if (!err) {
			stat_inc(EMON_LB_STAT_NAT_NEW);
			return port;
		}
		if (err != -LB_EEXIST) {
			drop(EMON_LB_DROP_NAT_FULL);
			return 0;
		}
		n = bpf_map_lookup_elem(&emon_lb_nat, &rk);
		if (n && nat_same_client(n, k)) {
			/* Ours already (the conn entry was evicted, or a touch re-checked it). */
			n->last_ns = nv.last_ns;
			n->backend = bid;
			if (!hint)
				stat_inc(EMON_LB_STAT_NAT_REUSE);
			return port;
		}
		stat_inc(EMON_LB_STAT_NAT_COLLIDE);
	}
	drop(EMON_LB_DROP_NAT_PORTS);
	return 0;
}

static __always_inline __u8 *own_addr(__u32 ifindex, __u8 family)
{
	struct emon_lb_if_key k = { .ifindex = ifindex, .family = family };
	struct emon_lb_addr *a = bpf_map_lookup_elem(&emon_lb_ifaddr, &k);

	return a ? a->addr : NULL;
}

/* The port a flow uses on the balancer side: the one already pinned (re-checking its
 * reverse entry when the flow was refreshed, as the daemon may have collected it while
 * the flow was idle), or a new one. */
static __always_inline __u16 nat_port_for(const struct emon_lb_flow_key *k, struct decision *d,
					  const struct emon_lb_backend *be, const __u8 *laddr,
					  __u32 vslot, const struct emon_lb_config *cfg)
{
	__u16 port, have = 0;

	if (d->conn)
		have = d->conn->nat_port;
	else if (d->insert == LB_INSERT_NEW && d->nc.how == EMON_LB_HOW_RESTORED)
		have = d->nc.nat_port;
	if (have && !d->touched && d->nc.how != EMON_LB_HOW_RESTORED)
		return have;
	port = nat_port(k, be, laddr, d->bid, vslot, have, cfg);
	if (port && d->conn && port != have)
		d->conn->nat_port = port;
	d->nc.nat_port = port;
	return port;
}

#endif /* EMON_LB_NAT_BPF_H */
