/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* ICMP and ICMPv6, one path for both families (`v6` is a constant at every call): the
 * "fragmentation needed" / "packet too big" messages the balancer sends itself, and ICMP
 * errors about translated flows, translated in turn. */
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

/* When a packet is larger than the MTU toward its next hop, the balancer answers its sender
 * itself (the sender's address family, quoting the packet as the sender sent it, from the
 * address it sent to), so path MTU discovery works through the translation. The frame is
 * rebuilt in place: head grows by the new headers, tail shrinks to the minimal quote.
 *
 * The two families share the frame surgery; the headers differ in every field, so each
 * family builds its own (a branch on the constant `v6`). */
static __always_inline int icmp_toobig(struct xdp_md *ctx, __u32 mtu, const bool v6)
{
	/* sizeof(struct icmphdr) == sizeof(struct icmp6hdr) == 8 */
	const int grow = ip_hdr_len(v6) + sizeof(struct icmphdr);
	const int quote = v6 ? TOOBIG6_QUOTE : TOOBIG4_QUOTE;
	const int len = sizeof(struct ethhdr) + grow + quote;
	struct ethhdr *eth, *old;
	void *data, *end, *ip, *ic;
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
	ic = ip + ip_hdr_len(v6);

	__builtin_memcpy(mac, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP);

	if (v6) {
		struct ipv6hdr *ip6 = ip, *orig = ic + sizeof(struct icmp6hdr);
		struct icmp6hdr *ic6 = ic;
		__u32 pseudo[2];

		*(__u32 *)ip6 = bpf_htonl(0x60000000); /* version 6, no traffic class, no flow label */
		ip6->payload_len = bpf_htons(sizeof(*ic6) + TOOBIG6_QUOTE);
		ip6->nexthdr = IPPROTO_ICMPV6;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, &orig->daddr, 16);
		__builtin_memcpy(&ip6->daddr, &orig->saddr, 16);

		ic6->icmp6_type = ICMPV6_PKT_TOOBIG;
		ic6->icmp6_code = 0;
		ic6->icmp6_cksum = 0;
		ic6->icmp6_dataun.un_data32[0] = bpf_htonl(mtu);

		/* pseudo header: addresses, upper-layer length, next header */
		pseudo[0] = bpf_htonl(sizeof(*ic6) + TOOBIG6_QUOTE);
		pseudo[1] = bpf_htonl(IPPROTO_ICMPV6);
		csum = bpf_csum_diff(NULL, 0, (__be32 *)&ip6->saddr, 32, 0);
		csum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), csum);
		csum = bpf_csum_diff(NULL, 0, (__be32 *)ic6, sizeof(*ic6) + TOOBIG6_QUOTE, csum);
		ic6->icmp6_cksum = ~csum_fold(csum);
	} else {
		struct iphdr *ip4 = ip, *orig = ic + sizeof(struct icmphdr);
		struct icmphdr *ic4 = ic;

		ip4->version = 4;
		ip4->ihl = 5;
		ip4->tos = 0;
		ip4->tot_len = bpf_htons(grow + TOOBIG4_QUOTE);
		ip4->id = 0;
		ip4->frag_off = 0;
		ip4->ttl = 64;
		ip4->protocol = IPPROTO_ICMP;
		ip4->check = 0;
		ip4->saddr = orig->daddr;
		ip4->daddr = orig->saddr;

		ic4->type = ICMP_DEST_UNREACH;
		ic4->code = ICMP_FRAG_NEEDED;
		ic4->checksum = 0;
		ic4->un.frag.__unused = 0;
		ic4->un.frag.mtu = bpf_htons(mtu);

		csum = bpf_csum_diff(NULL, 0, (__be32 *)ic4, sizeof(*ic4) + TOOBIG4_QUOTE, 0);
		ic4->checksum = ~csum_fold(csum);
		csum = bpf_csum_diff(NULL, 0, (__be32 *)ip4, sizeof(*ip4), 0);
		ip4->check = ~csum_fold(csum);
	}

	if (bpf_xdp_adjust_tail(ctx, len - (int)(end - data)))
		return drop(EMON_LB_DROP_TOO_BIG);
	stat_inc(EMON_LB_STAT_ICMP_TOO_BIG_SENT);
	drop(EMON_LB_DROP_TOO_BIG); /* the original packet is gone: count it */
	return send_out(ctx->ingress_ifindex);
}

/* The ICMP errors that quote a packet of a flow the balancer may have translated. */
static __always_inline bool icmp_is_error(__u8 type, const bool v6)
{
	if (v6)
		return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG || type == ICMPV6_TIME_EXCEED;
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
}

/* Rewrites an ICMP error's quoted packet: inner addresses and ports, the inner IPv4 header
 * checksum, the inner TCP/UDP checksum when it was quoted, and returns the difference the
 * ICMP checksum must absorb. */
