// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The flow classifier: TC programs on ingress and egress of every monitored interface.
 * Counts IP-layer bytes and packets per flow, records TCP flags, joins each new flow with
 * its owning process (socket cookie, accepted tuple, or bound port; see sockets.bpf.c),
 * and never changes or drops a packet: both programs return TC_ACT_UNSPEC so any filter
 * after ours still runs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "monitor/helpers.bpf.h"
#include "lib/net.bpf.h"
#include "flows.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Enums user space names by their enumerators (counters, how an owner was learned):
 * referenced so that their BTF is in the object for test/unit/layout.test.ts. */
enum emon_stat *unused_emon_stat __attribute__((unused));
enum emon_how *unused_emon_how __attribute__((unused));
struct emon_dirty_rec *unused_dirty_rec __attribute__((unused));

#define TC_ACT_UNSPEC (-1)

/* IPv6 extension headers walked before giving up (counted in EMON_STAT_PACKETS_EXT_HEADER_LIMIT). */
#define MAX_EXT_HDRS 8

struct pkt {
	struct emon_flow_key key; /* from the host's point of view */
	__u32 bytes;              /* IP-layer bytes */
	__u8  tcp_flags;
	__u8  flow_flags;         /* EMON_FLOW_F_* */
	__u8  is_frag;
	__u8  frag_unmatched;
	__u8  ext_limit;
	__u8  l4_hlen;            /* transport header length (TCP data offset * 4, UDP 8; 0: none) */
	__u16 l4_off;             /* transport header offset from the network header */
};

/* A reply is keyed by its request's type so that both directions share one flow. */
static __always_inline __u8 icmp_query_type(__u8 type, bool v6)
{
	if (v6)
		return type == 129 ? 128 : type; /* echo reply -> echo request */
	switch (type) {
	case 0:  return 8;  /* echo */
	case 14: return 13; /* timestamp */
	case 16: return 15; /* information */
	case 18: return 17; /* address mask */
	}
	return type;
}

static __always_inline bool icmp_is_query(__u8 type, bool v6)
{
	if (v6)
		return type == 128;
	return type == 8 || type == 13 || type == 15 || type == 17;
}

/* Bytes after the IP header read together with it (one read instead of two); enough for
 * every transport header parse_l4 looks at. */
#define L4_PEEK 16

/* Headers that are not in the skb's linear area (some drivers, some GRO paths) are
 * pulled in, at most this far from the link-layer header. */
#define PULL_MAX 256

/* How the headers of the packet at hand are read, and what the interface wants. */
struct rd {
	struct __sk_buff *skb;
	int  l2;     /* link-layer header length, for direct packet access; -1: use helpers */
	__u8 pulled; /* bpf_skb_pull_data already tried */
	__u8 hooks;  /* EMON_HOOK_* bits of the interface (hooks_dispatch) */
};

/* What the daemon recorded in emon_ifaces when it attached the classifier: the interface's
 * link-layer header length (-1 when unknown: then headers are read through helpers,
 * relative to the network header, which works for any link type) and which stages of the
 * hook chain want its packets. An array lookup: the verifier inlines it. */
static __always_inline void iface_load(struct rd *r)
{
	__u32 slot = r->skb->ifindex & (EMON_IFACE_SLOTS - 1);
	struct emon_iface *i = bpf_map_lookup_elem(&emon_ifaces, &slot);

	r->l2 = -1;
	if (!i || i->ifindex != r->skb->ifindex)
		return;
#ifndef EMON_NO_HOOKS
	r->hooks = i->hooks;
#endif
	if (i->l2_len <= 32)
		r->l2 = i->l2_len;
}

/* Where the transport header is, for the hook chain's stages (the L7 program finds the
 * payload with it). Not kept by the bench baseline built without the hook chain. */
static __always_inline void set_l4(struct pkt *p, __u32 off, __u8 hlen)
{
#ifndef EMON_NO_HOOKS
	p->l4_off = off;
	p->l4_hlen = hlen;
#endif
}

/* Copies `len` (a constant) bytes from the packet to a stack buffer aligned to 8, a word at
 * a time. __builtin_memcpy from a packet pointer (alignment unknown: 1) compiles to one
 * byte load plus a shift and an OR per byte (about 130 instructions for an IPv6 header);
 * these are 8-byte loads, which the verifier accepts at any packet offset where unaligned
 * access is efficient (x86-64, arm64: it checks packet alignment only on other machines
 * or with BPF_F_STRICT_ALIGNMENT), and aligned 8-byte stores, as the stack requires. */
static __always_inline void pkt_copy(void *to, const void *from, const __u32 len)
{
	__u32 i = 0;

#pragma unroll
	for (; i + 8 <= len; i += 8)
		*(__u64 *)(to + i) = *(const __u64 *)(from + i);
	if (len & 4) {
		*(__u32 *)(to + i) = *(const __u32 *)(from + i);
		i += 4;
	}
	if (len & 2) {
		*(__u16 *)(to + i) = *(const __u16 *)(from + i);
		i += 2;
	}
	if (len & 1)
		*(__u8 *)(to + i) = *(const __u8 *)(from + i);
}

