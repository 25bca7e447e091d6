// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The layer-4 load balancer: one XDP program (xdp_lb) on every interface that receives
 * VIP traffic or nat-mode replies. XDP because the decision and the rewrite happen before
 * the kernel allocates an skb, which is what makes an LB on a general-purpose host cheap.
 *
 * Per packet, in order (see dispatch() for TCP/UDP):
 *   1. drop list (source prefixes, protocols/ports/ICMP types)       -> XDP_DROP, counted
 *   2. ICMP errors about translated flows                             -> forwarded/translated
 *   3. a reply to a nat-mode flow (destination port in the NAT range) -> back to the client
 *   4. a port no VIP uses (one array read)                            -> XDP_PASS, untouched
 *   5. a flow in the conn table: its backend, without a VIP lookup
 *   6. a VIP (address, port, protocol): long-lived table, else Maglev; anything else passes
 *   7. next hop from bpf_fib_lookup (cached per backend and CPU); nat: rewrite both ends;
 *      dsr: MACs only; bpf_redirect to the egress interface (see send_out: never XDP_TX)
 *
 * The established path (5, 7) is the forwarding path bench/lb measures: one conn lookup,
 * one backend and one next-hop array read, the rewrite, two per-CPU counters.
 *
 * Why two connection tables: the LRU table (Katran's design) is cheap and survives floods,
 * but the kernel's LRU evicts by approximate recency, so a quiet long-lived flow can lose
 * its entry and, if the Maglev table changed meanwhile, its backend. Flows older than
 * promote_ns are copied into emon_lb_long, a plain hash the LRU cannot touch; the daemon
 * deletes its idle entries. A flood can fill emon_lb_long only with flows that live long,
 * and a full table only stops promotions (counted), never forwarding.
 *
 * NAT design: the client tuple (C:c -> V:v) becomes (L:p -> B:b), where L is the
 * balancer's own address on the egress interface (emon_lb_ifaddr, filled by the daemon;
 * bpf_fib_lookup picks the interface) and p a port from the configured NAT range, chosen
 * by hashing the client tuple and probing. Replies arrive as (B:b -> L:p): emon_lb_nat is
 * keyed by exactly that tuple, so a reply costs one lookup, and a port is free for a
 * backend iff that key is absent (BPF_NOEXIST makes the claim atomic across CPUs).
 * emon_lb_nat is not an LRU: an established flow never loses its reverse entry to
 * pressure; the daemon deletes idle entries. The NAT range must lie outside the
 * balancer's ip_local_port_range so that no local socket uses (L, p).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"
#include "lib/csum.bpf.h"
#include "lb.h"
#include "lb/consts.bpf.h"
#include "lb/structs.bpf.h"
#include "lb/maps.bpf.h"
#include "lb/helpers.bpf.h"
#include "lb/conn.bpf.h"
#include "lb/nat.bpf.h"
#include "lb/fib.bpf.h"
#include "lb/icmp.bpf.h"
#include "lb/droplist.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A client packet to a VIP: choose, translate, send. */
static __always_inline int fwd4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *l4,
				__u16 *check, struct emon_lb_flow_key *key, __u32 l3_len, struct decision *d,
				struct emon_lb_backend *be, const struct emon_lb_config *cfg)
{
	struct emon_lb_nh *nh;
	__u32 vslot = d->vslot;
	bool newflow;

