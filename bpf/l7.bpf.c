// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The L7 stage of the classifier's hook chain (tc_l7_flow), and the loopback DNS tap.
 *
 * The tap: DNS messages crossing an interface the classifier does not count,
 * meant for `lo`. A process that asks a local stub resolver (systemd-resolved on
 * 127.0.0.53, dnsmasq on 127.0.0.1) does it over loopback, which the classifier leaves
 * alone by default (local traffic can be heavy, and every packet would be counted twice).
 * This program looks only for port 53 and copies those datagrams with the socket's owner:
 * the query leaves the asking process's socket, so it names the process; the stub's answer
 * leaves the stub's socket and is matched to the query in user space
 * (daemon/src/l7/dns/tracker.ts). The stub's own upstream query goes out on a real
 * interface, where the classifier sees it as the stub's.
 *
 * Egress only: on loopback every packet passes egress once and ingress once, and egress
 * still has the sending socket (skb->sk), hence its cookie and owner. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "monitor/hooks.bpf.h"
#include "lib/net.bpf.h"
#include "l7/flow.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Types that only appear in ring-buffer records, and the counters' enum: referenced here so
 * that their BTF is in the object for test/unit/daemon/l7/layout.test.ts. */
struct emon_l7_rec *unused_l7_rec __attribute__((unused));
enum emon_l7_stat *unused_l7_stat __attribute__((unused));

/* Slot EMON_HOOK_SLOT_L7 of emon_hooks: tail-called by the classifier (hooks_dispatch) for
 * packets of flows that are, or may become, DNS, HTTP or TLS, on interfaces where L7 is on;
 * the packet's key and what the classifier parsed wait in emon_pkt_meta. Looks the flow up
 * again (a pointer does not survive a tail call), copies what the flow's state asks for,
 * and hands the packet on to the next stage. */
SEC("tc")
int tc_l7_flow(struct __sk_buff *skb)
{
	struct emon_pkt_meta *m = hooks_meta();
	struct emon_flow *f;

	if (!m)
		return EMON_TC_VERDICT;
	if (m->flags & EMON_META_F_PARSED) {
		f = bpf_map_lookup_elem(&emon_flows, &m->key);
		if (f)
			l7_flow_packet(skb, m, f);
	}
	return hooks_next(skb, m, EMON_HOOK_L7);
}

/* Attached to clsact egress of `lo` (or any interface without the classifier). */
SEC("tc")
int tc_l7_tap(struct __sk_buff *skb)
{
	struct emon_flow_key k = {};
	struct l7_scratch *s = l7_scratch_get();
	struct l7_pkt *lp;
	struct emon_owner *o = NULL;
	__u8 l4[14];
	__u32 off, total;
	int net;
	__u8 proto;
	__u64 cookie;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
			return EMON_TC_VERDICT;
		if (ip.ihl < 5 || (bpf_ntohs(ip.frag_off) & (IP_MF | IP_OFFSET)))
			return EMON_TC_VERDICT; /* fragments: not followed here */
		proto = ip.protocol;
		off = ip.ihl * 4;
		total = bpf_ntohs(ip.tot_len);
		k.family = AF_INET;
		__builtin_memcpy(k.laddr, &ip.saddr, 4);
		__builtin_memcpy(k.raddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET))
			return EMON_TC_VERDICT;
		proto = ip6.nexthdr; /* extension headers: not followed here */
		off = sizeof(ip6);
		total = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
		k.family = AF_INET6;
		__builtin_memcpy(k.laddr, &ip6.saddr, 16);
		__builtin_memcpy(k.raddr, &ip6.daddr, 16);
	} else {
		return EMON_TC_VERDICT;
	}
	if ((proto != IPPROTO_UDP && proto != IPPROTO_TCP) || !s)
		return EMON_TC_VERDICT;
	lp = &s->lp;
	lp->dir = 0;
	lp->kind = EMON_L7_DNS;
	lp->flags = EMON_L7_F_TAP;
	lp->seq = lp->ack = 0;
	lp->tcp_flags = 0;
	/* Headers are in the linear area (the stack builds them there); payload may not be. */
	if (bpf_skb_load_bytes_relative(skb, off, l4, proto == IPPROTO_TCP ? 14 : 4, BPF_HDR_START_NET))
		return EMON_TC_VERDICT;
	k.proto = proto;
	k.lport = ((__u16)l4[0] << 8) | l4[1]; /* egress: local = source */
	k.rport = ((__u16)l4[2] << 8) | l4[3];
	if (k.lport != 53 && k.rport != 53)
		return EMON_TC_VERDICT;
	{
		struct emon_config *cfg = config_get();

		if (!cfg || !(cfg->flags & EMON_CFG_L7_DNS))
			return EMON_TC_VERDICT;
	}
	net = l7_net_off(skb, EMON_L2_UNKNOWN, total, s->b);
	if (net < 0) {
		l7_stat_add(EMON_L7_STAT_LOAD_FAILED, 1);
		return EMON_TC_VERDICT;
	}
	lp->net_off = net;
	if (proto == IPPROTO_TCP) {
		lp->seq = ((__u32)l4[4] << 24) | ((__u32)l4[5] << 16) | ((__u32)l4[6] << 8) | l4[7];
		lp->ack = ((__u32)l4[8] << 24) | ((__u32)l4[9] << 16) | ((__u32)l4[10] << 8) | l4[11];
		lp->tcp_flags = l4[TCP_FLAGS_OFF];
		off += (l4[12] >> 4) * 4;
	} else {
		off += 8;
	}
	lp->payload_off = off;
	lp->payload_len = total > off ? total - off : 0;
	if (!lp->payload_len && !(lp->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		return EMON_TC_VERDICT;
	cookie = bpf_get_socket_cookie(skb);
	if (cookie)
		o = bpf_map_lookup_elem(&emon_owners, &cookie);
	l7_copy(skb, &k, o, s, lp->payload_len);
	return EMON_TC_VERDICT;
}