/* Copies `len` bytes at `off` from the network header. Directly from the packet when the
 * link-layer length is known and the bytes are in the linear area (about 1 ns); else
 * through bpf_skb_load_bytes_relative (about 20 ns here); and if the bytes are beyond the
 * linear area, pulls them in once and reads again. Pulling moves bytes into the skb's
 * head: the packet itself is not changed. */
static __always_inline long net_load(struct rd *r, __u32 off, void *to, const __u32 len)
{
	if (r->l2 >= 0 && off < 1024) {
		void *data = (void *)(long)r->skb->data;
		void *end = (void *)(long)r->skb->data_end;
		/* Mask needed to calm the verifier: l2_len_of returns at most 32. */
		void *ptr = data + (r->l2 & 0x3f) + off;

		if (ptr + len <= end) {
			pkt_copy(to, ptr, len);
			return 0;
		}
	}
	if (!bpf_skb_load_bytes_relative(r->skb, off, to, len, BPF_HDR_START_NET))
		return 0;
	if (!r->pulled && r->skb->len > off + len) {
		__u32 want = off + len + 32 > PULL_MAX ? PULL_MAX : off + len + 32;

		r->pulled = 1;
		if (want > r->skb->len)
			want = r->skb->len;
		if (!bpf_skb_pull_data(r->skb, want)) {
			stat_inc_tc(EMON_STAT_PACKETS_PULLED);
			return bpf_skb_load_bytes_relative(r->skb, off, to, len, BPF_HDR_START_NET);
		}
	}
	return -1;
}

/* Reads the transport ports (or ICMP type/id) at `off` from the network header into
 * sport/dport in host order, and TCP flags. When `peeked`, `peek` holds the first
 * L4_PEEK bytes at `off`, already read. Returns false when truncated.
 *
 * `peek` is always a valid stack buffer and `peeked` says whether it holds the bytes: a
 * pointer that may be NULL does not load on 6.1. With p = (off == sizeof(ipv6hdr) ? peek :
 * NULL), clang turns `p ? p : buf` into a test of p plus a second select on `off` that
 * yields NULL + k; 6.1's verifier decides `reg == K` statically only when reg is a constant
 * (not from its range), so it follows the impossible path where the two disagree and
 * rejects the load from scalar k ("R2 invalid mem access 'scalar'"). 6.18's prunes it. */
static __always_inline bool parse_l4(struct rd *r, __u32 off, __u8 proto, bool v6,
				     const __u8 *peek, bool peeked,
				     __u16 *sport, __u16 *dport, __u8 *tcp_flags, struct pkt *p)
{
	__u8 buf[14] __attribute__((aligned(8)));
	const __u8 *b = peeked ? peek : buf;

	switch (proto) {
	case IPPROTO_TCP:
		if (!peeked && net_load(r, off, buf, 14))
			return false;
		*tcp_flags = b[TCP_FLAGS_OFF];
		set_l4(p, off, (b[12] >> 4) * 4);
		break;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if (!peeked && net_load(r, off, buf, 4))
			return false;
		set_l4(p, off, proto == IPPROTO_SCTP ? 12 : 8);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 type;

		if (!peeked && net_load(r, off, buf, 8))
			return false;
		/* Not ports: sport carries the echo id (or the code), dport the type; set_key
		 * keeps them in place for both directions. */
		type = icmp_query_type(b[0], v6);
		*sport = icmp_is_query(type, v6) ? ((__u16)b[4] << 8) | b[5] : b[1];
		*dport = type;
		return true;
	}
	default:
		*sport = *dport = 0;
		return true;
	}
	*sport = ((__u16)b[0] << 8) | b[1];
	*dport = ((__u16)b[2] << 8) | b[3];
	return true;
}

/* Fragments: the first one carries the ports and records them; later ones look them up. */
static __always_inline void frag_ports(struct pkt *p, struct emon_frag_key *fk, bool first, __u16 *sport, __u16 *dport)
{
	if (first) {
		struct emon_frag_ports fp = { .sport = *sport, .dport = *dport };

		bpf_map_update_elem(&emon_frags, fk, &fp, BPF_ANY);
		return;
	}
	struct emon_frag_ports *fp = bpf_map_lookup_elem(&emon_frags, fk);

	if (fp) {
		*sport = fp->sport;
		*dport = fp->dport;
	} else {
		*sport = *dport = 0;
		p->frag_unmatched = 1;
	}
}

/* Builds the host-side key; saddr/daddr are 16-byte buffers (IPv4 zero-padded). */
static __always_inline void set_key(struct pkt *p, bool egress, __u8 family, __u8 proto,
				    const void *saddr, const void *daddr, __u16 sport, __u16 dport)
{
	/* ICMP "ports" (id or code, then type) do not depend on direction. */
	bool keep = egress || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;

	p->key.family = family;
	p->key.proto = proto;
	__builtin_memcpy(p->key.laddr, egress ? saddr : daddr, 16);
	__builtin_memcpy(p->key.raddr, egress ? daddr : saddr, 16);
	p->key.lport = keep ? sport : dport;
	p->key.rport = keep ? dport : sport;
}