	nh = bpf_map_lookup_elem(&emon_lb_nhc, &d->bid);
	if (!nh)
		return drop(EMON_LB_DROP_BAD_BACKEND);
	if (!nh_usable(nh, cfg, d->tick, l3_len)) {
		struct bpf_fib_lookup fib = {};
		int rc;

		fib.family = AF_INET;
		fib.l4_protocol = key->proto;
		fib.sport = key->sport;
		fib.dport = be->port;
		fib.tot_len = l3_len;
		fib.tos = ip->tos;
		fib.ifindex = ctx->ingress_ifindex;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = *(__u32 *)be->addr;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && (ip->frag_off & bpf_htons(IP_DF)))
			return icmp4_toobig(ctx, fib.mtu_result);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		nh_fill(ctx, nh, &fib, be->addr, false, cfg, d->tick);
	}
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);

	if (d->dsr) {
		/* MAC rewrite only works when the backend is the next hop. */
		if (!(nh->flags & EMON_LB_NH_ONLINK))
			return drop(EMON_LB_DROP_DSR_OFFLINK);
	} else {
		__u32 acc, ports = 0;
		__u16 port;

		if (!(nh->flags & EMON_LB_NH_LADDR))
			return drop(EMON_LB_DROP_NO_SNAT_ADDR);
		port = nat_port_for(key, d, be, nh->laddr, vslot, cfg);
		if (!port)
			return XDP_DROP;
		acc = put32(0, &ip->saddr, *(__u32 *)nh->laddr);
		acc = put32(acc, &ip->daddr, *(__u32 *)be->addr);
		ports = put16(0, l4, port);
		ports = put16(ports, l4 + 2, be->port);
		ip->check = csum_apply(ip->check, acc);
		l4_csum_update(check, key->proto, false, csum_add(acc, ports));
	}
	ttl_dec4(ip);
	newflow = commit(key, d);
	ctr_add(&emon_lb_vstats, vslot, l3_len, false, newflow);
	ctr_add(&emon_lb_bstats, d->bid, l3_len, false, newflow);
	return xmit_to(eth, nh->ifindex, nh->dmac, nh->smac);
}

/* A reply from a backend to a nat-mode flow: back to the client, from the VIP. */
static __always_inline int reply4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *l4,
				  __u16 *check, struct emon_lb_nat *n, __u8 proto, __u32 l3_len)
{
	struct bpf_fib_lookup fib = {};
	__u32 acc, ports;
	bool up = false;
	__u64 tick;
	int rc;

	fib.family = AF_INET;
	fib.l4_protocol = proto;
	fib.sport = n->vport;
	fib.dport = n->cport;
	fib.tot_len = l3_len;
	fib.tos = ip->tos;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = *(__u32 *)n->vaddr;
	fib.ipv4_dst = *(__u32 *)n->caddr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && (ip->frag_off & bpf_htons(IP_DF)))
		return icmp4_toobig(ctx, fib.mtu_result); /* to the backend, about its own packet */
	/* The balancer's stack never saw this client (XDP took its packets), so it may not
	 * know its MAC: hand the translated reply to the stack, which resolves the neighbour
	 * and forwards it; the following replies go through XDP again. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		up = true;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);

	acc = put32(0, &ip->saddr, *(__u32 *)n->vaddr);
	acc = put32(acc, &ip->daddr, *(__u32 *)n->caddr);
	ports = put16(0, l4, n->vport);
	ports = put16(ports, l4 + 2, n->cport);
	ip->check = csum_apply(ip->check, acc);
	l4_csum_update(check, proto, false, csum_add(acc, ports));

	tick = tick_now();
	if (tick - n->touch >= tick_hz()) {
		n->touch = tick;
		n->last_ns = bpf_ktime_get_coarse_ns();
	}
	if (!(n->flags & EMON_LB_NAT_REPLIED))
		n->flags |= EMON_LB_NAT_REPLIED; /* written once per flow, not per packet */
	stat_inc(EMON_LB_STAT_NAT_REPLY);
	ctr_add(&emon_lb_vstats, n->vip, l3_len, true, false);
	ctr_add(&emon_lb_bstats, n->backend, l3_len, true, false);
	if (up) {
		stat_inc(EMON_LB_STAT_NEIGH_PASS);
		return XDP_PASS; /* the stack decrements the TTL */
	}
	ttl_dec4(ip);
	return xmit(ctx, eth, &fib);
}

