/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The load balancer's kernel-only constants (the ones user space shares are in lb.h). */
#ifndef EMON_LB_CONSTS_BPF_H
#define EMON_LB_CONSTS_BPF_H

#include "vmlinux.h"

#define TOOBIG4_QUOTE (sizeof(struct iphdr) + 8)
#define TOOBIG6_QUOTE (sizeof(struct ipv6hdr) + 8)

#endif /* EMON_LB_CONSTS_BPF_H */
