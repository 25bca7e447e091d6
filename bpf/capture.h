/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Capture and mirror sessions: what the classifier hands to the filter engine, what the
 * engine hands to the delivery program, and what reaches user space. The path:
 *
 *   tc_ingress / tc_egress (flows)         counts the packet as always; when its interface
 *        |  emon_iface.capture set          has sessions, fills emon_cap_meta (this CPU's
 *        v                                  slot) with the flow's owner and tail-calls
 *   emon_cap_progs[EMON_CAP_PROG_SELECT]   the engine: generated at run time from every
 *        |  meta->match != 0                session's selectors and pcap-filter expression
 *        v                                  (daemon/src/capture/select.ts)
 *   emon_cap_progs[EMON_CAP_PROG_DELIVER]  counts per session and copies the packet to
 *                                           user space (capture) or clones it (mirror)
 *
 * Every program returns TC_ACT_UNSPEC: the packet itself is never changed or dropped. */
#ifndef EMON_CAPTURE_H
#define EMON_CAPTURE_H

#include "lib/common.h"

/* Sessions at once: one bit each in a u32 match mask. */
#define EMON_CAP_SESSIONS 32

/* emon_cap_progs slots */
#define EMON_CAP_PROG_SELECT  0
#define EMON_CAP_PROG_DELIVER 1
#define EMON_CAP_PROGS        2

/* emon_iface.capture bits (bpf/flows.h): which hand-off the interface wants. */
#define EMON_IFACE_CAP_ON (1U << 0)

/* emon_cap_meta: one per CPU. Written by the classifier right before the tail call and
 * read by the programs it leads to, on the same CPU with no other TC program in between
 * (TC runs with bottom halves off), so a per-CPU slot needs no locking. */
struct emon_cap_meta {
	__u32 ifindex;
	__u8  direction;   /* enum emon_direction (bpf/flows.h): 1 outbound (egress), 2 inbound */
	__u8  l2_len;      /* link-layer header length at TC: 14 Ethernet, 0 raw IP */
	__u8  _pad[2];
	__u32 match;       /* sessions that selected the packet (written by the engine) */
	__u32 _pad2;
	struct emon_owner owner; /* the flow's owner; how == 0: not known */
};

enum emon_cap_kind {
	EMON_CAP_KIND_NONE    = 0,
	EMON_CAP_KIND_CAPTURE = 1, /* copy to user space through emon_cap_events */
	EMON_CAP_KIND_MIRROR  = 2, /* clone to an interface (bpf_clone_redirect) */
};

/* emon_cap_conf[0]: the sessions by kind, as bits, so that delivery sorts a match mask
 * with two ANDs. (A loop accumulating masks per session makes the verifier walk every
 * combination of 32 sessions.) */
struct emon_cap_conf {
	__u32 capture;     /* slots of capture sessions */
	__u32 mirror;      /* slots of mirror sessions */
	__u32 snaplen;     /* bytes copied to user space: the largest snaplen of the capture
	                    * sessions (each session's own is applied in user space) */
	__u32 _pad;
};

/* emon_cap_sess value, by session slot: what the delivery program needs of a session. */
struct emon_cap_session {
	__u32 kind;        /* enum emon_cap_kind */
	__u32 snaplen;     /* bytes kept of each packet */
	__u32 ifindex;     /* mirror: where the clone goes */
	__u32 flags;
};

/* emon_cap_stats value (per CPU), by session slot. Every packet a session's selectors and
 * filter accepted is `matched`; then exactly one of delivered / dropped / failed. */
struct emon_cap_counters {
	__u64 matched;
	__u64 matched_bytes;    /* skb->len */
	__u64 delivered;        /* capture: record committed; mirror: clone sent */
	__u64 delivered_bytes;  /* bytes copied (at most snaplen each) */
	__u64 dropped;          /* capture: the ring was full (the reader is behind) */
	__u64 truncated;        /* packets cut to snaplen */
	__u64 failed;           /* mirror: clone or redirect refused */
	__u64 _reserved;
};

/* What reaches user space for one packet, followed by cap_len bytes of it from the
 * link-layer header on (or the IP header on raw-IP interfaces). Sent once, whichever
 * capture sessions matched: `sessions` says which. */
struct emon_cap_record {
	__u64 ts_ns;       /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 cgroup_id;   /* owner's cgroup v2 id */
	__u32 sessions;    /* capture sessions that matched (bits) */
	__u32 ifindex;
	__u32 wire_len;    /* skb->len */
	__u32 cap_len;     /* bytes that follow */
	__u32 tgid;        /* owner (0: not known) */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	char  comm[EMON_COMM_LEN];
	__u8  direction;
	__u8  l2_len;
	__u8  how;         /* enum emon_how of the owner */
	__u8  _pad[5];
};

#endif /* EMON_CAPTURE_H */