/* IPv4 with options or fragments: never balanced (ports may be absent; the rewrite paths
 * assume a 20-byte header). Dropped with a reason when they are VIP traffic. */
static __always_inline int unusual4(struct iphdr *ip, void *end, int reason)
{
	__u32 ihl = ip->ihl * 4;
	__u16 *ports;

	if (ihl < sizeof(*ip) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return pass();
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return pass(); /* a later fragment: no ports to tell */
	ihl &= 0x3c; /* Mask needed to calm verifier: ihl <= 60. */
	ports = (void *)ip + ihl;
	if ((void *)(ports + 2) > end)
		return pass();
	if (vip_lookup(&ip->daddr, 4, ports[1], ip->protocol, AF_INET))
		return drop(reason);
	return pass();
}

/* ---- IPv6 ------------------------------------------------------------------------------ */

static __always_inline int fwd6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *l4,
				__u16 *check, struct emon_lb_flow_key *key, __u32 l3_len, struct decision *d,
				struct emon_lb_backend *be, const struct emon_lb_config *cfg)
{
	struct emon_lb_nh *nh;
	__u32 vslot = d->vslot;
	bool newflow;

	nh = bpf_map_lookup_elem(&emon_lb_nhc, &d->bid);
	if (!nh)
		return drop(EMON_LB_DROP_BAD_BACKEND);
	if (!nh_usable(nh, cfg, d->tick, l3_len)) {
		struct bpf_fib_lookup fib = {};
		int rc;

		fib.family = AF_INET6;
		fib.l4_protocol = key->proto;
		fib.sport = key->sport;
		fib.dport = be->port;
		fib.tot_len = l3_len;
		fib.flowinfo = *(__u32 *)ip & bpf_htonl(0x0FFFFFFF);
		fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(fib.ipv6_src, &ip->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return icmp6_toobig(ctx, fib.mtu_result);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		nh_fill(ctx, nh, &fib, be->addr, true, cfg, d->tick);
	}
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);

	if (d->dsr) {
		if (!(nh->flags & EMON_LB_NH_ONLINK))
			return drop(EMON_LB_DROP_DSR_OFFLINK);
	} else {
		__u32 acc, ports = 0;
		__u16 port;

		if (!(nh->flags & EMON_LB_NH_LADDR))
			return drop(EMON_LB_DROP_NO_SNAT_ADDR);
		port = nat_port_for(key, d, be, nh->laddr, vslot, cfg);
		if (!port)
			return XDP_DROP;
		acc = put128(0, &ip->saddr, nh->laddr);
		acc = put128(acc, &ip->daddr, be->addr);
		ports = put16(0, l4, port);
		ports = put16(ports, l4 + 2, be->port);
		l4_csum_update(check, key->proto, true, csum_add(acc, ports));
	}
	ip->hop_limit--;
	newflow = commit(key, d);
	ctr_add(&emon_lb_vstats, vslot, l3_len, false, newflow);
	ctr_add(&emon_lb_bstats, d->bid, l3_len, false, newflow);
	return xmit_to(eth, nh->ifindex, nh->dmac, nh->smac);
}

