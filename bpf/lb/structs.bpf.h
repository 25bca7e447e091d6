/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The load balancer's kernel-only structs: state carried through one packet's path. The
 * wire format (map keys and values user space reads) is lb.h. */
#ifndef EMON_LB_STRUCTS_BPF_H
#define EMON_LB_STRUCTS_BPF_H

#include "vmlinux.h"
#include "lb.h"
#include "lb/consts.bpf.h"

struct decision {
	struct emon_lb_conn nc;      /* entry to insert when `insert` is set */
	struct emon_lb_conn *conn;   /* existing entry (NULL for new flows) */
	__u64 tick;                  /* tick_now() of this packet */
	__u32 bid;
	__u16 vslot;                 /* the flow's VIP slot */
	__u8  dsr;                   /* the VIP is in dsr mode */
	__u8  insert;                /* LB_INSERT_* */
	__u8  touched;               /* existing flow refreshed now: check its NAT entry */
	__u8  _pad[7];
};

#endif /* EMON_LB_STRUCTS_BPF_H */
