/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* ICMP: "fragmentation needed" / "packet too big" built by the balancer, and ICMP errors
 * about translated flows, translated in turn. */
#ifndef EMON_LB_ICMP_BPF_H
#define EMON_LB_ICMP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"
#include "lib/csum.bpf.h"
#include "lb.h"
#include "lb/consts.bpf.h"
#include "lb/maps.bpf.h"
#include "lb/helpers.bpf.h"
#include "lb/conn.bpf.h"
#include "lb/nat.bpf.h"
#include "lb/fib.bpf.h"

/* ICMP "fragmentation needed" / "packet too big" ---------------------------------------
 * When a packet is larger than the MTU toward its next hop, the balancer answers its sender
 * itself (the sender's address family, quoting the packet as the sender sent it, from the
 * address it sent to), so path MTU discovery works through the translation. The frame is
 * rebuilt in place: head grows by the new headers, tail shrinks to the minimal quote. */

static __always_inline int icmp4_toobig(struct xdp_md *ctx, __u16 mtu)
{
	const int grow = sizeof(struct iphdr) + sizeof(struct icmphdr);
	const int len = sizeof(struct ethhdr) + grow + TOOBIG4_QUOTE;
	void *data, *end;
	struct ethhdr *eth, *old;
	struct iphdr *ip, *orig;
	struct icmphdr *ic;
	__u8 mac[ETH_ALEN];
	__u32 csum;

	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(EMON_LB_DROP_TOO_BIG);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + len > end)
		return drop(EMON_LB_DROP_TOO_BIG);
	eth = data;
	old = data + grow;
	ip = data + sizeof(*eth);
	ic = (void *)(ip + 1);
	orig = (void *)(ic + 1);

	__builtin_memcpy(mac, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(grow + TOOBIG4_QUOTE);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = orig->daddr;
	ip->daddr = orig->saddr;

	ic->type = ICMP_DEST_UNREACH;
	ic->code = ICMP_FRAG_NEEDED;
	ic->checksum = 0;
	ic->un.frag.__unused = 0;
	ic->un.frag.mtu = bpf_htons(mtu);

	csum = bpf_csum_diff(NULL, 0, (__be32 *)ic, sizeof(*ic) + TOOBIG4_QUOTE, 0);
	ic->checksum = ~csum_fold(csum);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0);
	ip->check = ~csum_fold(csum);

	if (bpf_xdp_adjust_tail(ctx, len - (int)(end - data)))
		return drop(EMON_LB_DROP_TOO_BIG);
	stat_inc(EMON_LB_STAT_ICMP_TOOBIG);
	drop(EMON_LB_DROP_TOO_BIG); /* the original packet is gone: count it */
	return send_out(ctx->ingress_ifindex);
}

static __always_inline int icmp6_toobig(struct xdp_md *ctx, __u32 mtu)
{
	const int grow = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	const int len = sizeof(struct ethhdr) + grow + TOOBIG6_QUOTE;
	void *data, *end;
	struct ethhdr *eth, *old;
	struct ipv6hdr *ip, *orig;
	struct icmp6hdr *ic;
	__u8 mac[ETH_ALEN];
	__u32 csum, pseudo[2];

	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(EMON_LB_DROP_TOO_BIG);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + len > end)
		return drop(EMON_LB_DROP_TOO_BIG);
	eth = data;
	old = data + grow;
	ip = data + sizeof(*eth);
	ic = (void *)(ip + 1);
	orig = (void *)(ic + 1);

	__builtin_memcpy(mac, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	*(__u32 *)ip = bpf_htonl(0x60000000); /* version 6, no traffic class, no flow label */
	ip->payload_len = bpf_htons(sizeof(*ic) + TOOBIG6_QUOTE);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = 64;
	__builtin_memcpy(&ip->saddr, &orig->daddr, 16);
	__builtin_memcpy(&ip->daddr, &orig->saddr, 16);

	ic->icmp6_type = ICMPV6_PKT_TOOBIG;
	ic->icmp6_code = 0;
	ic->icmp6_cksum = 0;
	ic->icmp6_dataun.un_data32[0] = bpf_htonl(mtu);

	/* pseudo header: addresses, upper-layer length, next header */
	pseudo[0] = bpf_htonl(sizeof(*ic) + TOOBIG6_QUOTE);
	pseudo[1] = bpf_htonl(IPPROTO_ICMPV6);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)&ip->saddr, 32, 0);
	csum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), csum);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)ic, sizeof(*ic) + TOOBIG6_QUOTE, csum);
	ic->icmp6_cksum = ~csum_fold(csum);

	if (bpf_xdp_adjust_tail(ctx, len - (int)(end - data)))
		return drop(EMON_LB_DROP_TOO_BIG);
	stat_inc(EMON_LB_STAT_ICMP_TOOBIG);
	drop(EMON_LB_DROP_TOO_BIG);
	return send_out(ctx->ingress_ifindex);
}