static __always_inline int reply6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *l4,
				  __u16 *check, struct emon_lb_nat *n, __u8 proto, __u32 l3_len)
{
	struct bpf_fib_lookup fib = {};
	__u32 acc, ports;
	bool up = false;
	__u64 tick;
	int rc;

	fib.family = AF_INET6;
	fib.l4_protocol = proto;
	fib.sport = n->vport;
	fib.dport = n->cport;
	fib.tot_len = l3_len;
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, n->vaddr, 16);
	__builtin_memcpy(fib.ipv6_dst, n->caddr, 16);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return icmp6_toobig(ctx, fib.mtu_result);
	/* The balancer's stack never saw this client (XDP took its packets), so it may not
	 * know its MAC: hand the translated reply to the stack, which resolves the neighbour
	 * and forwards it; the following replies go through XDP again. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		up = true;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);

	acc = put128(0, &ip->saddr, n->vaddr);
	acc = put128(acc, &ip->daddr, n->caddr);
	ports = put16(0, l4, n->vport);
	ports = put16(ports, l4 + 2, n->cport);
	l4_csum_update(check, proto, true, csum_add(acc, ports));

	tick = tick_now();
	if (tick - n->touch >= tick_hz()) {
		n->touch = tick;
		n->last_ns = bpf_ktime_get_coarse_ns();
	}
	if (!(n->flags & EMON_LB_NAT_REPLIED))
		n->flags |= EMON_LB_NAT_REPLIED; /* written once per flow, not per packet */
	stat_inc(EMON_LB_STAT_NAT_REPLY);
	ctr_add(&emon_lb_vstats, n->vip, l3_len, true, false);
	ctr_add(&emon_lb_bstats, n->backend, l3_len, true, false);
	if (up) {
		stat_inc(EMON_LB_STAT_NEIGH_PASS);
		return XDP_PASS; /* the stack decrements the TTL */
	}
	ip->hop_limit--;
	return xmit(ctx, eth, &fib);
}

/* TCP/UDP after parsing, both families. In order of what a balancer sees most:
 * replies to nat-mode flows (their destination port is a NAT port), established flows
 * (the conn table alone decides), then new flows to a VIP. Everything else passes. */
static __always_inline int dispatch(struct xdp_md *ctx, struct ethhdr *eth, void *ip, void *l4, __u16 *check,
				    struct emon_lb_flow_key *key, __u8 tcp_flags, __u32 l3_len,
				    const struct emon_lb_config *cfg, const bool v6)
{
	bool syn = key->proto == IPPROTO_TCP && (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct decision d = { .tick = tick_now() };
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	__u8 *vports;
	__u32 port;

	if (nat_range(cfg, key->dport)) {
		n = bpf_map_lookup_elem(&emon_lb_nat, key);
		if (n)
			return v6 ? reply6(ctx, eth, ip, l4, check, n, key->proto, l3_len)
				  : reply4(ctx, eth, ip, l4, check, n, key->proto, l3_len);
	}
	port = bpf_ntohs(key->dport);
	vports = bpf_map_lookup_elem(&emon_lb_vports, &port);
	if (!vports || !*vports)
		return pass();
	c = bpf_map_lookup_elem(&emon_lb_conns, key);
	if (c) {
		be = established(c, key, cfg, syn, &d);
		if (be)
			goto forward;
	}
	vip = vip_lookup(key->daddr, v6 ? 16 : 4, key->dport, key->proto, key->family);
	if (!vip)
		return pass();
	be = schedule(key, vip, syn, c != NULL, &d);
	if (!be)
		return XDP_DROP;
forward:
	return v6 ? fwd6(ctx, eth, ip, l4, check, key, l3_len, &d, be, cfg)
		  : fwd4(ctx, eth, ip, l4, check, key, l3_len, &d, be, cfg);
}

/* IPv4: drop list, then ICMP errors, or TCP/UDP with a plain 20-byte header to dispatch(). */
static __always_inline int lb_ipv4(struct xdp_md *ctx, struct ethhdr *eth, void *end, const struct emon_lb_config *cfg)
{
	struct iphdr *ip = (void *)(eth + 1);
	struct emon_lb_flow_key key = {};
	__u8 tcp_flags = 0;
	__u16 *ports, *check;
	__u32 l3_len;
	void *l4;

	if ((void *)(ip + 1) > end)
		return pass();
	l3_len = bpf_ntohs(ip->tot_len);
	l4 = ip + 1;

	if (cfg->flags) {
		__u16 value = 0;
		bool has = false;

		if (ip->ihl == 5 && !(ip->frag_off & bpf_htons(IP_OFFSET))) {
			__u8 *t = l4;

			if (ip->protocol == IPPROTO_ICMP && (void *)(t + 1) <= end) {
				value = t[0];
				has = true;
			} else if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && (void *)(t + 4) <= end) {
				value = ((__u16)t[2] << 8) | t[3];
				has = true;
			}
		}
		if (droplisted(cfg, false, &ip->saddr, ip->protocol, value, has, l3_len))
			return XDP_DROP;
	}
	if (ip->ihl != 5)
		return unusual4(ip, end, EMON_LB_DROP_IP_OPTIONS);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return unusual4(ip, end, EMON_LB_DROP_FRAGMENT);

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		tcp_flags = ((__u8 *)th)[13];
		check = &th->check;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		check = &uh->check;
		break;
	}
	case IPPROTO_ICMP:
		return icmp4(ctx, eth, ip, end, cfg);
	default:
		return pass();
	}
	ports = l4;
	key.family = AF_INET;
	key.proto = ip->protocol;
	__builtin_memcpy(key.saddr, &ip->saddr, 4);
	__builtin_memcpy(key.daddr, &ip->daddr, 4);
	key.sport = ports[0];
	key.dport = ports[1];
	return dispatch(ctx, eth, ip, l4, check, &key, tcp_flags, l3_len, cfg, false);
}

