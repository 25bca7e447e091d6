/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Application layer (issue 14): what the L7 stage of the classifier's hook chain and the
 * loopback DNS tap (bpf/l7.bpf.c) and the OpenSSL uprobes (bpf/ssl.bpf.c) hand to user space
 * (daemon/src/l7/wire.ts mirrors it). Payload bytes only ever go to the ring buffer, are
 * parsed in memory and dropped: never logged, never stored. */
#ifndef EMON_L7_H
#define EMON_L7_H

#include "monitor/common.h"
#include "flows.h"

/* Ring-buffer record types (continuing enum emon_event_type). */
#define EMON_EV_L7  16 /* struct emon_l7_rec */
#define EMON_EV_SSL 17 /* struct emon_ssl_rec */

/* emon_config.flags bits: which protocols the classifier copies (runtime switches). */
#define EMON_CFG_L7_DNS  (1U << 1)
#define EMON_CFG_L7_HTTP (1U << 2)
#define EMON_CFG_L7_TLS  (1U << 3)

/* A flow's L7 state: struct emon_flow.l7_state, enum emon_l7_state (flows.h). */

/* Bytes copied per record: small payloads take a small record (the ring holds what is
 * reserved, not what is used). */
#define EMON_L7_SMALL 256
#define EMON_L7_LARGE 2048
/* A packet (a GSO super-packet can be 64 KiB) is copied in at most this many records. */
#define EMON_L7_MAX_PIECES 8

/* Per-direction byte budgets. HTTP: each message start (a request or status line at the
 * start of a packet) refills it, so every head and the start of every body is copied and
 * the rest of a large body is not. TLS: enough for a ClientHello (post-quantum key shares
 * make it about 1.8 KiB) and the ServerHello at the start of the server's first flight. */
#define EMON_L7_HTTP_BUDGET  16384
#define EMON_L7_TLS_CLIENT   8192
#define EMON_L7_TLS_SERVER   1024
#define EMON_L7_DNS_TCP      65535

/* emon_l7_rec.flags */
#define EMON_L7_F_SKIPPED (1U << 0) /* bytes of this direction before this record were
                                     * deliberately not copied (budget spent) */
#define EMON_L7_F_TAP     (1U << 1) /* from the loopback tap (egress only, no flow) */

/* EMON_EV_L7: one piece of a packet's payload, from the host's point of view. */
struct emon_l7_rec {
	struct emon_event_hdr hdr;
	struct emon_flow_key key;
	__u32 tgid;        /* owner of the local socket (0: unknown) */
	__u32 uid;
	__u32 seq;         /* TCP: sequence number of data[0]; UDP: 0 */
	__u32 ack;         /* TCP: acknowledgment number of the packet */
	__u32 len;         /* wire bytes this record stands for (>= cap_len) */
	__u16 cap_len;     /* bytes in data[] */
	__u8  kind;        /* enum emon_l7_state: EMON_L7_DNS, _HTTP or _TLS */
	__u8  dir;         /* 0: sent by the local socket (egress), 1: received (ingress) */
	__u8  tcp_flags;
	__u8  flags;       /* EMON_L7_F_* */
	__u8  _pad[6];
	__u8  data[];      /* EMON_L7_SMALL or EMON_L7_LARGE bytes reserved */
};

/* OpenSSL plaintext (bpf/ssl.bpf.c). */
#define EMON_SSL_CAP 4096

#define EMON_SSL_F_KEY (1U << 0) /* key holds the connection's socket */
#define EMON_SSL_F_EX  (1U << 1) /* from SSL_write_ex / SSL_read_ex */
#define EMON_SSL_F_EOF (1U << 2) /* SSL_read returned 0: the connection ended (no data) */

/* EMON_EV_SSL: one SSL_write/SSL_read call's plaintext. */
struct emon_ssl_rec {
	struct emon_event_hdr hdr;
	struct emon_flow_key key; /* the socket the connection uses (EMON_SSL_F_KEY) */
	__u64 ssl;         /* the SSL * pointer: one connection, with the tgid */
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 seq;         /* this direction's plaintext offset in the connection (mod 2^32) */
	__u32 len;         /* bytes the call wrote or read */
	__u16 cap_len;     /* bytes in data[] */
	__u8  dir;         /* 0: SSL_write (sent), 1: SSL_read (received) */
	__u8  flags;       /* EMON_SSL_F_* */
	char  comm[EMON_COMM_LEN];
	__u8  data[];      /* EMON_L7_SMALL, EMON_L7_LARGE or EMON_SSL_CAP bytes reserved */
};

/* Indexes into emon_l7_stats and emon_ssl_stats (per-CPU u64). Names in user space:
 * daemon/src/contract/l7.ts L7_COUNTERS (the enumerator after EMON_L7_STAT_, camelCase). */
enum emon_l7_stat {
	EMON_L7_STAT_RECORDS = 0,      /* records queued */
	EMON_L7_STAT_BYTES_COPIED,     /* payload bytes copied */
	EMON_L7_STAT_RINGBUF_FULL,     /* records lost: ring buffer full */
	EMON_L7_STAT_PACKETS_SKIPPED,  /* packets not copied: the flow's budget was spent */
	EMON_L7_STAT_PIECES_LIMIT,     /* packets copied in part: more than EMON_L7_MAX_PIECES records */
	EMON_L7_STAT_LOAD_FAILED,      /* payload reads that failed */
	EMON_L7_STAT_FLOWS_DNS,        /* flows found to be DNS */
	EMON_L7_STAT_FLOWS_HTTP,       /* ... HTTP/1.x */
	EMON_L7_STAT_FLOWS_TLS,        /* ... TLS */
	EMON_L7_STAT_SSL_CALLS,        /* SSL_read/SSL_write calls recorded */
	EMON_L7_STAT_SSL_NO_SOCKET,    /* ... whose socket was not known (recorded without it) */
	EMON_L7_STAT_SSL_ENTRY_MISSED, /* returns whose entry probe was not seen (missed) */
	EMON_L7_STAT_SSL_READ_FAILED,  /* plaintext reads that failed (page not present) */
	EMON_L7_STAT_MAX = 16,
};

#endif /* EMON_L7_H */
