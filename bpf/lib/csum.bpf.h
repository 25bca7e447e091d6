/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Incremental checksum updates (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')) for programs that
 * rewrite headers in place. One's complement sums do not depend on byte order, so fields
 * are used as loaded. Feature-free. */
#ifndef EMON_CSUM_BPF_H
#define EMON_CSUM_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"

/* Checksum fields, from the start of their header (Cilium's bpf/lib/csum.h does the same).
 * __builtin_offsetof, not bpf_helpers.h's offsetof: vmlinux.h marks its structs
 * preserve_access_index, so `&((T *)0)->f` becomes a CO-RE relocation, which a wire
 * format does not need, and which clang 14 miscompiled here when two such offsets met in
 * a conditional (a load from the offset itself; the verifier refused it). */
#define TCP_CSUM_OFF  (__builtin_offsetof(struct tcphdr, check))
#define UDP_CSUM_OFF  (__builtin_offsetof(struct udphdr, check))
#define ICMP_CSUM_OFF (__builtin_offsetof(struct icmphdr, checksum))
/* ICMPv6 keeps its checksum where ICMP does, so one pointer serves both families. */
_Static_assert(__builtin_offsetof(struct icmp6hdr, icmp6_cksum) == ICMP_CSUM_OFF,
	       "ICMP and ICMPv6 checksums at the same offset");

/* The TCP or UDP checksum field of the transport header at `l4`. */
static __always_inline __u16 *l4_csum_field(void *l4, __u8 proto)
{
	return l4 + (proto == IPPROTO_TCP ? TCP_CSUM_OFF : UDP_CSUM_OFF);
}

static __always_inline __u32 csum_add(__u32 csum, __u32 addend)
{
	__u32 res = csum + addend;

	return res + (res < addend);
}

static __always_inline __u32 csum_diff32(__u32 acc, __u32 from, __u32 to)
{
	return csum_add(csum_add(acc, ~from), to);
}

static __always_inline __u32 csum_diff16(__u32 acc, __u16 from, __u16 to)
{
	return csum_add(csum_add(acc, (__u16)~from), to);
}

static __always_inline __u16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)csum;
}

/* The checksum `check` after the changes accumulated in `diff`. */
static __always_inline __u16 csum_apply(__u16 check, __u32 diff)
{
	return ~csum_fold(csum_add(diff, (__u16)~check));
}

/* Writes a 4-byte address into the packet and accumulates the checksum change. */
static __always_inline __u32 put32(__u32 acc, void *field, __u32 val)
{
	__u32 old = *(__u32 *)field;

	*(__u32 *)field = val;
	return csum_diff32(acc, old, val);
}

static __always_inline __u32 put16(__u32 acc, void *field, __u16 val)
{
	__u16 old = *(__u16 *)field;

	*(__u16 *)field = val;
	return csum_diff16(acc, old, val);
}

/* Writes a 16-byte address (four words) into the packet. */
static __always_inline __u32 put128(__u32 acc, void *field, const void *val)
{
	const __u32 *v = val;

	acc = put32(acc, field, v[0]);
	acc = put32(acc, field + 4, v[1]);
	acc = put32(acc, field + 8, v[2]);
	return put32(acc, field + 12, v[3]);
}

/* Writes an address of the family (IPv4: the first 4 bytes of `val`). */
static __always_inline __u32 put_addr(__u32 acc, void *field, const void *val, const bool v6)
{
	if (v6)
		return put128(acc, field, val);
	return put32(acc, field, *(const __u32 *)val);
}

/* Updates a TCP or UDP checksum; UDP over IPv4 may carry none (0) and must keep none,
 * and a computed 0 is sent as 0xffff (RFC 768). */
static __always_inline void l4_csum_update(__u16 *check, __u8 proto, bool v6, __u32 diff)
{
	__u16 c;

	if (proto == IPPROTO_UDP && !v6 && *check == 0)
		return;
	c = csum_apply(*check, diff);
	if (proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	*check = c;
}

/* Rewrites both addresses of an IPv4 or IPv6 header (patching the IPv4 header checksum)
 * and returns the change, which every checksum over a pseudo header must absorb too. */
static __always_inline __u32 ip_rewrite_addrs(void *ip, const void *saddr, const void *daddr, const bool v6)
{
	__u32 acc = put_addr(0, ip_saddr(ip, v6), saddr, v6);

	acc = put_addr(acc, ip_daddr(ip, v6), daddr, v6);
	if (!v6)
		((struct iphdr *)ip)->check = csum_apply(((struct iphdr *)ip)->check, acc);
	return acc;
}

/* Rewrites the ports of the TCP or UDP header at `l4` and updates its checksum `check`
 * by the ports' and the addresses' (`acc`, from ip_rewrite_addrs) change. */
static __always_inline void l4_rewrite_ports(void *l4, __u16 *check, __u8 proto, __u32 acc,
					     __u16 sport, __u16 dport, const bool v6)
{
	__u32 ports = put16(0, l4, sport);

	ports = put16(ports, l4 + 2, dport);
	l4_csum_update(check, proto, v6, csum_add(acc, ports));
}

/* Decrements the TTL and patches the header checksum (as the kernel's ip_decrease_ttl). */
static __always_inline void ttl_dec4(struct iphdr *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

/* Decrements the TTL or hop limit (IPv6 has no header checksum). */
static __always_inline void ip_ttl_dec(void *ip, const bool v6)
{
	if (v6)
		((struct ipv6hdr *)ip)->hop_limit--;
	else
		ttl_dec4(ip);
}

#endif /* EMON_CSUM_BPF_H */
