/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The load balancer's kernel-only constants (the ones user space shares are in lb.h). */
#ifndef EMON_LB_CONSTS_BPF_H
#define EMON_LB_CONSTS_BPF_H

#include "vmlinux.h"

/* What a "fragmentation needed" / "packet too big" quotes of the packet it answers: the IP
 * header and 8 bytes (the ports), the minimum RFC 792 and RFC 4443 ask for. */
#define TOOBIG4_QUOTE (sizeof(struct iphdr) + 8)
#define TOOBIG6_QUOTE (sizeof(struct ipv6hdr) + 8)

/* struct decision.insert: what commit() writes into emon_lb_conns */
#define LB_INSERT_NONE    0 /* an existing entry serves the flow */
#define LB_INSERT_NEW     1 /* a new entry (BPF_NOEXIST: another CPU may have won) */
#define LB_INSERT_REPLACE 2 /* the entry named a backend the flow may not use */

/* Map updates answer -EEXIST for BPF_NOEXIST on a present key (vmlinux.h has no errno). */
#define LB_EEXIST 17

#endif /* EMON_LB_CONSTS_BPF_H */