static __always_inline __u32 inner_rewrite(void *in, __u16 *inp, void *end, const void *saddr, __u16 sport,
					   const void *daddr, __u16 dport, const bool v6)
{
	__u8 proto = ip_proto(in, v6);
	__u32 acc, ports, icmp;
	__u16 old, *check;

	acc = put_addr(0, ip_saddr(in, v6), saddr, v6);
	acc = put_addr(acc, ip_daddr(in, v6), daddr, v6);
	ports = put16(0, &inp[0], sport);
	ports = put16(ports, &inp[1], dport);
	icmp = csum_add(acc, ports);
	if (!v6) {
		struct iphdr *in4 = in;

		old = in4->check;
		in4->check = csum_apply(old, acc);
		icmp = csum_diff16(icmp, old, in4->check);
	}
	check = l4_csum_field(inp, proto);
	if ((void *)(check + 1) <= end) {
		old = *check;
		l4_csum_update(check, proto, v6, csum_add(acc, ports));
		icmp = csum_diff16(icmp, old, *check);
	}
	return icmp;
}

/* The outer half of a translated ICMP error: both addresses, and the ICMP checksum by the
 * quoted packet's change `inner` (ICMPv6's checksum also covers the outer addresses: its
 * pseudo header). */
static __always_inline void icmp_outer_rewrite(void *ip, __u16 *icsum, const void *saddr, const void *daddr,
					       __u32 inner, const bool v6)
{
	__u32 acc = ip_rewrite_addrs(ip, saddr, daddr, v6);

	*icsum = csum_apply(*icsum, v6 ? csum_add(acc, inner) : inner);
}

/* ICMP errors about translated flows. A: an error about a reply the VIP sent (a router
 * on the client side could not deliver it, or needs it smaller): goes to the flow's
 * backend, in the backend's terms. B: an error from the backend side about a packet the
 * balancer sent there: goes back to the client, in the client's terms. */
static __always_inline int icmp_error(struct xdp_md *ctx, struct ethhdr *eth, void *ip, void *end,
				      const struct emon_lb_config *cfg, const bool v6)
{
	__u8 *ic = ip + ip_hdr_len(v6);
	__u16 *icsum = (void *)ic + ICMP_CSUM_OFF;
	struct bpf_fib_lookup fib = {};
	struct emon_lb_flow_key k = {};
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	__u16 *inp;
	void *in;
	__u8 proto;
	int rc;

	/* sizeof(struct icmphdr) == sizeof(struct icmp6hdr) == 8 */
	if ((void *)ic + sizeof(struct icmphdr) > end)
		return pass();
	if (!icmp_is_error(ic[0], v6))
		return pass();
	in = ic + sizeof(struct icmphdr);
	inp = in + ip_hdr_len(v6);
	if ((void *)(inp + 4) > end)
		return pass();
	if (!v6 && ((struct iphdr *)in)->ihl != 5)
		return pass();
	proto = ip_proto(in, v6);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return pass();

	/* A: the quoted packet is VIP:v -> client:c; its flow is client:c -> VIP:v.
	 * B: the quoted packet is balancer:p -> backend:b; its reply key is backend -> balancer. */
	k.family = v6 ? AF_INET6 : AF_INET;
	k.proto = proto;
	addr_copy(k.saddr, ip_daddr(in, v6), v6);
	addr_copy(k.daddr, ip_saddr(in, v6), v6);
	k.sport = inp[1];
	k.dport = inp[0];

	vip = vip_lookup(ip_saddr(in, v6), inp[0], proto, v6);
	if (vip) {
		c = bpf_map_lookup_elem(&emon_lb_conns, &k);
		if (!c)
			c = bpf_map_lookup_elem(&emon_lb_long, &k);
		if (!c)
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		be = backend_get(c->backend);
		if (!be || !(be->flags & EMON_LB_BE_IN_USE))
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		fib_init(&fib, ctx, v6);
		fib_addrs(&fib, ip_saddr(ip, v6), be->addr, v6);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		if (ip_ttl(ip, v6) <= 1)
			return drop(EMON_LB_DROP_TTL);
		if (vip->mode == EMON_LB_MODE_NAT) {
			__u8 *laddr = own_addr(fib.ifindex, k.family);
			__u32 diff;

			if (!laddr)
				return drop(EMON_LB_DROP_NO_SNAT_ADDR);
			if (!c->nat_port)
				return drop(EMON_LB_DROP_ICMP_UNKNOWN);
			diff = inner_rewrite(in, inp, end, be->addr, be->port, laddr, c->nat_port, v6);
			icmp_outer_rewrite(ip, icsum, laddr, be->addr, diff, v6);
		}
		ip_ttl_dec(ip, v6);
		stat_inc(EMON_LB_STAT_ICMP_FORWARDED);
		return xmit(ctx, eth, &fib);
	}

	if (!nat_range(cfg, inp[0]))
		return pass();
	n = bpf_map_lookup_elem(&emon_lb_nat, &k);
	if (!n)
		return pass();
	fib_init(&fib, ctx, v6);
	fib_addrs(&fib, n->vaddr, n->caddr, v6);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip_ttl(ip, v6) <= 1)
		return drop(EMON_LB_DROP_TTL);
	icmp_outer_rewrite(ip, icsum, n->vaddr, n->caddr,
			   inner_rewrite(in, inp, end, n->caddr, n->cport, n->vaddr, n->vport, v6), v6);
	ip_ttl_dec(ip, v6);
	stat_inc(EMON_LB_STAT_ICMP_REPLIED);
	return xmit(ctx, eth, &fib);
}

#endif /* EMON_LB_ICMP_BPF_H */