static __always_inline bool parse_ipv4(struct rd *r, bool egress, struct pkt *p)
{
	struct {
		struct iphdr ip;
		__u8 l4[L4_PEEK];
	} h __attribute__((aligned(8)));
	__u8 addrs[2][16] = {};
	__u16 sport = 0, dport = 0, frag;
	__u32 ihl;
	bool peeked = false;

	/* Header and transport header at once; a packet too short for that (a bare UDP or
	 * ICMP header) takes the two-call path, so what fails as truncated is unchanged. */
	if (!net_load(r, 0, &h, sizeof(h)))
		peeked = true;
	else if (net_load(r, 0, &h.ip, sizeof(h.ip)))
		return false;
	if (h.ip.version != 4)
		return false;
	ihl = h.ip.ihl * 4;
	if (ihl < sizeof(h.ip))
		return false;
	if (ihl != sizeof(h.ip))
		peeked = false; /* options: the transport header starts later */
	if (ihl > sizeof(h.ip))
		p->flow_flags |= EMON_FLOW_F_IP_OPTIONS;
	p->bytes = bpf_ntohs(h.ip.tot_len);
	if (!p->bytes) /* BIG TCP: tot_len 0 on super-packets over 64 KiB */
		p->bytes = r->skb->len > ETH_HLEN ? r->skb->len - ETH_HLEN : 0;
	__builtin_memcpy(addrs[0], &h.ip.saddr, 4);
	__builtin_memcpy(addrs[1], &h.ip.daddr, 4);

	frag = bpf_ntohs(h.ip.frag_off);
	if (frag & (IP_MF | IP_OFFSET)) {
		struct emon_frag_key fk = { .family = AF_INET, .proto = h.ip.protocol, .id = bpf_ntohs(h.ip.id) };
		bool first = !(frag & IP_OFFSET);

		p->is_frag = 1;
		p->flow_flags |= EMON_FLOW_F_FRAGMENTS;
		__builtin_memcpy(fk.saddr, &h.ip.saddr, 4);
		__builtin_memcpy(fk.daddr, &h.ip.daddr, 4);
		if (first && !parse_l4(r, ihl, h.ip.protocol, false, h.l4, peeked, &sport, &dport, &p->tcp_flags, p))
			return false;
		frag_ports(p, &fk, first, &sport, &dport);
	} else if (!parse_l4(r, ihl, h.ip.protocol, false, h.l4, peeked, &sport, &dport, &p->tcp_flags, p)) {
		return false;
	}
	set_key(p, egress, AF_INET, h.ip.protocol, addrs[0], addrs[1], sport, dport);
	return true;
}

/* The extension headers below 64 as a bit set: one shift and AND instead of five compares
 * per header in the walk (and for the transport header that ends it). */
#define EXT_HDR_MASK ((1ULL << IPPROTO_HOPOPTS) | (1ULL << IPPROTO_ROUTING) | (1ULL << IPPROTO_DSTOPTS) | \
		      (1ULL << IPPROTO_FRAGMENT) | (1ULL << IPPROTO_AH))

static __always_inline bool is_ext_hdr(__u8 nh)
{
	return nh < 64 ? (EXT_HDR_MASK >> nh) & 1 : nh == IPPROTO_MH;
}

/* The walk over IPv6 extension headers. A global function (not static, not inlined): the
 * verifier checks it once, on its own, instead of once for every state its caller reaches
 * it in. Inlined, each of its eight reads could take three paths (direct, helper, pull),
 * and the classifier took 430-500k verified instructions, about 2.5 s of kernel time per
 * program at every fresh load on this VM (many times that under emulation); as global
 * functions this walk and resolve_owner() bring it to about 54k (docs/architecture.md,
 * "Verifier cost"). Only packets with an extension header pay for the call. Whatever the
 * callee writes through its pointer arguments is unknown to the verifier after the call
 * (it checks them as helper memory, which it marks as clobbered), so the caller's
 * branches on the results are all explored.
 *
 * Starts at the header after the fixed IPv6 header, whose type is w->nh; on return w->nh
 * is the first header that is not an extension header (or the one the walk stopped at),
 * w->off its offset, w->first/frag what a fragment header said. Returns 0, or -1 when a
 * header is truncated. */
struct ext_walk {
	int   l2;       /* in: struct rd's l2 */
	__u32 off;      /* out */
	__u32 frag_id;  /* out: the fragment header's id (network order), when frag */
	__u8  nh;       /* in/out */
	__u8  pulled;   /* in/out: struct rd's pulled */
	__u8  first;    /* out: not a later fragment */
	__u8  frag;     /* out: a fragment header was seen */
};

