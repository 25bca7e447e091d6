/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Definitions shared by every ebpfmon BPF object and by user space (daemon/src/monitor
 * decoders mirror them; test/unit/layout checks the mirror against the objects' BTF).
 * Fixed-width types only, explicit padding, no implicit holes. */
#ifndef EMON_COMMON_H
#define EMON_COMMON_H

/* Bump when the key or value layout of any pinned monitor map changes: a daemon that
 * finds pins of another layout version recreates them instead of misreading them. */
#define EMON_LAYOUT_VERSION 4

#define EMON_COMM_LEN 16

/* Every ring-buffer event starts with this header. */
struct emon_event_hdr {
	__u16 type;   /* enum emon_event_type */
	__u16 size;   /* whole event, header included, in bytes */
	__u32 cpu;
	__u64 ts_ns;  /* CLOCK_BOOTTIME */
};

enum emon_event_type {
	EMON_EV_CONNECT = 1,
	EMON_EV_ACCEPT  = 2,
	EMON_EV_CLOSE   = 3,
	EMON_EV_EXEC    = 4,
	EMON_EV_EXIT    = 5,
};

/* Indexes into emon_stats (per-CPU u64 counters). User space names each counter after its
 * enumerator in camelCase (EMON_STAT_FLOWS_CREATED is `flowsCreated`, from C to D-Bus):
 * daemon/src/contract/status.ts MONITOR_COUNTERS, checked against this enum's BTF. */
enum emon_stat {
	EMON_STAT_RINGBUF_FULL = 0,             /* events lost: ring buffer full */
	EMON_STAT_FLOWS_CREATED,                /* flows inserted into emon_flows */
	EMON_STAT_FLOW_CREATE_FAILED,           /* flow inserts the kernel refused */
	EMON_STAT_FLOWS_UNATTRIBUTED,           /* flows created without a known owner */
	EMON_STAT_PACKETS_NON_IP,               /* packets that are not IPv4/IPv6 (ARP, LLDP...) */
	EMON_STAT_PACKETS_TRUNCATED,            /* headers shorter than they claim */
	EMON_STAT_PACKETS_IP_OPTIONS,           /* IPv4 packets with options */
	EMON_STAT_PACKETS_IPV6_EXT_HEADERS,     /* IPv6 packets with extension headers */
	EMON_STAT_PACKETS_FRAGMENTS,            /* IP fragments */
	EMON_STAT_FRAGMENTS_UNMATCHED,          /* later fragments whose first fragment was not seen */
	EMON_STAT_PACKETS_EXT_HEADER_LIMIT,     /* IPv6 header chains longer than we walk */
	EMON_STAT_OWNERS_SOCKET,                /* owners recorded at socket creation */
	EMON_STAT_OWNERS_CONNECT,               /* ... at connect() */
	EMON_STAT_OWNERS_ACCEPT,                /* ... at accept() */
	EMON_STAT_OWNERS_BIND,                  /* local endpoints recorded at bind()/listen() */
	EMON_STAT_OWNERS_SEND,                  /* ... at UDP sendmsg() on an unowned socket */
	EMON_STAT_OWNERS_PROC,                  /* ... by the start-up socket scan */
	EMON_STAT_OWNER_UPDATE_FAILED,          /* owner map updates the kernel refused */
	EMON_STAT_FLOWS_PATCHED,                /* flows whose owner was filled in after creation */
	EMON_STAT_EXEC_EVENTS,                  /* exec events */
	EMON_STAT_EXIT_EVENTS,                  /* exit events */
	EMON_STAT_CLOSE_EVENTS,                 /* TCP close events */
	EMON_STAT_FLOWS_REOPENED,               /* flows restarted by a new connection on the same tuple */
	EMON_STAT_PACKETS_PULLED,               /* packets whose headers had to be pulled into the linear area */
	EMON_STAT_STATE_CHANGES_RESCUED,        /* TCP state changes the backup program handled (primary busy on the CPU) */
	EMON_STAT_SCAN_OVERFLOW,                /* sockets the start-up scan could not record (its inode table was full) */
	EMON_STAT_FLOWS_KERNEL,                 /* flows labelled as the kernel's own traffic */
	EMON_STAT_DIRTY_RING_FULL,              /* changed flows the dirty ring could not take (the daemon walks them all once) */
	EMON_STAT_CLOSES_INFERRED_AT_REUSE,     /* TCP closes no program reported, inferred when a new connection took the tuple */
	EMON_STAT_CLOSES_INFERRED = 30,         /* written by the daemon: closes the kernel did not report, inferred */
	EMON_STAT_FLOWS_DELETED = 31,           /* written by the daemon: flows it removed (closed, idle) */
	EMON_STAT_MAX = 32,
};

/* How an owner was learned (user space: `attributedBy`). Higher is not better; each
 * names its hook so an admin can judge the answer. */
enum emon_how {
	EMON_HOW_NONE    = 0, /* not attributed */
	EMON_HOW_SOCKET  = 1, /* the process that created the socket (cgroup/sock_create) */
	EMON_HOW_CONNECT = 2, /* the process that called connect() (cgroup/connect4|6) */
	EMON_HOW_ACCEPT  = 3, /* the process that accept()ed it */
	EMON_HOW_BIND    = 4, /* the process that bound the local port (listener or UDP server) */
	EMON_HOW_SEND    = 5, /* the process that sent on an unowned UDP socket (cgroup/sendmsg) */
	EMON_HOW_PROC    = 6, /* the socket scan at daemon start (socket predates the daemon) */
	EMON_HOW_KERNEL  = 7, /* the kernel itself (neighbour discovery, MLD, IGMP, RSTs and ICMP
	                       * errors it sends from its control sockets); no process */
	EMON_HOW_USER    = 8, /* the only process that sends/receives on it: the socket changed
	                       * hands (socket activation, SCM_RIGHTS, fork); bpf/handoff.bpf.c */
};

struct emon_owner {
	__u32 tgid;        /* process id */
	__u32 pid;         /* thread id */
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;   /* cgroup v2 id */
	__u64 learned_ns;  /* CLOCK_BOOTTIME when recorded */
	char  comm[EMON_COMM_LEN];
	__u8  how;         /* enum emon_how */
	__u8  _pad[7];
};

/* Runtime settings, written by the daemon into emon_config[0]: a map, not .rodata, because
 * pinned programs are adopted by a restarted daemon without reloading, and these follow its
 * configuration (daemon/src/monitor/monitor.ts writeConfig). */
struct emon_config {
	__u64 netns_cookie; /* only sockets of this network namespace are tracked (0: all) */
	__u32 flags;        /* EMON_CFG_* */
	__u32 pidns_inum;   /* pids as the daemon's pid namespace numbers them (0: global pids) */
};

#define EMON_CFG_EXEC_ARGS (1U << 0) /* capture exec arguments */

/* skb->mark of the packets ebpfmon sends itself (mirror copies on their way to a collector,
 * bpf/capture.bpf.c): the classifier skips them, so they are never counted as the host's
 * flows nor handed to the hook chain (mirrored again). */
#define EMON_MARK_OWN 0x656d6f6e /* "emon" */

/* The classifier's hook chain (flows.bpf.c hooks_dispatch). Features that look at packets
 * after the classifier has counted them (L7, capture/mirror) are programs in emon_hooks,
 * tail-called in slot order with what the classifier parsed in emon_pkt_meta (flows.h);
 * an interface's emon_iface.hooks says which of them want its packets, so a packet no
 * feature wants costs one byte test. Bit n <-> slot n. */
#define EMON_HOOK_L7      (1U << 0) /* DNS, HTTP, TLS hellos (tc_l7_flow) */
#define EMON_HOOK_CAPTURE (1U << 1) /* capture/mirror selection (tc_cap_select) */
#define EMON_HOOK_SLOT_L7      0
#define EMON_HOOK_SLOT_CAPTURE 1
#define EMON_HOOK_SLOTS        4   /* 2-3 reserved */

#endif /* EMON_COMMON_H */
