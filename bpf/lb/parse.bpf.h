/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Packet parsing for the balancer, one path for both families (`v6` is a constant at every
 * call): what the drop list matches on, and the packets the balancer never balances. */
#ifndef EMON_LB_PARSE_BPF_H
#define EMON_LB_PARSE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"
#include "lb.h"
#include "lb/helpers.bpf.h"
#include "lb/conn.bpf.h"

/* What the drop list's protocol rules match beyond the protocol: the destination port
 * (TCP/UDP, host order) or the ICMP type, read from the transport header at `l4` when
 * it is there. IPv4 packets with options or later fragments have none. */
static __always_inline bool droplist_value(const void *ip, const __u8 *l4, void *end, __u16 *value, const bool v6)
{
	__u8 proto = ip_proto(ip, v6);

	if (!v6) {
		const struct iphdr *ip4 = ip;

		if (ip4->ihl != 5 || (ip4->frag_off & bpf_htons(IP_OFFSET)))
			return false;
	}
	if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) && (void *)(l4 + 1) <= end) {
		*value = l4[0];
		return true;
	}
	if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) && (void *)(l4 + 4) <= end) {
		*value = ((__u16)l4[2] << 8) | l4[3];
		return true;
	}
	return false;
}

/* IPv4 with options or fragments: never balanced (ports may be absent; the rewrite paths
 * assume a 20-byte header). Dropped with a reason when they are VIP traffic. (IPv6 has no
 * counterpart: extension headers are not walked and such packets pass, see
 * process_packet.) */
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
	if (vip_lookup(&ip->daddr, ports[1], ip->protocol, false))
		return drop(reason);
	return pass();
}

/* The flow key of a TCP/UDP packet as it arrives (IPv4: the first 4 bytes of each
 * address). */
static __always_inline void flow_key_of(struct emon_lb_flow_key *key, void *ip, const __u16 *ports, const bool v6)
{
	key->family = v6 ? AF_INET6 : AF_INET;
	key->proto = ip_proto(ip, v6);
	addr_copy(key->saddr, ip_saddr(ip, v6), v6);
	addr_copy(key->daddr, ip_daddr(ip, v6), v6);
	key->sport = ports[0];
	key->dport = ports[1];
}

#endif /* EMON_LB_PARSE_BPF_H */
