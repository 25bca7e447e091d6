/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Next hop and transmission: bpf_fib_lookup results, the per-backend next-hop cache
 * (emon_lb_nhc), and sending a frame out. */
#ifndef EMON_LB_FIB_BPF_H
#define EMON_LB_FIB_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/net.bpf.h"
#include "lb.h"
#include "lb/maps.bpf.h"
#include "lb/helpers.bpf.h"
#include "lb/nat.bpf.h"

static __always_inline int fib_drop(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return drop(EMON_LB_DROP_NO_NEIGH);
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return drop(EMON_LB_DROP_FWD_DISABLED);
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return drop(EMON_LB_DROP_TOO_BIG);
	default:
		return drop(EMON_LB_DROP_NO_ROUTE);
	}
}

/* A lookup from the interface the packet came in on. */
static __always_inline void fib_init(struct bpf_fib_lookup *fib, struct xdp_md *ctx, const bool v6)
{
	fib->family = v6 ? AF_INET6 : AF_INET;
	fib->ifindex = ctx->ingress_ifindex;
}

static __always_inline void fib_dst(struct bpf_fib_lookup *fib, const void *dst, const bool v6)
{
	addr_copy(v6 ? (void *)fib->ipv6_dst : (void *)&fib->ipv4_dst, dst, v6);
}

/* Source and destination (IPv4: the first 4 bytes of each). */
static __always_inline void fib_addrs(struct bpf_fib_lookup *fib, const void *src, const void *dst, const bool v6)
{
	addr_copy(v6 ? (void *)fib->ipv6_src : (void *)&fib->ipv4_src, src, v6);
	fib_dst(fib, dst, v6);
}

/* Sends the frame out of `ifindex`. Always bpf_redirect, also back out of the ingress
 * interface, never XDP_TX: on veth, an XDP_TX frame is queued to the peer but the peer's
 * NAPI is only kicked when the peer runs an XDP program itself, so toward a GRO-only peer
 * it waits for unrelated traffic; a redirect is flushed at the end of the NAPI poll. */
static __always_inline int send_out(__u32 ifindex)
{
	long act = bpf_redirect(ifindex, 0);

	if (act != XDP_REDIRECT)
		return drop(EMON_LB_DROP_REDIRECT);
	return act;
}

/* Copies a MAC address as three 16-bit words: both ends are 2-byte aligned here (the frame
 * starts the packet; dmac and smac sit at even offsets of emon_lb_nh and bpf_fib_lookup).
 * __builtin_memcpy through a `__u8 *` is six byte loads and six byte stores. */
static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	const __u16 *s = (const __u16 *)src;
	__u16 *d = (__u16 *)dst;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
}

static __always_inline int xmit_to(struct ethhdr *eth, __u32 ifindex, const __u8 *dmac, const __u8 *smac)
{
	mac_copy(eth->h_dest, dmac);
	mac_copy(eth->h_source, smac);
	return send_out(ifindex);
}

static __always_inline int xmit(struct xdp_md *ctx, struct ethhdr *eth, const struct bpf_fib_lookup *fib)
{
	return xmit_to(eth, fib->ifindex, fib->dmac, fib->smac);
}

/* Fills a next-hop cache entry from a successful lookup `fib` (toward `baddr`). The route
 * MTU comes from a second lookup with the largest length (it answers FRAG_NEEDED with the
 * MTU); both run once per backend, CPU and EMON_LB_NH_TTL_NS. */
static __always_inline void nh_fill(struct xdp_md *ctx, struct emon_lb_nh *nh, struct bpf_fib_lookup *fib,
				    const __u8 *baddr, const bool v6, const struct emon_lb_config *cfg, __u64 tick)
{
	struct bpf_fib_lookup probe;
	__u8 *laddr;

	nh->ifindex = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->flags = 0;
	if (v6 ? addr_eq(fib->ipv6_dst, baddr) : fib->ipv4_dst == *(__u32 *)baddr)
		nh->flags |= EMON_LB_NH_ONLINK;
	laddr = own_addr(fib->ifindex, v6 ? AF_INET6 : AF_INET);
	if (laddr) {
		__builtin_memcpy(nh->laddr, laddr, 16);
		nh->flags |= EMON_LB_NH_LADDR;
	}
	__builtin_memcpy(&probe, fib, sizeof(probe));
	probe.ifindex = ctx->ingress_ifindex;
	fib_dst(&probe, baddr, v6);
	probe.tot_len = 0xffff;
	nh->mtu = bpf_fib_lookup(ctx, &probe, sizeof(probe), 0) == BPF_FIB_LKUP_RET_FRAG_NEEDED ? probe.mtu_result : 0xffff;
	nh->gen = cfg->nh_gen;
	nh->expires = tick + tick_hz() * (EMON_LB_NH_TTL_NS / 1000000000ULL);
}

static __always_inline bool nh_usable(const struct emon_lb_nh *nh, const struct emon_lb_config *cfg, __u64 tick, __u32 l3_len)
{
	return nh->ifindex && nh->gen == cfg->nh_gen && tick < nh->expires && l3_len <= nh->mtu;
}

#endif /* EMON_LB_FIB_BPF_H */
