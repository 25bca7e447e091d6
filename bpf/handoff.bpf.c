// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Sockets that change hands: the owner of a socket's traffic is the process that uses it.
 *
 * sockets.bpf.c names a socket's creator, connector, acceptor or binder. That is wrong when
 * the socket is then used by another process only: systemd creates and binds the sockets
 * of socket-activated services (their traffic went to its (sd-listen)/(sd-accept) helpers:
 * test/e2e/activation.test.ts), a connection is passed over SCM_RIGHTS, or inherited across
 * fork by a worker that alone talks on it.
 *
 *   hook (first that loads wins)          in whose context        fires
 *   tp_btf/sock_send_length, _recv_length the sending/receiving   every send/recv/write/read/
 *     (not in Linux 6.1)                  process                 sendfile/io_uring on a socket
 *   fexit/inet[6]_sendmsg, _recvmsg       same                    same, inet sockets (fexit kernels)
 *   tracepoint sock:sock_send_length ...  same                    same
 *
 * The rule, per socket:
 *  - a use by the socket's current owner (emon_owners by cookie) costs one lookup;
 *  - the first use by another process hands the socket over to it (how = user): its owner
 *    record, its flow (a connected socket) or the flows of its local endpoint that still
 *    name the previous owner (a bound datagram socket), and the endpoint's bind record;
 *  - if a process that used the socket before uses it again (the creator/connector, or the
 *    previous user), the socket is used by several: the recorded owner gets it back for good
 *    (the rule before this file: the connector wins).
 * The flow's counters at the moment of each change are kept (emon_handoffs), so the bytes
 * before the change can still be credited to the previous owner. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "monitor/helpers.bpf.h"
#include "handoff.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Referenced so that their BTF is in the object for the layout check (test/unit/layout). */
struct emon_handoff *unused_handoff __attribute__((unused));
enum emon_ho_stat *unused_emon_ho_stat __attribute__((unused));
enum emon_how *unused_emon_how __attribute__((unused));

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#define TCP_LISTEN 10

/* socket cookie -> user record, for sockets whose user ever differed from their owner.
 * Records outlive their socket (user space reads them for closed flows); cookies are never
 * reused, and the LRU drops the oldest. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct emon_handoff);
} emon_handoffs SEC(".maps");

/* enum emon_ho_stat -> per-CPU counter (each CPU owns its slot: no atomics) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_HO_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_hostats SEC(".maps");

static __always_inline void ho_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_hostats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1); /* see stat_inc in monitor/helpers.bpf.h */
}

static __always_inline void ho_put(void *map, const void *key, const void *val)
{
	if (bpf_map_update_elem(map, key, val, BPF_ANY))
		ho_stat(EMON_HO_STAT_UPDATE_FAILED);
}

/* Kernel threads send on sockets of their own (NFS, iSCSI...): never a user. */
static __always_inline bool current_is_kthread(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(t, flags) & PF_KTHREAD;
}

/* One flow (TCP, connected UDP), or a bound endpoint whose flows are per peer. */
static __always_inline bool sk_connected(struct sock *sk, __u16 proto)
{
	if (proto == IPPROTO_TCP)
		return BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN;
	return BPF_CORE_READ(sk, __sk_common.skc_dport) != 0;
}

/* The socket's local endpoint, keyed as cgroup/post_bind keys emon_binds. */
static __always_inline void endpoint_from_sk(struct sock *sk, __u16 proto, struct emon_endpoint *ep)
{
	__builtin_memset(ep, 0, sizeof(*ep));
	ep->proto = proto;
	ep->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		ep->family = AF_INET;
		BPF_CORE_READ_INTO((__u32 *)ep->addr, sk, __sk_common.skc_rcv_saddr);
		return;
	}
	ep->family = AF_INET6;
	BPF_CORE_READ_INTO(ep->addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	if (ipv6_is_v4mapped(ep->addr)) {
		ep->family = AF_INET;
		__builtin_memcpy(ep->addr, ep->addr + 12, 4);
		__builtin_memset(ep->addr + 4, 0, 12);
	}
}

struct patch_ctx {
	struct emon_endpoint ep;
	struct emon_owner to;
	__u32 from_tgid;
	__u32 n;
	__u8 wildcard;
};

/* bpf_for_each_map_elem callback over emon_flows: moves the flows of one local endpoint
 * that still name the previous owner. Patches the owner in place, like flow_patch_owner:
 * the classifier's counters are never rewritten. */