__noinline int emon_ext_walk(struct __sk_buff *skb, struct ext_walk *w)
{
	struct rd r = { .skb = skb };
	__u32 off = sizeof(struct ipv6hdr);
	__u8 nh;

	if (!w) /* a global function's pointer argument may be NULL as far as 6.1 knows */
		return -1;
	r.l2 = w->l2;
	r.pulled = w->pulled;
	nh = w->nh;
	w->first = 1;
	w->frag = 0;
	for (int i = 0; i < MAX_EXT_HDRS; i++) {
		__u8 eh[8] __attribute__((aligned(8)));

		if (!is_ext_hdr(nh))
			break;
		if (net_load(&r, off, eh, 8)) {
			w->pulled = r.pulled;
			return -1;
		}
		if (nh == IPPROTO_FRAGMENT) {
			__u16 fo = ((__u16)eh[2] << 8) | eh[3];

			w->frag = 1;
			w->first = (fo & 0xFFF8) == 0;
			__builtin_memcpy(&w->frag_id, &eh[4], 4);
			nh = eh[0];
			off += 8;
			if (!w->first)
				break; /* no transport header in a later fragment */
			continue;
		}
		/* The header's own type sizes it (AH counts 4-byte words minus 2, RFC 4302; the
		 * others 8-byte words minus 1, RFC 8200), before nh moves on to the next one. */
		off += nh == IPPROTO_AH ? ((__u32)eh[1] + 2) * 4 : ((__u32)eh[1] + 1) * 8;
		nh = eh[0];
	}
	w->nh = nh;
	w->off = off;
	w->pulled = r.pulled;
	return 0;
}

static __always_inline bool parse_ipv6(struct rd *r, bool egress, struct pkt *p)
{
	struct {
		struct ipv6hdr ip;
		__u8 l4[L4_PEEK];
	} h __attribute__((aligned(8)));
	__u16 sport = 0, dport = 0;
	__u32 off = sizeof(h.ip);
	__u8 nh;
	bool first = true, frag = false;
	struct emon_frag_key fk = { .family = AF_INET6 };
	bool peeked = false;

	/* As in parse_ipv4: one call when the packet is long enough. */
	if (!net_load(r, 0, &h, sizeof(h)))
		peeked = true;
	else if (net_load(r, 0, &h.ip, sizeof(h.ip)))
		return false;
	if (h.ip.version != 6)
		return false;
	p->bytes = sizeof(h.ip) + bpf_ntohs(h.ip.payload_len);
	if (!h.ip.payload_len) /* jumbogram / BIG TCP */
		p->bytes = r->skb->len > ETH_HLEN ? r->skb->len - ETH_HLEN : 0;
	nh = h.ip.nexthdr;
	if (is_ext_hdr(nh)) {
		struct ext_walk w = { .l2 = r->l2, .nh = nh, .pulled = r->pulled };

		p->flow_flags |= EMON_FLOW_F_IPV6_EXT;
		if (emon_ext_walk(r->skb, &w))
			return false;
		r->pulled = w.pulled;
		nh = w.nh;
		off = w.off;
		first = w.first;
		frag = w.frag;
		fk.id = w.frag_id;
	}
	if (is_ext_hdr(nh) && first) {
		/* Longer chain than we walk: count the packet under its last known header. */
		p->ext_limit = 1;
	} else if (!first) {
		/* later fragment: ports come from the first one */
	} else if (!parse_l4(r, off, nh, true, h.l4, peeked && off == sizeof(h.ip), &sport, &dport, &p->tcp_flags, p)) {
		return false;
	}
	if (frag) {
		p->is_frag = 1;
		p->flow_flags |= EMON_FLOW_F_FRAGMENTS;
		fk.proto = nh;
		__builtin_memcpy(fk.saddr, &h.ip.saddr, 16);
		__builtin_memcpy(fk.daddr, &h.ip.daddr, 16);
		frag_ports(p, &fk, first, &sport, &dport);
	}
	set_key(p, egress, AF_INET6, nh, &h.ip.saddr, &h.ip.daddr, sport, dport);
	return true;
}

/* Owner of a flow's local socket, tried cheapest and most precise first: copied into *o
 * when found, *o untouched otherwise. `syn_in`: the packet is an inbound bare SYN (no
 * accepted tuple can exist yet). A global function like emon_ext_walk() (verified once:
 * its lookups no longer multiply the states of the parse before them); called only for a
 * new flow and an unowned flow's retry, never on an owned flow's packets. */
