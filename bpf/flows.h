/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Flows: what the TC classifier (bpf/flows.bpf.c) counts, keyed from the host's point
 * of view (local = this machine's side, whichever direction the packet went). */
#ifndef EMON_FLOWS_H
#define EMON_FLOWS_H

#include "monitor/common.h"

/* emon_flows key. IPv4 addresses use the first 4 bytes of addr[] and the rest is zero;
 * IPv4-mapped IPv6 sockets are keyed as IPv4. For ICMP/ICMPv6, rport is the message
 * type (a reply is keyed by its request's type, so a ping is one flow) and lport the
 * echo identifier (0 for other types). */
struct emon_flow_key {
	__u8  family;      /* AF_INET (2) or AF_INET6 (10) */
	__u8  proto;       /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, other */
	__u16 lport;       /* host byte order */
	__u16 rport;       /* host byte order */
	__u8  _pad[2];
	__u8  laddr[16];
	__u8  raddr[16];
};

enum emon_direction {
	EMON_DIR_UNKNOWN  = 0,
	EMON_DIR_OUTBOUND = 1, /* the first packet seen left this host */
	EMON_DIR_INBOUND  = 2, /* the first packet seen arrived at this host */
};

/* emon_flows value. Byte counts are IP-layer (IP header plus payload, per packet as
 * the interface carries it: a GSO super-packet counts once, as tcpdump shows it). */
struct emon_flow {
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 rx_packets;
	__u64 first_ns;      /* CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns); last_ns to a tick */
	__u64 last_ns;
	__u64 closed_ns;     /* when the owning TCP socket reached CLOSE; 0 while open */
	__u32 ifindex;       /* interface of the first packet */
	__u32 frags;         /* IP fragments counted into this flow */
	__u32 last_tick;     /* jiffies (low 32 bits) when last_ns was last set: the clock is
	                      * read at most once a tick per flow */
	__u8  tcp_flags_tx;  /* OR of TCP flags sent */
	__u8  tcp_flags_rx;  /* OR of TCP flags received */
	__u8  sock_state;    /* last TCP state of the local socket (TCP_* numbering), 0 unknown */
	__u8  direction;     /* enum emon_direction */
	__u8  flags;         /* EMON_FLOW_F_* */
	/* The application layer's per-flow state (bpf/l7.bpf.c): the classifier only tests
	 * l7_state (see hooks_dispatch in flows.bpf.c); the L7 program owns all four. Zero in a
	 * new flow: undecided. */
	__u8  l7_state;      /* enum emon_l7_state */
	__u16 l7_budget[2];  /* bytes still to copy, per direction (0: sent, 1: received) */
	__u8  l7_flags;      /* L7 program's own flags */
	__u8  _pad[1];
	struct emon_owner owner;
	/* The four counts above summed as the close event queued for this flow carried them
	 * (sockets.bpf.c emit_close()); 0: no close event was queued. The daemon compares it
	 * with the counts it reads: equal, history has the flow's final counts from that
	 * event and need not list it again (daemon/src/monitor/flows.ts noteChanged()). */
	__u64 close_sum;
};

/* emon_flow.l7_state. Decided once per flow by the L7 program; after that a flow that is
 * none of DNS, HTTP or TLS (or whose TLS hellos are copied) costs the classifier one byte
 * test per packet. */
enum emon_l7_state {
	EMON_L7_UNDECIDED = 0,
	EMON_L7_NONE      = 1, /* not DNS/HTTP/TLS, or L7 off when decided */
	EMON_L7_DNS       = 2,
	EMON_L7_HTTP      = 3,
	EMON_L7_TLS       = 4, /* copying the hellos */
	EMON_L7_DONE      = 5, /* TLS hellos copied: nothing more to copy */
};

#define EMON_FLOW_F_IP_OPTIONS (1U << 0) /* IPv4 options seen */
#define EMON_FLOW_F_IPV6_EXT   (1U << 1) /* IPv6 extension headers seen */
#define EMON_FLOW_F_FRAGMENTS  (1U << 2) /* fragments seen */
#define EMON_FLOW_F_UNOWNED    (1U << 3) /* created without an owner: the classifier looks again
                                          * (at most once a tick) until one is known */

/* emon_dirty record: a flow that changed (created, reopened, owner patched, closed, or its
 * counters moved into a new dirty epoch). stamp: the flow's last_ns when a packet pushed it
 * (the daemon reads such a flow again on its next refresh when stamp >= the epoch it read
 * under), 0 for changes that are not counts. */
struct emon_dirty_rec {
	struct emon_flow_key key;
	__u64 stamp;
};

/* emon_frags: later fragments carry no ports; the first one teaches them. */
struct emon_frag_key {
	__u8  family;
	__u8  proto;
	__u8  _pad[2];
	__u32 id;          /* IPv4 id (16 bits) or IPv6 fragment id */
	__u8  saddr[16];
	__u8  daddr[16];
};

struct emon_frag_ports {
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u8  _pad[4];
};

/* emon_ifaces value: an interface the classifier is attached to. */
struct emon_iface {
	__u32 ifindex;     /* 0: slot unused */
	__u16 l2_len;      /* link-layer header length in front of the network header at TC
	                    * (EMON_L2_UNKNOWN: read headers relative to the network header) */
	__u8  hooks;       /* EMON_HOOK_* bits: stages that want this interface's packets */
	__u8  _pad[1];
};

#define EMON_L2_UNKNOWN 0xffff

#define EMON_IFACE_SLOTS 1024

/* emon_pkt_meta.flags */
#define EMON_META_F_PARSED   (1U << 0) /* key, ip_bytes and l4_* are valid (an IP packet whose
                                        * headers parsed); clear for non-IP and truncated */
#define EMON_META_F_FLOW     (1U << 1) /* the packet was counted in a flow: owner is the flow's */
#define EMON_META_F_FRAGMENT (1U << 2) /* an IP fragment (a later one carries no L4 header) */

/* emon_pkt_meta value: what the classifier hands to the stages of the hook chain for the
 * packet at hand (written once, before the first tail call; skb->cb is 20 bytes, too small).
 * Per CPU: TC programs do not nest on a CPU (egress runs with bottom halves off, ingress in
 * the softirq), so the entry belongs to one packet from the classifier's write until the
 * last stage returns. */
struct emon_pkt_meta {
	struct emon_flow_key key;  /* from the host's point of view (as emon_flows) */
	struct emon_owner owner;   /* the flow's owner (zero without EMON_META_F_FLOW) */
	__u32 ip_bytes;            /* IP-layer length */
	__u32 ifindex;
	__u16 l4_off;              /* transport header offset from the network header (0: none) */
	__u16 l2_len;              /* link-layer header length (EMON_L2_UNKNOWN: not known) */
	__u8  l4_hlen;             /* transport header length (TCP data offset, UDP 8; 0: none) */
	__u8  ingress;             /* 1: the packet arrived (tc_ingress); 0: it leaves */
	__u8  hooks;               /* EMON_HOOK_* bits of the stages still to run */
	__u8  flags;               /* EMON_META_F_* */
	__u8  tcp_flags;
	__u8  _pad[7];
};

#endif /* EMON_FLOWS_H */
