// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The layer-4 load balancer: one XDP program (xdp_lb) on every interface that receives
 * VIP traffic or nat-mode replies. XDP because the decision and the rewrite happen before
 * the kernel allocates an skb, which is what makes an LB on a general-purpose host cheap.
 *
 * Per packet, in order (process_packet(), then dispatch() for TCP/UDP):
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
#include "lb/parse.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One packet path for both families, as Katran's process_packet(ctx, off, is_ipv6): every
 * function below takes `const bool v6`, and xdp_lb calls process_packet() with a constant,
 * so the compiler inlines one copy per family with the other family's branches gone (the
 * object has the instructions of two hand-written twins, the source has one path). */

/* A client packet to a VIP: choose, translate, send. */
static __always_inline int fwd(struct xdp_md *ctx, struct ethhdr *eth, void *ip, void *l4,
			       __u16 *check, struct emon_lb_flow_key *key, __u32 l3_len, struct decision *d,
			       struct emon_lb_backend *be, const struct emon_lb_config *cfg, const bool v6)
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

		fib_init(&fib, ctx, v6);
		fib.l4_protocol = key->proto;
		fib.sport = key->sport;
		fib.dport = be->port;
		fib.tot_len = l3_len;
		if (v6)
			fib.flowinfo = *(__u32 *)ip & bpf_htonl(0x0FFFFFFF);
		else
			fib.tos = ((struct iphdr *)ip)->tos;
		fib_addrs(&fib, ip_saddr(ip, v6), be->addr, v6);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && ip_dont_frag(ip, v6))
			return icmp_toobig(ctx, fib.mtu_result, v6);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		nh_fill(ctx, nh, &fib, be->addr, v6, cfg, d->tick);
	}
	if (ip_ttl(ip, v6) <= 1)
		return drop(EMON_LB_DROP_TTL);

	if (d->dsr) {
		/* MAC rewrite only works when the backend is the next hop. */
		if (!(nh->flags & EMON_LB_NH_ONLINK))
			return drop(EMON_LB_DROP_DSR_OFF_LINK);
	} else {
		__u32 acc;
		__u16 port;

		if (!(nh->flags & EMON_LB_NH_LADDR))
			return drop(EMON_LB_DROP_NO_SNAT_ADDR);
		port = nat_port_for(key, d, be, nh->laddr, vslot, cfg);
		if (!port)
			return XDP_DROP;
		acc = ip_rewrite_addrs(ip, nh->laddr, be->addr, v6);
		l4_rewrite_ports(l4, check, key->proto, acc, port, be->port, v6);
	}
	ip_ttl_dec(ip, v6);
	newflow = commit(key, d);
	ctr_add(&emon_lb_vstats, vslot, l3_len, false, newflow);
	ctr_add(&emon_lb_bstats, d->bid, l3_len, false, newflow);
	return xmit_to(eth, nh->ifindex, nh->dmac, nh->smac);
}

/* A reply from a backend to a nat-mode flow: back to the client, from the VIP. */
static __always_inline int reply(struct xdp_md *ctx, struct ethhdr *eth, void *ip, void *l4,
				 __u16 *check, struct emon_lb_nat *n, __u8 proto, __u32 l3_len, const bool v6)
{
	struct bpf_fib_lookup fib = {};
	bool up = false;
	__u32 acc;
	__u64 tick;
	int rc;

	fib_init(&fib, ctx, v6);
	fib.l4_protocol = proto;
	fib.sport = n->vport;
	fib.dport = n->cport;
	fib.tot_len = l3_len;
	if (!v6)
		fib.tos = ((struct iphdr *)ip)->tos;
	fib_addrs(&fib, n->vaddr, n->caddr, v6);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && ip_dont_frag(ip, v6))
		return icmp_toobig(ctx, fib.mtu_result, v6); /* to the backend, about its own packet */
	/* The balancer's stack never saw this client (XDP took its packets), so it may not
	 * know its MAC: hand the translated reply to the stack, which resolves the neighbour
	 * and forwards it; the following replies go through XDP again. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		up = true;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip_ttl(ip, v6) <= 1)
		return drop(EMON_LB_DROP_TTL);

	acc = ip_rewrite_addrs(ip, n->vaddr, n->caddr, v6);
	l4_rewrite_ports(l4, check, proto, acc, n->vport, n->cport, v6);

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
	ip_ttl_dec(ip, v6);
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
			return reply(ctx, eth, ip, l4, check, n, key->proto, l3_len, v6);
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
	vip = vip_lookup(key->daddr, key->dport, key->proto, v6);
	if (!vip)
		return pass();
	be = schedule(key, vip, syn, c != NULL, &d);
	if (!be)
		return XDP_DROP;
forward:
	return fwd(ctx, eth, ip, l4, check, key, l3_len, &d, be, cfg, v6);
}

/* Drop list, then ICMP errors, or TCP/UDP to dispatch(): IPv4 with a plain 20-byte
 * header, IPv6 with the transport header right after the fixed header. */
static __always_inline int process_packet(struct xdp_md *ctx, struct ethhdr *eth, void *end,
					  const struct emon_lb_config *cfg, const bool v6)
{
	void *ip = eth + 1;
	struct emon_lb_flow_key key = {};
	__u8 tcp_flags = 0, proto;
	__u16 *check;
	__u32 l3_len;
	void *l4;

	if (ip + ip_hdr_len(v6) > end)
		return pass();
	l3_len = ip_len(ip, v6);
	l4 = ip + ip_hdr_len(v6);
	proto = ip_proto(ip, v6);

	if (cfg->flags) {
		__u16 value = 0;
		bool has = droplist_value(ip, l4, end, &value, v6);

		if (droplisted(cfg, v6, ip_saddr(ip, v6), proto, value, has, l3_len))
			return XDP_DROP;
	}
	if (!v6) {
		struct iphdr *ip4 = ip;

		if (ip4->ihl != 5)
			return unusual4(ip4, end, EMON_LB_DROP_IP_OPTIONS);
		if (ip4->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return unusual4(ip4, end, EMON_LB_DROP_FRAGMENT);
	}
	/* IPv6 extension headers (fragments included) are not walked: such packets pass to the
	 * stack, which has no route for the VIP. */
	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return v6 ? pass() : unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		tcp_flags = ((__u8 *)th)[TCP_FLAGS_OFF];
		check = &th->check;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return v6 ? pass() : unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		check = &uh->check;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
			return icmp_error(ctx, eth, ip, end, cfg, v6);
		return pass();
	default:
		return pass();
	}
	flow_key_of(&key, ip, l4, v6);
	return dispatch(ctx, eth, ip, l4, check, &key, tcp_flags, l3_len, cfg, v6);
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
		return process_packet(ctx, eth, end, cfg, false);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return process_packet(ctx, eth, end, cfg, true);
	return XDP_PASS; /* ARP, VLAN-tagged and other frames: not ours */
}
