/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Sockets that change hands (bpf/handoff.bpf.c): per-socket record of who uses a socket
 * when that is not its recorded owner. Shared with user space (daemon/src/monitor/handoff.ts). */
#ifndef EMON_HANDOFF_H
#define EMON_HANDOFF_H

#include "monitor/common.h"

enum emon_ho_state {
	EMON_HO_HANDED = 1, /* only `user_tgid` uses it now: it owns the socket (how = user) */
	EMON_HO_SHARED = 2, /* an earlier user came back: used by several, the recorded owner
	                     * (`orig`) keeps it for good */
};

/* emon_handoffs value, keyed by socket cookie. Only sockets whose user ever differed from
 * the recorded owner have one. */
struct emon_handoff {
	struct emon_owner orig;    /* the recorded owner before the first handoff (creator,
	                            * connector, acceptor or binder) */
	__u64 handoff_ns;          /* CLOCK_BOOTTIME of the last change */
	__u64 tx_bytes_before;     /* the socket's flow counters when the last change happened */
	__u64 rx_bytes_before;     /* (connected sockets; 0 when the flow was not seen) */
	__u64 tx_packets_before;
	__u64 rx_packets_before;
	__u32 user_tgid;           /* the current user (numbered like emon_owner.tgid) */
	__u32 prev_tgid;           /* the user before it */
	__u32 handoffs;            /* times the user changed */
	__u32 flows_patched;       /* flows moved at the last change */
	__u8  state;               /* enum emon_ho_state */
	__u8  connected;           /* 1: one flow (TCP, connected UDP); 0: a bound endpoint's flows */
	__u8  _pad[6];
};

/* Indexes into emon_hostats (per-CPU u64 counters). User space names each after its
 * enumerator in camelCase (EMON_HO_STAT_SLOW_PATH is `slowPath`): contract/identity.ts
 * HANDOFF_COUNTERS, checked against this enum's BTF (test/unit/layout.test.ts). */
enum emon_ho_stat {
	EMON_HO_STAT_SLOW_PATH = 0,    /* uses that were not by the socket's current owner */
	EMON_HO_STAT_HANDOFFS,         /* sockets that went to a new user */
	EMON_HO_STAT_SHARED,           /* sockets found used by several processes (owner kept) */
	EMON_HO_STAT_OWNERS_FILLED,    /* sockets without an owner by cookie that got one */
	EMON_HO_STAT_FLOWS_PATCHED,    /* flows whose owner was moved */
	EMON_HO_STAT_UPDATE_FAILED,    /* map updates the kernel refused */
	EMON_HO_STAT_MAX,
};

#endif /* EMON_HANDOFF_H */