__noinline int resolve_owner(struct __sk_buff *skb, int egress, int syn_in,
			     const struct emon_flow_key *k, struct emon_owner *o)
{
	struct emon_owner *found;
	struct emon_flow_key key;

	if (!k || !o)
		return 0;
	/* A map key from a global function's argument: 6.1 takes only the stack (and packet,
	 * map) as a helper's key, not the argument's "mem". */
	__builtin_memcpy(&key, k, sizeof(key));
	k = &key;

	if (egress) {
		/* Egress packets usually still carry their socket. */
		__u64 cookie = bpf_get_socket_cookie(skb);

		if (cookie) {
			found = bpf_map_lookup_elem(&emon_owners, &cookie);
			if (found)
				goto copy;
		}
	}
	/* Neither table ever held this local port (one array load instead of three or four
	 * hash lookups that would all miss: bench/classifier's new-flow rows). */
	if (!port_maybe_owned(k->lport))
		return 0;
	/* An inbound bare SYN opens a connection nothing has accepted yet: an entry for its
	 * tuple is an earlier connection's (tuples are not deleted at close), whose acceptor
	 * may be another process. The listener's endpoint answers instead, until accept()
	 * patches the flow. */
	if (!syn_in) {
		found = bpf_map_lookup_elem(&emon_tuples, k);
		if (found)
			goto copy;
	}
	if (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP)
		return 0;

	/* A listener or bound socket: exact address, wildcard, then dual-stack wildcard. */
	struct emon_endpoint ep = { .family = k->family, .proto = k->proto, .port = k->lport };

	__builtin_memcpy(ep.addr, k->laddr, 16);
	found = bpf_map_lookup_elem(&emon_binds, &ep);
	if (found)
		goto copy;
	__builtin_memset(ep.addr, 0, 16);
	found = bpf_map_lookup_elem(&emon_binds, &ep);
	if (found)
		goto copy;
	if (k->family == AF_INET) {
		ep.family = AF_INET6;
		found = bpf_map_lookup_elem(&emon_binds, &ep);
		if (found)
			goto copy;
	}
	return 0;
copy:
	__builtin_memcpy(o, found, sizeof(*o));
	return 0;
}

#define SOCK_RAW 3

/* The kernel sends some packets on its own behalf: a RST for a closed port, ICMP errors and
 * echo replies go out through its per-CPU control sockets, neighbour discovery and MLD
 * through per-namespace ICMPv6 sockets (all raw sockets it created itself, which no cgroup
 * hook saw), IGMP through no socket at all. A packet that was received and is being
 * forwarded has an ingress interface; one the kernel made here has none. TCP is the
 * kernel's only for a RST: a TIME_WAIT socket's ACKs also use the control socket but
 * belong to a connection some process made. */
static __always_inline bool kernel_sent(struct __sk_buff *skb, const struct pkt *p)
{
	struct bpf_sock *sk;

	if (skb->ingress_ifindex)
		return false;
	if (p->key.proto == IPPROTO_TCP && !(p->tcp_flags & TCP_FLAG_RST))
		return false;
	sk = skb->sk;
	if (!sk)
		return true;
	sk = bpf_sk_fullsock(sk); /* type is not readable on request and TIME_WAIT sockets */
	return sk && sk->type == SOCK_RAW;
}

/* Protocols only the kernel speaks, in either direction: IGMP, and ICMPv6 multicast
 * listener (130-132, 143) and neighbour discovery messages (133-137). rport holds the
 * ICMP type (see struct emon_flow_key). */
static __always_inline bool kernel_protocol(const struct emon_flow_key *k)
{
	if (k->proto == IPPROTO_IGMP)
		return true;
	return k->proto == IPPROTO_ICMPV6 && ((k->rport >= 130 && k->rport <= 137) || k->rport == 143);
}

static __always_inline void owner_kernel(struct emon_owner *o)
{
	__builtin_memset(o, 0, sizeof(*o));
	o->how = EMON_HOW_KERNEL;
	stat_inc(EMON_STAT_FLOWS_KERNEL);
}