/* Rewrites an ICMP error's quoted packet (IPv4): inner addresses and ports, the inner IP
 * checksum, the inner TCP/UDP checksum when it was quoted, and returns the difference the
 * ICMP checksum must absorb. */
static __always_inline __u32 inner4_rewrite(struct iphdr *in, __u16 *inp, void *end,
					    __u32 saddr, __u16 sport, __u32 daddr, __u16 dport)
{
	__u32 acc, ports, icmp;
	__u16 old, *check;

	acc = put32(0, &in->saddr, saddr);
	acc = put32(acc, &in->daddr, daddr);
	ports = put16(0, &inp[0], sport);
	ports = put16(ports, &inp[1], dport);
	old = in->check;
	in->check = csum_apply(old, acc);
	icmp = csum_diff16(csum_add(acc, ports), old, in->check);
	check = in->protocol == IPPROTO_TCP ? (void *)inp + 16 : (void *)inp + 6;
	if ((void *)(check + 1) <= end) {
		old = *check;
		l4_csum_update(check, in->protocol, false, csum_add(acc, ports));
		icmp = csum_diff16(icmp, old, *check);
	}
	return icmp;
}

/* ICMP errors about translated flows. A: an error about a reply the VIP sent (a router
 * on the client side could not deliver it, or needs it smaller): goes to the flow's
 * backend, in the backend's terms. B: an error from the backend side about a packet the
 * balancer sent there: goes back to the client, in the client's terms. */
static __always_inline int icmp4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *end,
				 const struct emon_lb_config *cfg)
{
	struct icmphdr *ic = (void *)(ip + 1);
	struct bpf_fib_lookup fib = {};
	struct emon_lb_flow_key k = {};
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	struct iphdr *in;
	__u16 *inp;
	__u32 acc, diff;
	int rc;

	if ((void *)(ic + 1) > end)
		return pass();
	if (ic->type != ICMP_DEST_UNREACH && ic->type != ICMP_TIME_EXCEEDED)
		return pass();
	in = (void *)(ic + 1);
	inp = (void *)(in + 1);
	if ((void *)(inp + 4) > end)
		return pass();
	if (in->ihl != 5 || (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP))
		return pass();

	vip = vip_lookup(&in->saddr, 4, inp[0], in->protocol, AF_INET);
	if (vip) {
		/* A: the quoted packet is VIP:v -> client:c; its flow is client:c -> VIP:v. */
		k.family = AF_INET;
		k.proto = in->protocol;
		__builtin_memcpy(k.saddr, &in->daddr, 4);
		__builtin_memcpy(k.daddr, &in->saddr, 4);
		k.sport = inp[1];
		k.dport = inp[0];
		c = bpf_map_lookup_elem(&emon_lb_conns, &k);
		if (!c)
			c = bpf_map_lookup_elem(&emon_lb_long, &k);
		if (!c)
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		be = backend_get(c->backend);
		if (!be || !(be->flags & EMON_LB_BE_IN_USE))
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		fib.family = AF_INET;
		fib.ifindex = ctx->ingress_ifindex;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = *(__u32 *)be->addr;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		if (ip->ttl <= 1)
			return drop(EMON_LB_DROP_TTL);
		if (vip->mode == EMON_LB_MODE_NAT) {
			__u8 *laddr = own_addr(fib.ifindex, AF_INET);

			if (!laddr)
				return drop(EMON_LB_DROP_NO_SNAT_ADDR);
			if (!c->nat_port)
				return drop(EMON_LB_DROP_ICMP_UNKNOWN);
			acc = put32(0, &ip->saddr, *(__u32 *)laddr);
			acc = put32(acc, &ip->daddr, *(__u32 *)be->addr);
			ip->check = csum_apply(ip->check, acc);
			diff = inner4_rewrite(in, inp, end, *(__u32 *)be->addr, be->port, *(__u32 *)laddr, c->nat_port);
			ic->checksum = csum_apply(ic->checksum, diff);
		}
		ttl_dec4(ip);
		stat_inc(EMON_LB_STAT_ICMP_FWD);
		return xmit(ctx, eth, &fib);
	}

	if (!nat_range(cfg, inp[0]))
		return pass();
	/* B: the quoted packet is balancer:p -> backend:b; its reply key is backend -> balancer. */
	k.family = AF_INET;
	k.proto = in->protocol;
	__builtin_memcpy(k.saddr, &in->daddr, 4);
	__builtin_memcpy(k.daddr, &in->saddr, 4);
	k.sport = inp[1];
	k.dport = inp[0];
	n = bpf_map_lookup_elem(&emon_lb_nat, &k);
	if (!n)
		return pass();
	fib.family = AF_INET;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = *(__u32 *)n->vaddr;
	fib.ipv4_dst = *(__u32 *)n->caddr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);
	acc = put32(0, &ip->saddr, *(__u32 *)n->vaddr);
	acc = put32(acc, &ip->daddr, *(__u32 *)n->caddr);
	ip->check = csum_apply(ip->check, acc);
	diff = inner4_rewrite(in, inp, end, *(__u32 *)n->caddr, n->cport, *(__u32 *)n->vaddr, n->vport);
	ic->checksum = csum_apply(ic->checksum, diff);
	ttl_dec4(ip);
	stat_inc(EMON_LB_STAT_ICMP_REPLY);
	return xmit(ctx, eth, &fib);
}