static long patch_endpoint_flow(struct bpf_map *map, struct emon_flow_key *k, struct emon_flow *f, struct patch_ctx *c)
{
	const __u64 *a = (const __u64 *)k->laddr, *b = (const __u64 *)c->ep.addr;

	if (k->proto != c->ep.proto || k->lport != c->ep.port)
		return 0;
	if (f->owner.tgid != c->from_tgid || f->owner.how == EMON_HOW_NONE || f->owner.how == EMON_HOW_KERNEL)
		return 0;
	if (c->wildcard) {
		/* an IPv6 wildcard socket is dual-stack: its IPv4 flows are keyed AF_INET */
		if (c->ep.family == AF_INET && k->family != AF_INET)
			return 0;
	} else if (k->family != c->ep.family || a[0] != b[0] || a[1] != b[1]) {
		return 0;
	}
	__builtin_memcpy(&f->owner, &c->to, sizeof(f->owner));
	dirty_mark(k, f->last_ns, 0);
	c->n++;
	return 0;
}

/* Gives the socket's traffic to `to` (the new user, or the recorded owner when the socket
 * turns out to be shared). `st` receives the counters at the change. */
static __always_inline void hand_over(struct sock *sk, __u64 cookie, __u16 proto, struct emon_handoff *st,
				      struct emon_owner *to, __u32 from_tgid)
{
	struct emon_flow_key k;
	struct emon_owner *b;
	struct emon_flow *f;
	struct patch_ctx pc;

	ho_put(&emon_owners, &cookie, to);
	st->flows_patched = 0;
	if (sk_connected(sk, proto)) {
		st->connected = 1;
		if (!flow_key_from_sk(sk, proto, &k))
			return;
		f = bpf_map_lookup_elem(&emon_flows, &k);
		if (!f)
			return;
		st->tx_bytes_before = f->tx_bytes;
		st->rx_bytes_before = f->rx_bytes;
		st->tx_packets_before = f->tx_packets;
		st->rx_packets_before = f->rx_packets;
		__builtin_memcpy(&f->owner, to, sizeof(f->owner));
		dirty_mark(&k, f->last_ns, 0);
		st->flows_patched = 1;
		ho_stat(EMON_HO_STAT_FLOWS_PATCHED);
		return;
	}
	/* A bound datagram socket: new peers' flows find the owner through emon_binds
	 * (inbound) or the cookie (outbound); those created before now are patched here. */
	st->connected = 0;
	__builtin_memset(&pc, 0, sizeof(pc));
	endpoint_from_sk(sk, proto, &pc.ep);
	b = bpf_map_lookup_elem(&emon_binds, &pc.ep);
	if (b && b->tgid == from_tgid)
		ho_put(&emon_binds, &pc.ep, to);
	__builtin_memcpy(&pc.to, to, sizeof(pc.to));
	pc.from_tgid = from_tgid;
	pc.wildcard = !((__u64 *)pc.ep.addr)[0] && !((__u64 *)pc.ep.addr)[1];
	/* Walks the whole flow table: once per handoff of a bound socket (a socket-activated
	 * datagram service starting), never per packet. */
	bpf_for_each_map_elem(&emon_flows, patch_endpoint_flow, &pc, 0);
	st->flows_patched = pc.n;
	if (pc.n)
		ho_stat(EMON_HO_STAT_FLOWS_PATCHED);
}

/* A use by a process that is not the socket's owner by cookie (or a socket without one). */
static __always_inline void on_other_user(struct sock *sk, __u64 cookie, __u16 proto, struct emon_owner *o)
{
	struct emon_owner me = {}, back;
	struct emon_handoff *st, fresh;
	struct emon_flow_key k;
	struct emon_owner *t = NULL;
	__u32 from;

	if (current_is_kthread() || !netns_tracked(sk_netns_cookie(sk)))
		return;
	ho_stat(EMON_HO_STAT_SLOW_PATH);
	owner_from_current(&me, EMON_HOW_USER);
	if (o && o->tgid == me.tgid)
		return; /* the owner after all (the daemon numbers pids in its own namespace) */

	st = bpf_map_lookup_elem(&emon_handoffs, &cookie);
	if (st) {
		if (st->state == EMON_HO_SHARED || st->user_tgid == me.tgid)
			return;
		if (me.tgid == st->orig.tgid || me.tgid == st->prev_tgid) {
			/* An earlier user is back: the socket is used by several processes, and the
			 * recorded owner keeps it from now on. */
			__builtin_memcpy(&back, &st->orig, sizeof(back));
			from = st->user_tgid;
			st->state = EMON_HO_SHARED;
			st->prev_tgid = from;
			st->user_tgid = back.tgid;
			st->handoff_ns = me.learned_ns;
			hand_over(sk, cookie, proto, st, &back, from);
			ho_stat(EMON_HO_STAT_SHARED);
			return;
		}
		from = st->user_tgid;
		st->prev_tgid = from;
		st->user_tgid = me.tgid;
		st->handoffs++;
		st->handoff_ns = me.learned_ns;
		hand_over(sk, cookie, proto, st, &me, from);
		ho_stat(EMON_HO_STAT_HANDOFFS);
		return;
	}

	if (!o) {
		/* No owner by cookie: an accepted connection (its owner is known by tuple), or a
		 * socket older than the daemon that the start-up scan missed. Record one, so that
		 * the next uses take the fast path. */
		if (proto == IPPROTO_TCP && flow_key_from_sk(sk, IPPROTO_TCP, &k))
			t = bpf_map_lookup_elem(&emon_tuples, &k);
		if (!t || t->tgid == me.tgid) {
			ho_put(&emon_owners, &cookie, t ? t : &me);
			ho_stat(EMON_HO_STAT_OWNERS_FILLED);
			return;
		}
		o = t;
	}
	__builtin_memset(&fresh, 0, sizeof(fresh));
	__builtin_memcpy(&fresh.orig, o, sizeof(fresh.orig));
	fresh.prev_tgid = o->tgid;
	fresh.user_tgid = me.tgid;
	fresh.handoffs = 1;
	fresh.handoff_ns = me.learned_ns;
	fresh.state = EMON_HO_HANDED;
	hand_over(sk, cookie, proto, &fresh, &me, o->tgid);
	ho_put(&emon_handoffs, &cookie, &fresh);
	ho_stat(EMON_HO_STAT_HANDOFFS);
}

