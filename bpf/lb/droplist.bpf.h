/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The drop list: source prefixes (emon_lb_drop4/6) and protocols, ports or ICMP types
 * (emon_lb_dproto), looked up only for the tables that have rules (emon_lb_config.flags). */
#ifndef EMON_LB_DROPLIST_BPF_H
#define EMON_LB_DROPLIST_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/net.bpf.h"
#include "lb.h"
#include "lb/maps.bpf.h"
#include "lb/helpers.bpf.h"

static __always_inline __u32 proto_bit(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return EMON_LB_CFG_DP_TCP;
	case IPPROTO_UDP:
		return EMON_LB_CFG_DP_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return EMON_LB_CFG_DP_ICMP;
	}
	return EMON_LB_CFG_DP_OTHER;
}

/* Returns true (counted) when a rule matches. `value` is the destination port (TCP/UDP,
 * host order) or the ICMP type. */
static __always_inline bool droplisted(const struct emon_lb_config *cfg, const bool v6, const void *saddr,
				       __u8 proto, __u16 value, bool has_value, __u32 l3_len)
{
	struct emon_lb_rule_ctr *rc;
	__u32 *rule = NULL;

	if (!v6 && (cfg->flags & EMON_LB_CFG_DROP4)) {
		struct emon_lb_lpm4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, saddr, 4);
		rule = bpf_map_lookup_elem(&emon_lb_drop4, &k);
	} else if (v6 && (cfg->flags & EMON_LB_CFG_DROP6)) {
		struct emon_lb_lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, saddr, 16);
		rule = bpf_map_lookup_elem(&emon_lb_drop6, &k);
	}
	if (!rule && (cfg->flags & proto_bit(proto))) {
		struct emon_lb_proto_key pk = { .family = v6 ? AF_INET6 : AF_INET, .proto = proto };

		if (has_value) {
			pk.kind = (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) ? EMON_LB_PK_TYPE : EMON_LB_PK_PORT;
			pk.value = value;
			rule = bpf_map_lookup_elem(&emon_lb_dproto, &pk);
		}
		if (!rule) {
			pk.kind = EMON_LB_PK_ANY;
			pk.value = 0;
			rule = bpf_map_lookup_elem(&emon_lb_dproto, &pk);
		}
	}
	if (!rule)
		return false;
	rc = bpf_map_lookup_elem(&emon_lb_dcnt, rule);
	if (rc) {
		rc->packets += 1;
		rc->bytes += l3_len;
	}
	drop(EMON_LB_DROP_DROPLIST);
	return true;
}

#endif /* EMON_LB_DROPLIST_BPF_H */
