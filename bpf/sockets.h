/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Socket ownership: who (which process) owns a socket, and how ebpfmon learned it.
 * Written by bpf/sockets.bpf.c, read by bpf/flows.bpf.c and by user space. */
#ifndef EMON_SOCKETS_H
#define EMON_SOCKETS_H

#include "monitor/common.h"
#include "flows.h"

/* emon_owner_ports: the marks of local ports, a bit each (port p: word p / 64, bit p % 64),
 * twice: words [0, EMON_OWNER_PORT_WORDS) are set by BPF programs with an atomic OR, the
 * next EMON_OWNER_PORT_WORDS by the daemon, the only writer in user space (a user-space
 * update writes a whole element, so it must never rewrite a word the kernel sets). */
#define EMON_OWNER_PORT_WORDS (65536 / 64)

/* A local endpoint (listening or bound socket): emon_binds key. */
struct emon_endpoint {
	__u8  family;
	__u8  proto;
	__u16 port;        /* host byte order */
	__u8  _pad[4];
	__u8  addr[16];    /* all zero for a wildcard bind */
};

/* EMON_EV_CONNECT (an outbound TCP connection reached ESTABLISHED) and EMON_EV_ACCEPT. */
struct emon_event_conn {
	struct emon_event_hdr hdr;
	struct emon_flow_key key;
	struct emon_owner owner;
	__u64 cookie;      /* socket cookie, 0 if unknown */
};

/* old_state of a close no program reported, inferred from the flow (by the classifier when
 * a new connection takes the tuple, by the daemon's collector otherwise): no TCP state. */
#define EMON_INFERRED_OLD_STATE 0xff

/* EMON_EV_CLOSE: a TCP socket reached CLOSE. Counts come from the flow (IP-layer, as seen
 * on monitored interfaces) and from the socket itself (payload bytes, any interface). */
struct emon_event_close {
	struct emon_event_hdr hdr;
	struct emon_flow_key key;
	struct emon_owner owner;
	__u64 tx_bytes;        /* flow: IP-layer bytes sent (0 if the flow was not seen) */
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 rx_packets;
	__u64 duration_ns;     /* flow: first packet to close (0 if not seen) */
	__u64 payload_sent;    /* tcp_sock: payload bytes sent and acknowledged (any interface) */
	__u64 payload_received; /* tcp_sock: payload bytes received */
	__u32 ifindex;
	__u8  old_state;       /* TCP state before CLOSE */
	__u8  flow_seen;       /* 1 when a monitored interface carried the flow */
	__u8  direction;       /* enum emon_direction */
	__u8  _pad[1];
};

#endif /* EMON_SOCKETS_H */