/* As inner4_rewrite, for a quoted IPv6 packet (no header checksum; the TCP/UDP
 * checksum's pseudo header covers the addresses). */
static __always_inline __u32 inner6_rewrite(struct ipv6hdr *in, __u16 *inp, void *end,
					    const void *saddr, __u16 sport, const void *daddr, __u16 dport)
{
	__u32 acc, ports, icmp;
	__u16 old, *check;

	acc = put128(0, &in->saddr, saddr);
	acc = put128(acc, &in->daddr, daddr);
	ports = put16(0, &inp[0], sport);
	ports = put16(ports, &inp[1], dport);
	icmp = csum_add(acc, ports);
	check = in->nexthdr == IPPROTO_TCP ? (void *)inp + 16 : (void *)inp + 6;
	if ((void *)(check + 1) <= end) {
		old = *check;
		l4_csum_update(check, in->nexthdr, true, csum_add(acc, ports));
		icmp = csum_diff16(icmp, old, *check);
	}
	return icmp;
}

static __always_inline int icmp6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *end,
				 const struct emon_lb_config *cfg)
{
	struct icmp6hdr *ic = (void *)(ip + 1);
	struct bpf_fib_lookup fib = {};
	struct emon_lb_flow_key k = {};
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	struct ipv6hdr *in;
	__u16 *inp;
	__u32 acc, diff;
	int rc;

	if ((void *)(ic + 1) > end)
		return pass();
	if (ic->icmp6_type != ICMPV6_DEST_UNREACH && ic->icmp6_type != ICMPV6_PKT_TOOBIG &&
	    ic->icmp6_type != ICMPV6_TIME_EXCEED)
		return pass();
	in = (void *)(ic + 1);
	inp = (void *)(in + 1);
	if ((void *)(inp + 4) > end)
		return pass();
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return pass();

	k.family = AF_INET6;
	k.proto = in->nexthdr;
	__builtin_memcpy(k.saddr, &in->daddr, 16);
	__builtin_memcpy(k.daddr, &in->saddr, 16);
	k.sport = inp[1];
	k.dport = inp[0];

	vip = vip_lookup(&in->saddr, 16, inp[0], in->nexthdr, AF_INET6);
	if (vip) {
		c = bpf_map_lookup_elem(&emon_lb_conns, &k);
		if (!c)
			c = bpf_map_lookup_elem(&emon_lb_long, &k);
		if (!c)
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		be = backend_get(c->backend);
		if (!be || !(be->flags & EMON_LB_BE_IN_USE))
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		fib.family = AF_INET6;
		fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(fib.ipv6_src, &ip->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		if (ip->hop_limit <= 1)
			return drop(EMON_LB_DROP_TTL);
		if (vip->mode == EMON_LB_MODE_NAT) {
			__u8 *laddr = own_addr(fib.ifindex, AF_INET6);

			if (!laddr)
				return drop(EMON_LB_DROP_NO_SNAT_ADDR);
			if (!c->nat_port)
				return drop(EMON_LB_DROP_ICMP_UNKNOWN);
			/* ICMPv6's checksum covers the outer addresses too (pseudo header). */
			acc = put128(0, &ip->saddr, laddr);
			acc = put128(acc, &ip->daddr, be->addr);
			diff = inner6_rewrite(in, inp, end, be->addr, be->port, laddr, c->nat_port);
			ic->icmp6_cksum = csum_apply(ic->icmp6_cksum, csum_add(acc, diff));
		}
		ip->hop_limit--;
		stat_inc(EMON_LB_STAT_ICMP_FWD);
		return xmit(ctx, eth, &fib);
	}

	if (!nat_range(cfg, inp[0]))
		return pass();
	n = bpf_map_lookup_elem(&emon_lb_nat, &k);
	if (!n)
		return pass();
	fib.family = AF_INET6;
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, n->vaddr, 16);
	__builtin_memcpy(fib.ipv6_dst, n->caddr, 16);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);
	acc = put128(0, &ip->saddr, n->vaddr);
	acc = put128(acc, &ip->daddr, n->caddr);
	diff = inner6_rewrite(in, inp, end, n->caddr, n->cport, n->vaddr, n->vport);
	ic->icmp6_cksum = csum_apply(ic->icmp6_cksum, csum_add(acc, diff));
	ip->hop_limit--;
	stat_inc(EMON_LB_STAT_ICMP_REPLY);
	return xmit(ctx, eth, &fib);
}

#endif /* EMON_LB_ICMP_BPF_H */