/* Every send and receive on every socket of the machine passes here: the common case (the
 * owner using its own socket, or not an inet socket) must stay a few loads and one lookup.
 * Callers filter on family and protocol before asking for the cookie. */
static __always_inline void on_use(struct sock *sk, __u64 cookie, __u16 proto)
{
	struct emon_owner *o = bpf_map_lookup_elem(&emon_owners, &cookie);

	if (o && o->tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		return;
	on_other_user(sk, cookie, proto, o);
}

static __always_inline bool wanted(__u16 family, __u16 proto)
{
	return (family == AF_INET || family == AF_INET6) && (proto == IPPROTO_TCP || proto == IPPROTO_UDP);
}

/* Preferred (Linux 6.3+): the BTF tracepoint hands us a trusted socket pointer, so its
 * fields are plain loads (no probe-read helper calls: measured 126 -> see docs/identity.md)
 * and the cookie helper works (it assigns a cookie to a socket that has none yet). Both
 * fire at the end of sock_sendmsg/sock_recvmsg, in the calling process, whatever the
 * syscall (send*, write, sendfile/splice, io_uring). Errors (EAGAIN) are not uses. */
static __always_inline void on_use_btf(struct sock *sk, int ret)
{
	__u16 proto;

	if (!sk || ret <= 0)
		return;
	proto = sk->sk_protocol;
	if (wanted(sk->__sk_common.skc_family, proto))
		on_use(sk, bpf_get_socket_cookie(sk), proto);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(btf_sock_send_length, struct sock *sk, int ret, int flags)
{
	on_use_btf(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(btf_sock_recv_length, struct sock *sk, int ret, int flags)
{
	on_use_btf(sk, ret);
	return 0;
}

/* Kernels without the sock_send_length/sock_recv_length tracepoints (Debian 12's 6.1 has
 * none) where fexit is allowed: the exits of the inet protocol ops that sock_sendmsg and
 * sock_recvmsg call through sock->ops. Not sock_sendmsg itself: in the 6.1 qemu guest an
 * fexit on it saw none of the tests' sends (its callers in net/socket.c presumably inline
 * it; the inet ops are reached through a pointer from another file). The socket is reached through struct socket, so fields are read with CO-RE
 * and the cookie from the socket (0 until a hook asked for it: that use is skipped). */
static __always_inline void on_use_sock(struct socket *sock, int ret)
{
	struct sock *sk;
	__u16 family, proto;
	__u64 cookie;

	if (!sock || ret <= 0)
		return;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	proto = sk_protocol_of(sk);
	if (!wanted(family, proto))
		return;
	cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (cookie)
		on_use(sk, cookie, proto);
}

SEC("fexit/inet_sendmsg")
int BPF_PROG(fexit_inet_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	on_use_sock(sock, ret);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(fexit_inet6_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	on_use_sock(sock, ret);
	return 0;
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(fexit_inet_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	on_use_sock(sock, ret);
	return 0;
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(fexit_inet6_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	on_use_sock(sock, ret);
	return 0;
}

/* The classic tracepoints, where tp_btf cannot attach. The socket pointer is untyped here:
 * the cookie is read from the socket (0 if nobody ever asked for it: then no hook knows the
 * socket by cookie either). */
struct sock_length_ctx {
	struct trace_entry ent;
	void *sk;
	__u16 family;
	__u16 protocol;
	int ret;
	int flags;
};

static __always_inline void on_use_tp(struct sock_length_ctx *ctx)
{
	struct sock *sk = ctx->sk;
	__u64 cookie;

	if (!sk || ctx->ret <= 0 || !wanted(ctx->family, ctx->protocol))
		return;
	cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (cookie)
		on_use(sk, cookie, ctx->protocol);
}

SEC("tracepoint/sock/sock_send_length")
int tp_sock_send_length(struct sock_length_ctx *ctx)
{
	on_use_tp(ctx);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int tp_sock_recv_length(struct sock_length_ctx *ctx)
{
	on_use_tp(ctx);
	return 0;
}
