/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Kernel-version differences, in one place. Each helper reads through CO-RE and picks
 * the field layout of the running kernel. */
#ifndef EMON_COMPAT_BPF_H
#define EMON_COMPAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/* Before 5.14 (approximately), struct net kept its cookie in an atomic64_t. */
struct net___old {
	atomic64_t net_cookie;
} __attribute__((preserve_access_index));

static __always_inline __u64 net_cookie_of(struct net *net)
{
	if (!net)
		return 0;
	if (bpf_core_field_exists(((struct net___old *)0)->net_cookie) &&
	    !bpf_core_field_exists(net->net_cookie))
		return BPF_CORE_READ((struct net___old *)net, net_cookie.counter);
	return BPF_CORE_READ(net, net_cookie);
}

static __always_inline __u64 sk_netns_cookie(struct sock *sk)
{
	return net_cookie_of(BPF_CORE_READ(sk, __sk_common.skc_net.net));
}

/* sk_protocol was an 8-bit bitfield before 5.6. */
struct sock___old {
	unsigned int __sk_flags_offset[0];
	unsigned int sk_padding : 1, sk_kern_sock : 1, sk_no_check_tx : 1, sk_no_check_rx : 1,
		     sk_userlocks : 4, sk_protocol : 8, sk_type : 16;
} __attribute__((preserve_access_index));

static __always_inline __u16 sk_protocol_of(struct sock *sk)
{
	if (bpf_core_field_exists(sk->sk_protocol) && bpf_core_field_size(sk->sk_protocol) == 2)
		return BPF_CORE_READ(sk, sk_protocol);
	return (__u16)BPF_CORE_READ_BITFIELD_PROBED((struct sock___old *)sk, sk_protocol);
}

/* task->start_boottime was real_start_time before 5.5. */
struct task_struct___old {
	u64 real_start_time;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_start_boottime(struct task_struct *t)
{
	if (bpf_core_field_exists(t->start_boottime))
		return BPF_CORE_READ(t, start_boottime);
	return BPF_CORE_READ((struct task_struct___old *)t, real_start_time);
}

#endif /* EMON_COMPAT_BPF_H */
