/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Capture and mirror sessions (issue 13): the wire format shared with user space
 * (daemon/src/capture/wire.ts mirrors it; test/unit/daemon/capture/layout.test.ts checks the
 * mirror against the BTF of capture.bpf.o). The path:
 *
 *   tc_ingress / tc_egress (flows.bpf.c)   counts the packet; when its interface has the
 *        |  emon_iface.hooks & CAPTURE       capture bit, leaves it in emon_pkt_meta and
 *        v                                   tail-calls the hook chain
 *   emon_hooks[EMON_HOOK_SLOT_CAPTURE]      tc_cap_select: generated at run time from every
 *        |  a session matched                session's selectors and pcap-filter expression
 *        v                                   (daemon/src/capture/select.ts)
 *   emon_cap_progs[EMON_CAP_PROG_DELIVER]   tc_cap_deliver: counts per session, copies the
 *        |                                   packet to the daemon once (capture sessions),
 *        v                                   clones it once per mirror session
 *   tunnel device egress (mirror)           tc_mirror_out: on the clone only: snap length,
 *                                            tunnel key (collector, VNI/key), mark; the
 *                                            kernel's vxlan/gretap device encapsulates
 *
 * No program changes or drops the packet: every one returns the classifier's verdict. */
#ifndef EMON_CAPTURE_H
#define EMON_CAPTURE_H

#include "monitor/common.h"

/* Sessions at once (capture and mirror together): one bit each in a u32 match mask. */
#define EMON_CAP_SESSIONS 32

/* emon_cap_progs slots */
#define EMON_CAP_PROG_DELIVER 0
#define EMON_CAP_PROGS        1

/* A mirrored clone carries its session to tc_mirror_out in skb->cb (the clone's own copy;
 * the original's cb is restored right after cloning): cb[0] = session slot, cb[1] = this. */
#define EMON_CAP_CB_MAGIC 0x63617031 /* "cap1" */

/* Bytes of a session's declaration in emon_cap_spec (user space's JSON). */
#define EMON_CAP_SPEC_BYTES 4096

/* emon_cap_state: per CPU, from the engine to the delivery program (TC programs do not nest
 * on a CPU: the entry belongs to one packet between the two). */
struct emon_cap_state {
	__u32 match;       /* sessions that selected the packet */
	__u32 _pad;
};

enum emon_cap_kind {
	EMON_CAP_KIND_NONE    = 0,
	EMON_CAP_KIND_CAPTURE = 1, /* copy to the daemon through emon_cap_events */
	EMON_CAP_KIND_MIRROR  = 2, /* clone to a tunnel device (bpf_clone_redirect) */
};

/* emon_cap_conf[0]: the sessions by kind, as bits, so that delivery sorts a match mask
 * with two ANDs. (A loop accumulating masks per session makes the verifier walk every
 * combination of 32 sessions.) */
struct emon_cap_conf {
	__u32 capture;     /* slots of capture sessions */
	__u32 mirror;      /* slots of mirror sessions */
	__u32 snaplen;     /* bytes copied to the daemon: the largest snaplen of the capture
	                    * sessions (each session's own is applied in user space) */
	__u32 _pad;
};

/* emon_cap_sess value, by session slot: what delivery and tc_mirror_out need. */
struct emon_cap_session {
	__u32 kind;           /* enum emon_cap_kind */
	__u32 snaplen;        /* mirror: inner frame bytes kept (0: the whole frame) */
	__u32 tunnel_ifindex; /* mirror: the tunnel device clones go to */
	__u32 tunnel_id;      /* mirror: VXLAN network identifier or GRE key */
	__u64 interval_ns;    /* mirror: 1e9 / packets per second (0: no rate limit) */
	__u64 burst_ns;       /* mirror: how far ahead of time the limiter may run (burst) */
	__u8  remote[16];     /* mirror: collector address (IPv4: first 4 bytes) */
	__u32 mtu;            /* mirror: path MTU to the collector (0: not known) */
	__u16 overhead;       /* mirror: bytes the tunnel adds in front of the frame (outer IP, UDP + VXLAN or GRE) */
	__u8  family;         /* mirror: AF_INET or AF_INET6 of the collector */
	__u8  encap;          /* mirror: enum emon_cap_encap */
};

enum emon_cap_encap {
	EMON_CAP_ENCAP_VXLAN = 1,
	EMON_CAP_ENCAP_GRE   = 2, /* transparent Ethernet bridging (gretap, ip6gretap) */
};

/* emon_cap_rate value (shared by the CPUs), by session slot: the mirror's rate limiter
 * (GCRA: the theoretical arrival time of the next packet). */
struct emon_cap_rate {
	__u64 tat_ns;
};

/* emon_cap_stats value (per CPU), by session slot. User space names each field in
 * camelCase (matched_bytes is `matchedBytes`): contract/capture.ts CaptureCounters and
 * MirrorCounters. Every matched packet of a capture session is then captured or dropped;
 * every matched packet of a mirror session rate-limited, failed or mirrored. */
struct emon_cap_counters {
	__u64 matched;          /* capture: skbs; mirror: wire frames (a GSO skb is several) */
	__u64 matched_bytes;    /* capture: skb->len; mirror: wire bytes */
	__u64 captured;         /* capture: copy queued for the daemon */
	__u64 captured_bytes;   /* bytes copied (at most the snap length each) */
	__u64 dropped;          /* capture: the ring was full (the daemon is behind) */
	__u64 mirrored;         /* mirror: clone handed to the tunnel */
	__u64 mirrored_bytes;   /* inner frame bytes */
	__u64 truncated;        /* copies cut to the snap length (or, mirror over IPv6, to fit the path) */
	__u64 rate_limited;     /* mirror: over the session's rate, not cloned */
	__u64 failed;           /* mirror: clone, redirect or tunnel key refused */
	__u64 too_big;          /* mirror: the outer packet exceeds the path MTU */
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
	__u8  direction;   /* enum emon_direction: 1 outbound (egress), 2 inbound */
	__u8  l2_len;      /* 14 Ethernet, 0 raw IP */
	__u8  how;         /* enum emon_how of the owner */
	__u8  _pad[5];
};

#endif /* EMON_CAPTURE_H */