/* A TCP SYN without ACK arriving: someone opening a connection to a local socket. */
static __always_inline int syn_inbound(bool egress, const struct pkt *p)
{
	return !egress && p->key.proto == IPPROTO_TCP &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* A fresh flow record for the packet at hand. */
static __always_inline void flow_init(struct emon_flow *nf, struct __sk_buff *skb, bool egress,
				      const struct pkt *p, __u64 now, __u32 tick)
{
	nf->first_ns = now;
	nf->last_ns = now;
	nf->last_tick = tick;
	nf->ifindex = skb->ifindex;
	nf->direction = egress ? EMON_DIR_OUTBOUND : EMON_DIR_INBOUND;
	resolve_owner(skb, egress, syn_inbound(egress, p), &p->key, &nf->owner);
	if (nf->owner.how)
		return;
	if (kernel_protocol(&p->key) || (egress && kernel_sent(skb, p)))
		owner_kernel(&nf->owner);
	else
		nf->flags = EMON_FLOW_F_UNOWNED;
}

/* The packet that creates a flow, counted into the new value before the insert (what
 * count() does to an existing flow's value), so that a successful insert needs no lookup
 * after it: one hash and bucket walk less per new flow. */
static __always_inline void flow_count_first(struct emon_flow *nf, const struct pkt *p, bool egress)
{
	if (egress) {
		nf->tx_bytes = p->bytes;
		nf->tx_packets = 1;
		nf->tcp_flags_tx = p->tcp_flags;
	} else {
		nf->rx_bytes = p->bytes;
		nf->rx_packets = 1;
		nf->tcp_flags_rx = p->tcp_flags;
	}
	nf->frags = p->is_frag;
	nf->flags |= p->flow_flags;
}

extern unsigned int CONFIG_HZ __kconfig __weak;

/* An unowned flow looks for its owner on its first packet of every tick during its first
 * second (an accept or a late bind races with the first packets), then on its first packet
 * of every retry window: 2^shift ticks, about a quarter of a second (64 ms when HZ is not
 * known), which is how late the start-up scan's answer can reach a flow older than a
 * second. Forwarded traffic, which no local socket will ever own, so pays the owner lookups
 * (tuples, up to three binds) once a window instead of once a tick. */
#define EMON_RETRY_EAGER_NS 1000000000ULL

static __always_inline __u32 retry_shift(void)
{
	return CONFIG_HZ >= 1000 ? 8 : CONFIG_HZ >= 500 ? 7 : CONFIG_HZ >= 200 ? 6 : CONFIG_HZ ? 5 : 6;
}

static __always_inline bool retry_due(const struct emon_flow *f, __u32 tick)
{
	if (f->last_tick == tick)
		return false;
	if (f->last_ns - f->first_ns < EMON_RETRY_EAGER_NS)
		return true;
	return (tick >> retry_shift()) != (f->last_tick >> retry_shift());
}

/* A flow created without an owner: the owner may have been learned since (the start-up
 * scan runs while the classifier is already attached on a restart; an accept or a late
 * bind), or the packet at hand is the kernel answering (a RST after an unanswered SYN
 * created the flow). Looks again when retry_due() says so, so unowned flows (forwarded
 * traffic) cost one flag test per packet and, rarely, the lookups. */
static __always_inline void flow_retry_owner(struct emon_flow *f, struct __sk_buff *skb, bool egress,
					     const struct pkt *p, __u32 tick)
{
	struct emon_owner o = {};

	if (f->owner.how) {
		f->flags &= ~EMON_FLOW_F_UNOWNED;
		return;
	}
	if (egress && kernel_sent(skb, p)) {
		owner_kernel(&o);
	} else {
		if (!retry_due(f, tick))
			return;
		resolve_owner(skb, egress, syn_inbound(egress, p), &p->key, &o);
		if (!o.how)
			return;
		stat_inc(EMON_STAT_FLOWS_PATCHED);
	}
	__builtin_memcpy(&f->owner, &o, sizeof(o));
	f->flags &= ~EMON_FLOW_F_UNOWNED;
	dirty_mark(&p->key, f->last_ns, 0);
}

/* Packet-level counters, once the packet parsed (a pulled-and-retried read must not count twice). */
static __always_inline void count_packet_stats(const struct pkt *p)
{
	if (!(p->flow_flags | p->frag_unmatched | p->ext_limit))
		return;
	if (p->flow_flags & EMON_FLOW_F_IP_OPTIONS)
		stat_inc_tc(EMON_STAT_PACKETS_IP_OPTIONS);
	if (p->flow_flags & EMON_FLOW_F_IPV6_EXT)
		stat_inc_tc(EMON_STAT_PACKETS_IPV6_EXT_HEADERS);
	if (p->is_frag)
		stat_inc_tc(EMON_STAT_PACKETS_FRAGMENTS);
	if (p->frag_unmatched)
		stat_inc_tc(EMON_STAT_FRAGMENTS_UNMATCHED);
	if (p->ext_limit)
		stat_inc_tc(EMON_STAT_PACKETS_EXT_HEADER_LIMIT);
}

/* What a bare SYN on an existing flow means (reused()): a new connection on the tuple when
 * the flow's socket closed, when no program saw the close of the last connection (below), or
 * when the SYN belongs to another process than the flow's owner. */
enum reuse {
	REUSE_NONE = 0,   /* the same connection (a SYN retransmitted) */
	REUSE_CLOSED,     /* a new connection on a tuple whose last one closed */
	REUSE_UNCLOSED,   /* a new connection on a tuple whose last one's close no program saw */
};

static __always_inline enum reuse reused(struct __sk_buff *skb, bool egress, const struct pkt *p, const struct emon_flow *f)
{
	struct emon_owner *o;
	__u64 cookie;

	if ((p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return REUSE_NONE;
	if (f->closed_ns)
		return REUSE_CLOSED;
	if (!egress)
		return REUSE_NONE;
	/* This host sends a SYN on the tuple, so no socket of its own holds it any more; and
	 * it sent an ACK on it before, so an earlier connection got past its handshake (a SYN
	 * retransmitted has only SYNs on the flow). That connection's socket went to CLOSE
	 * before the port could be taken again, and the close's program marks the flow closed
	 * before the socket leaves the tables (emit_close(), sockets.bpf.c): unmarked, no
	 * program saw that close. Its close is inferred here: the collector's check comes
	 * seconds later, when the next connection has replaced the flow (a client's ports come
	 * round every few seconds at thousands of connections a second). */
	if (f->tcp_flags_tx & TCP_FLAG_ACK)
		return REUSE_UNCLOSED;
	if (!f->owner.how)
		return REUSE_NONE;
	/* No ACK sent on the flow: another process's SYN is a new connection all the same,
	 * and the old owner is not handed to it. */
	cookie = bpf_get_socket_cookie(skb);
	o = cookie ? bpf_map_lookup_elem(&emon_owners, &cookie) : NULL;
	return o && o->tgid != f->owner.tgid ? REUSE_CLOSED : REUSE_NONE;
}

/* The close of flow `f` that no program reported, as emit_close() would have written it
 * from the flow, marked as inferred the way the daemon's collector marks its own (old
 * state 0xff, payload counts 0: docs/architecture.md "Closes the kernel did not report"):
 * dated at the flow's last packet. Counted when queued; a full ring counts as any event. */
static __always_inline void emit_inferred_close(const struct emon_flow_key *k, const struct emon_flow *f)
{
	struct emon_event_close *e = event_reserve(sizeof(*e), EMON_EV_CLOSE);

	if (!e)
		return;
	/* Flows count in CLOCK_MONOTONIC, records in CLOCK_BOOTTIME. */
	e->hdr.ts_ns = f->last_ns + (e->hdr.ts_ns - bpf_ktime_get_ns());
	__builtin_memcpy(&e->key, k, sizeof(*k));
	close_from_flow(e, f);
	e->duration_ns = f->last_ns > f->first_ns ? f->last_ns - f->first_ns : 0;
	e->payload_sent = e->payload_received = 0;
	e->old_state = EMON_INFERRED_OLD_STATE;
	e->_pad[0] = 0;
	bpf_ringbuf_submit(e, 0);
	stat_inc(EMON_STAT_CLOSES_INFERRED_AT_REUSE);
}

/* Parses and counts the packet; returns its flow (NULL: not IP, truncated, no flow could
 * be recorded, or a flow this packet created when no hook stage wants the interface). */
static __always_inline struct emon_flow *count(struct rd *r, struct pkt *p, bool egress)
{
	struct __sk_buff *skb = r->skb;
	struct emon_flow *f;
	enum reuse reuse;
	__u32 tick;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (!parse_ipv4(r, egress, p))
			goto truncated;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (!parse_ipv6(r, egress, p))
			goto truncated;
	} else {
		stat_inc_tc(EMON_STAT_PACKETS_NON_IP);
		return NULL;
	}
	count_packet_stats(p);

	/* The clock is read at most once a jiffy per flow: bpf_jiffies64() is a plain memory
	 * load (the verifier inlines it), a clock helper costs tens of ns (more with some
	 * CPU-bug mitigations). Timestamps come from the coarse clock (CLOCK_MONOTONIC_COARSE):
	 * millisecond resolution is all that first/last seen need. */
	tick = bpf_jiffies64();
	f = bpf_map_lookup_elem(&emon_flows, &p->key);
	if (!f) {
		struct emon_flow nf = {};
		long err;

		flow_init(&nf, skb, egress, p, bpf_ktime_get_coarse_ns(), tick);
		flow_count_first(&nf, p, egress);
		err = bpf_map_update_elem(&emon_flows, &p->key, &nf, BPF_NOEXIST);
		if (!err) {
			stat_inc_tc(EMON_STAT_FLOWS_CREATED);
			if (nf.flags & EMON_FLOW_F_UNOWNED)
				stat_inc_tc(EMON_STAT_FLOWS_UNATTRIBUTED);
			dirty_mark(&p->key, 0, nf.last_ns);
		} else if (err != -17 /* EEXIST: another CPU won the race */) {
			stat_inc_tc(EMON_STAT_FLOW_CREATE_FAILED);
		}
		/* Inserted: the packet is counted (the owner retry and the clock below have
		 * nothing to do on a flow made this jiffy); the hook chain's stages alone need
		 * the flow. Not inserted (another CPU's flow, or no room): counted below. */
		if (!err && !r->hooks)
			return NULL;
		f = bpf_map_lookup_elem(&emon_flows, &p->key);
		if (!f)
			return NULL;
		if (!err)
			return f;
	} else if ((reuse = reused(skb, egress, p, f)) != REUSE_NONE) {
		/* A new connection on an old tuple. The old one's close event carried its counts
		 * (when it could be queued; inferred now when no program saw that close), so
		 * start over. */
		struct emon_flow nf = {};
		__u64 last = f->last_ns; /* the update replaces the element f points to */

		if (reuse == REUSE_UNCLOSED)
			emit_inferred_close(&p->key, f);
		flow_init(&nf, skb, egress, p, bpf_ktime_get_coarse_ns(), tick);
		bpf_map_update_elem(&emon_flows, &p->key, &nf, BPF_EXIST);
		stat_inc_tc(EMON_STAT_FLOWS_REOPENED);
		dirty_mark(&p->key, last, nf.last_ns);
		f = bpf_map_lookup_elem(&emon_flows, &p->key);
		if (!f)
			return NULL;
	}

	if (egress) {
		__sync_fetch_and_add(&f->tx_bytes, p->bytes);
		__sync_fetch_and_add(&f->tx_packets, 1);
		/* Racy OR on purpose: flags only ever gain bits, a lost bit is re-set by the next packet. */
		if ((f->tcp_flags_tx & p->tcp_flags) != p->tcp_flags)
			f->tcp_flags_tx |= p->tcp_flags;
	} else {
		__sync_fetch_and_add(&f->rx_bytes, p->bytes);
		__sync_fetch_and_add(&f->rx_packets, 1);
		if ((f->tcp_flags_rx & p->tcp_flags) != p->tcp_flags)
			f->tcp_flags_rx |= p->tcp_flags;
	}
	if (p->is_frag)
		__sync_fetch_and_add(&f->frags, 1);
	if (f->flags & EMON_FLOW_F_UNOWNED)
		flow_retry_owner(f, skb, egress, p, tick);
	if ((f->flags & p->flow_flags) != p->flow_flags)
		f->flags |= p->flow_flags;
	if (f->last_tick != tick) {
		__u64 old = f->last_ns, now = bpf_ktime_get_coarse_ns();

		f->last_tick = tick;
		f->last_ns = now;
		dirty_tick(&p->key, old, now);
	}
	return f;
truncated:
	stat_inc_tc(EMON_STAT_PACKETS_TRUNCATED);
	return NULL;
}

/* Whether the L7 stage wants this packet: not for flows it decided are none of its
 * protocols (or done with), the one byte test that makes L7 cheap for every other flow;
 * not for an undecided TCP flow's packets without payload (it decides on the first
 * payload: the handshake and bare ACKs before it need not go further). */
static __always_inline bool l7_wanted(const struct pkt *p, const struct emon_flow *f)
{
	__u8 st = f->l7_state;

	if (st == EMON_L7_NONE || st == EMON_L7_DONE)
		return false;
	return st != EMON_L7_UNDECIDED || p->key.proto != IPPROTO_TCP || p->bytes > (__u32)p->l4_off + p->l4_hlen;
}

/* The hook chain (see EMON_HOOK_* in monitor/common.h): after the packet is counted, the
 * stages its interface asks for run by tail calls, slot order, with the packet's meta in
 * emon_pkt_meta. No bit set (no feature wants the interface): one byte test. A slot left
 * empty (feature off, or its program refused) makes the tail call fall through to the
 * next stage, and in the end to the classifier's return. Non-IP and truncated packets
 * (no flow, no owner) go to capture only. */
static __always_inline void hooks_dispatch(const struct rd *r, const struct pkt *p, const struct emon_flow *f, bool egress)
{
#ifndef EMON_NO_HOOKS
	struct emon_pkt_meta *m;
	__u32 zero = 0;
	__u8 want;

	if (!r->hooks)
		return;
	want = r->hooks & EMON_HOOK_CAPTURE;
	if ((r->hooks & EMON_HOOK_L7) && f && l7_wanted(p, f))
		want |= EMON_HOOK_L7;
	if (!want)
		return;
	m = bpf_map_lookup_elem(&emon_pkt_meta, &zero);
	if (!m)
		return;
	__builtin_memcpy(&m->key, &p->key, sizeof(m->key));
	if (f)
		__builtin_memcpy(&m->owner, &f->owner, sizeof(m->owner));
	else
		__builtin_memset(&m->owner, 0, sizeof(m->owner));
	m->ip_bytes = p->bytes;
	m->ifindex = r->skb->ifindex;
	m->l4_off = p->l4_off;
	m->l2_len = r->l2 >= 0 ? r->l2 : EMON_L2_UNKNOWN;
	m->l4_hlen = p->l4_hlen;
	m->ingress = !egress;
	m->hooks = want;
	m->flags = (p->key.family ? EMON_META_F_PARSED : 0) | (f ? EMON_META_F_FLOW : 0) | (p->is_frag ? EMON_META_F_FRAGMENT : 0);
	m->tcp_flags = p->tcp_flags;
	if (want & EMON_HOOK_L7)
		bpf_tail_call(r->skb, &emon_hooks, EMON_HOOK_SLOT_L7);
	if (want & EMON_HOOK_CAPTURE)
		bpf_tail_call(r->skb, &emon_hooks, EMON_HOOK_SLOT_CAPTURE);
#endif
}

static __always_inline int classify(struct __sk_buff *skb, bool egress)
{
	struct rd r = { .skb = skb };
	struct pkt p = {};
	struct emon_flow *f;

#ifndef EMON_NO_HOOKS
	/* ebpfmon's own packets (mirror copies, see EMON_MARK_OWN): not the host's traffic.
	 * Under the hooks' define: bench/classifier's baseline is the classifier before capture. */
	if (skb->mark == EMON_MARK_OWN)
		return TC_ACT_UNSPEC;
#endif
	iface_load(&r);
	f = count(&r, &p, egress);
	hooks_dispatch(&r, &p, f, egress);
	return TC_ACT_UNSPEC;
}

/* Attached to clsact ingress: packets arriving at this host. */
SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return classify(skb, false);
}

/* Attached to clsact egress: packets leaving this host (skb->sk is usually still set). */
SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return classify(skb, true);
}
