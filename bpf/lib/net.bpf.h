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

/* Copies an address of the family (4 or 16 bytes) a word at a time. Not memcpy: through a
 * `void *` clang assumes byte alignment and copies byte by byte (16 loads and 16 stores
 * for an IPv6 address instead of 4 and 4). */
static __always_inline void addr_copy(void *dst, const void *src, const bool v6)
{
	const __u32 *s = src;
	__u32 *d = dst;

	d[0] = s[0];
	if (v6) {
		d[1] = s[1];
		d[2] = s[2];
		d[3] = s[3];
	}
}

/* Family-generic access to an IPv4 or IPv6 header. `v6` is a constant at every call (the
 * callers are inlined into one copy per family), so each compiles to a plain field access. */
static __always_inline __u32 ip_hdr_len(const bool v6)
{
	return v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
}

static __always_inline void *ip_saddr(void *ip, const bool v6)
{
	return v6 ? (void *)&((struct ipv6hdr *)ip)->saddr : (void *)&((struct iphdr *)ip)->saddr;
}

static __always_inline void *ip_daddr(void *ip, const bool v6)
{
	return v6 ? (void *)&((struct ipv6hdr *)ip)->daddr : (void *)&((struct iphdr *)ip)->daddr;
}

/* Next protocol (IPv6: the first next header; extension headers are not walked). */
static __always_inline __u8 ip_proto(const void *ip, const bool v6)
{
	return v6 ? ((const struct ipv6hdr *)ip)->nexthdr : ((const struct iphdr *)ip)->protocol;
}

static __always_inline __u8 ip_ttl(const void *ip, const bool v6)
{
	return v6 ? ((const struct ipv6hdr *)ip)->hop_limit : ((const struct iphdr *)ip)->ttl;
}

/* IP-layer length: header and payload. */
static __always_inline __u32 ip_len(const void *ip, const bool v6)
{
	if (v6)
		return sizeof(struct ipv6hdr) + bpf_ntohs(((const struct ipv6hdr *)ip)->payload_len);
	return bpf_ntohs(((const struct iphdr *)ip)->tot_len);
}

/* May a router answer "too big" rather than fragment? IPv6 routers never fragment. */
static __always_inline bool ip_dont_frag(const void *ip, const bool v6)
{
	return v6 || (((const struct iphdr *)ip)->frag_off & bpf_htons(IP_DF));
}

#endif /* EMON_NET_BPF_H */
