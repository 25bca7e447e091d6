/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Network constants that are macros in the kernel's headers, so vmlinux.h lacks them, and
 * small address helpers. Feature-free: any program may include it. */
#ifndef EMON_NET_BPF_H
#define EMON_NET_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET  2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define ETH_ALEN   6
#define ETH_HLEN   14
#define ETH_P_IP   0x0800
#define ETH_P_IPV6 0x86DD

#define IPPROTO_HOPOPTS   0
#define IPPROTO_ROUTING   43
#define IPPROTO_FRAGMENT  44
#define IPPROTO_ICMPV6    58
#define IPPROTO_NONE      59
#define IPPROTO_DSTOPTS   60
#define IPPROTO_MH        135

/* iphdr.frag_off (network order once swapped) */
#define IP_DF     0x4000
#define IP_MF     0x2000
#define IP_OFFSET 0x1FFF

/* TCP flags byte (the 14th byte of the header: a bitfield in struct tcphdr, so no offsetof) */
#define TCP_FLAGS_OFF 13
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* ICMP and ICMPv6 types and codes the data paths act on */
#define ICMP_DEST_UNREACH   3
#define ICMP_FRAG_NEEDED    4
#define ICMP_TIME_EXCEEDED  11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG   2
#define ICMPV6_TIME_EXCEED  3

/* True for an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
static __always_inline bool ipv6_is_v4mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* Compares two 16-byte addresses (clang lowers __builtin_memcmp to a libc call BPF does
 * not have). */
static __always_inline bool addr_eq(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]));
}

#endif /* EMON_NET_BPF_H */