/* IPv6: drop list, then ICMPv6 errors, or TCP/UDP right after the fixed header to dispatch(). */
static __always_inline int lb_ipv6(struct xdp_md *ctx, struct ethhdr *eth, void *end, const struct emon_lb_config *cfg)
{
	struct ipv6hdr *ip = (void *)(eth + 1);
	struct emon_lb_flow_key key = {};
	__u8 tcp_flags = 0;
	__u16 *ports, *check;
	__u32 l3_len;
	void *l4;

	if ((void *)(ip + 1) > end)
		return pass();
	l3_len = sizeof(*ip) + bpf_ntohs(ip->payload_len);
	l4 = ip + 1;

	if (cfg->flags) {
		__u8 *t = l4;
		__u16 value = 0;
		bool has = false;

		if (ip->nexthdr == IPPROTO_ICMPV6 && (void *)(t + 1) <= end) {
			value = t[0];
			has = true;
		} else if ((ip->nexthdr == IPPROTO_TCP || ip->nexthdr == IPPROTO_UDP) && (void *)(t + 4) <= end) {
			value = ((__u16)t[2] << 8) | t[3];
			has = true;
		}
		if (droplisted(cfg, true, &ip->saddr, ip->nexthdr, value, has, l3_len))
			return XDP_DROP;
	}

	/* Extension headers (fragments included) are not walked: such packets pass to the
	 * stack, which has no route for the VIP. */
	switch (ip->nexthdr) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return pass();
		tcp_flags = ((__u8 *)th)[13];
		check = &th->check;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return pass();
		check = &uh->check;
		break;
	}
	case IPPROTO_ICMPV6:
		return icmp6(ctx, eth, ip, end, cfg);
	default:
		return pass();
	}
	ports = l4;

	key.family = AF_INET6;
	key.proto = ip->nexthdr;
	__builtin_memcpy(key.saddr, &ip->saddr, 16);
	__builtin_memcpy(key.daddr, &ip->daddr, 16);
	key.sport = ports[0];
	key.dport = ports[1];
	return dispatch(ctx, eth, ip, l4, check, &key, tcp_flags, l3_len, cfg, true);
}

/* Attached (through a pinned bpf_link, native mode where the driver supports it) to every
 * interface that receives VIP traffic or nat-mode replies. */
SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct emon_lb_config *cfg;
	__u32 zero = 0;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&emon_lb_cfg, &zero);
	if (!cfg)
		return XDP_PASS; /* cannot happen: array element 0 always exists */
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return lb_ipv4(ctx, eth, end, cfg);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return lb_ipv6(ctx, eth, end, cfg);
	return XDP_PASS; /* ARP, VLAN-tagged and other frames: not ours */
}
