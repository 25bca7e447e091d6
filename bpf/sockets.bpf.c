// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Socket ownership: which process owns each TCP/UDP socket, learned in the process's own
 * context so that processes living a few milliseconds are still named (no /proc race).
 *
 *   hook                                 learns                     keyed by
 *   cgroup/sock_create                   creator                    socket cookie
 *   cgroup/connect4|6                    connector                  socket cookie
 *   cgroup/sendmsg4|6 (UDP, unowned)     sender                     socket cookie
 *   cgroup/post_bind4|6                  listener / UDP server      local endpoint
 *   accept: fexit/inet_csk_accept if the kernel allows it, else the accept/accept4
 *           syscall exit tracepoint       acceptor                  flow tuple
 *   start-up scan of sockets that predate the daemon: bpf/scan.bpf.c
 *   inet_sock_set_state: tp_btf (a primary and a backup for when the kernel skips it)
 *           if the kernel allows it, else the classic tracepoint
 *                                        connect/close events, final counts
 *
 * The classifier (flows.bpf.c) copies the owner into each new flow; hooks that learn an
 * owner after the flow exists (accept, the scan) patch the flow directly, so the join
 * happens here in the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "monitor/helpers.bpf.h"
#include "lib/net.bpf.h"
#include "sockets.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* TCP states (include/net/tcp_states.h) */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT    2
#define TCP_SYN_RECV    3
#define TCP_CLOSE       7
#define TCP_LISTEN      10

/* Types that only appear in ring-buffer records: referenced here so that their BTF is
 * in the object for the layout check (test/unit/layout.test.ts). */
struct emon_event_conn *unused_event_conn __attribute__((unused));
struct emon_event_close *unused_event_close __attribute__((unused));

static __always_inline bool inet_family(__u32 family)
{
	return family == AF_INET || family == AF_INET6;
}

static __always_inline void owner_put(__u64 cookie, struct emon_owner *o, __u32 stat)
{
	if (bpf_map_update_elem(&emon_owners, &cookie, o, BPF_ANY))
		stat_inc(EMON_STAT_OWNER_UPDATE_FAILED);
	else
		stat_inc(stat);
}

/* Every socket created on the machine passes here, in its creator's context. */
SEC("cgroup/sock_create")
int handle_sock_create(struct bpf_sock *ctx)
{
	struct emon_owner o = {};

	if (!inet_family(ctx->family) || !netns_tracked(bpf_get_netns_cookie(ctx)))
		return 1;
	owner_from_current(&o, EMON_HOW_SOCKET);
	owner_put(bpf_get_socket_cookie(ctx), &o, EMON_STAT_OWNERS_SOCKET);
	return 1;
}

/* connect() runs in the connecting process: it owns the connection even when another
 * process created the socket and passed it on. */
static __always_inline int on_connect(struct bpf_sock_addr *ctx)
{
	struct emon_owner o = {};

	if (!netns_tracked(bpf_get_netns_cookie(ctx)))
		return 1;
	owner_from_current(&o, EMON_HOW_CONNECT);
	owner_put(bpf_get_socket_cookie(ctx), &o, EMON_STAT_OWNERS_CONNECT);
	return 1;
}

SEC("cgroup/connect4")
int handle_connect4(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx);
}

SEC("cgroup/connect6")
int handle_connect6(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx);
}

/* Unconnected UDP sends: only fills a gap (a socket created before the daemon), so the
 * common case costs one lookup. */
static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx)
{
	__u64 cookie;
	struct emon_owner o = {};

	if (!netns_tracked(bpf_get_netns_cookie(ctx)))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_lookup_elem(&emon_owners, &cookie))
		return 1;
	owner_from_current(&o, EMON_HOW_SEND);
	owner_put(cookie, &o, EMON_STAT_OWNERS_SEND);
	return 1;
}

SEC("cgroup/sendmsg4")
int handle_sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx);
}

SEC("cgroup/sendmsg6")
int handle_sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx);
}

/* bind(): the local endpoint's owner answers for inbound flows until accept() names
 * the exact process (and for UDP servers, for good). */
static __always_inline int on_post_bind(struct bpf_sock *ctx, bool v6)
{
	struct emon_endpoint ep = {};
	struct emon_owner o = {};

	if (!netns_tracked(bpf_get_netns_cookie(ctx)))
		return 1;
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	ep.family = v6 ? AF_INET6 : AF_INET;
	ep.proto = ctx->protocol;
	ep.port = ctx->src_port;
	if (v6) {
		ep.addr[0] = 0; /* verifier: byte-wise init before the word copy below */
		__u32 *a = (__u32 *)ep.addr;

		a[0] = ctx->src_ip6[0];
		a[1] = ctx->src_ip6[1];
		a[2] = ctx->src_ip6[2];
		a[3] = ctx->src_ip6[3];
		if (ipv6_is_v4mapped(ep.addr)) {
			/* bound to ::ffff:a.b.c.d: the packets are IPv4 */
			ep.family = AF_INET;
			a[0] = a[3];
			a[1] = a[2] = a[3] = 0;
		}
	} else {
		__u32 ip4 = ctx->src_ip4;

		__builtin_memcpy(ep.addr, &ip4, 4);
	}
	owner_from_current(&o, EMON_HOW_BIND);
	port_mark_owned(ep.port);
	if (bpf_map_update_elem(&emon_binds, &ep, &o, BPF_ANY))
		stat_inc(EMON_STAT_OWNER_UPDATE_FAILED);
	else
		stat_inc(EMON_STAT_OWNERS_BIND);
	return 1;
}

SEC("cgroup/post_bind4")
int handle_post_bind4(struct bpf_sock *ctx)
{
	return on_post_bind(ctx, false);
}

SEC("cgroup/post_bind6")
int handle_post_bind6(struct bpf_sock *ctx)
{
	return on_post_bind(ctx, true);
}

/* The socket is gone: its cookie will never be seen again. Flows keep their copy. */
SEC("cgroup/sock_release")
int handle_sock_release(struct bpf_sock *ctx)
{
	__u64 cookie;

	if (!inet_family(ctx->family))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	bpf_map_delete_elem(&emon_owners, &cookie);
	return 1;
}

static __always_inline void emit_conn(__u16 type, const struct emon_flow_key *k, const struct emon_owner *o, __u64 cookie)
{
	struct emon_event_conn *e = event_reserve(sizeof(*e), type);

	if (!e)
		return;
	__builtin_memcpy(&e->key, k, sizeof(*k));
	__builtin_memcpy(&e->owner, o, sizeof(*o));
	e->cookie = cookie;
	bpf_ringbuf_submit(e, 0);
}

/* The acceptor owns the new connection: record it by tuple, fix up the flow that the
 * handshake created, and tell user space. */
static __always_inline void on_accepted(struct sock *sk)
{
	struct emon_flow_key k;
	struct emon_owner o = {};

	if (!sk || sk_protocol_of(sk) != IPPROTO_TCP || !netns_tracked(sk_netns_cookie(sk)))
		return;
	if (!flow_key_from_sk(sk, IPPROTO_TCP, &k))
		return;
	owner_from_current(&o, EMON_HOW_ACCEPT);
	port_mark_owned(k.lport);
	if (bpf_map_update_elem(&emon_tuples, &k, &o, BPF_ANY))
		stat_inc(EMON_STAT_OWNER_UPDATE_FAILED);
	else
		stat_inc(EMON_STAT_OWNERS_ACCEPT);
	flow_patch_owner(&k, &o, true);
	emit_conn(EMON_EV_ACCEPT, &k, &o, BPF_CORE_READ(sk, __sk_common.skc_cookie.counter));
}

/* Preferred accept hook (kernels with fentry/fexit, 6.10+ signature): sees io_uring
 * accepts too, and needs no walk of the fd table. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_inet_csk_accept, struct sock *sk, struct proto_accept_arg *arg, struct sock *newsk)
{
	on_accepted(newsk);
	return 0;
}

/* Same hook for kernels before 6.10: inet_csk_accept(sk, flags, err, kern). */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_inet_csk_accept_old, struct sock *sk, int flags, int *err, bool kern, struct sock *newsk)
{
	on_accepted(newsk);
	return 0;
}

/* Fallback accept hook: the syscall's exit, in the acceptor's context. The returned fd
 * leads through the task's fd table to the new socket. */
struct syscall_exit_ctx {
	struct trace_entry ent;
	int nr;
	long ret;
};

static __always_inline void on_accept_exit(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds;
	struct file *file;
	struct socket *sock;
	unsigned int max;

	if (fd < 0)
		return;
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned long)fd >= max)
		return;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return;
	on_accepted(BPF_CORE_READ(sock, sk));
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_sys_exit_accept4(struct syscall_exit_ctx *ctx)
{
	on_accept_exit(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_sys_exit_accept(struct syscall_exit_ctx *ctx)
{
	on_accept_exit(ctx->ret);
	return 0;
}

#define RCV_SHUTDOWN  1
#define SEND_SHUTDOWN 2

static __always_inline void emit_close(struct sock *sk, const struct emon_flow_key *k, int oldstate)
{
	struct emon_event_close *e;
	struct emon_flow *f;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	/* Same clock base as the classifier's coarse stamps (CLOCK_MONOTONIC); the coarse clock
	 * itself is not available to tracepoint programs. Never earlier than a coarse stamp of
	 * the past, so durations are not negative. */
	__u64 cookie, acked, received, now = bpf_ktime_get_ns();
	__u8 shutdown;

	/* Mark the flow closed first: even when the event cannot be queued (ring full), the
	 * next connection on this tuple must start a new flow, not inherit this owner. */
	f = bpf_map_lookup_elem(&emon_flows, k);
	if (f) {
		f->closed_ns = now;
		f->sock_state = TCP_CLOSE;
	}
	stat_inc(EMON_STAT_CLOSE_EVENTS);
	e = event_reserve(sizeof(*e), EMON_EV_CLOSE);
	if (!e)
		goto dirty;
	__builtin_memcpy(&e->key, k, sizeof(*k));
	__builtin_memset(&e->owner, 0, sizeof(e->owner));
	e->old_state = oldstate;
	/* bytes_acked and bytes_received count sequence space: the SYN we sent, and each
	 * side's FIN once it went through. Take them out to report payload bytes. */
	acked = BPF_CORE_READ(tp, bytes_acked);
	received = BPF_CORE_READ(tp, bytes_received);
	shutdown = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown);
	if (acked)
		acked--; /* our SYN */
	if (acked && (shutdown & SEND_SHUTDOWN) && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		acked--; /* our FIN, acknowledged */
	if (received && (shutdown & RCV_SHUTDOWN))
		received--; /* the peer's FIN */
	e->payload_sent = acked;
	e->payload_received = received;
	e->tx_bytes = e->rx_bytes = e->tx_packets = e->rx_packets = e->duration_ns = 0;
	e->ifindex = 0;
	e->flow_seen = 0;
	e->direction = 0;
	e->_pad[0] = 0;
	if (f) {
		close_from_flow(e, f);
		e->duration_ns = now - f->first_ns;
		/* The counts this event carries: the daemon leaves the flow out of history's
		 * listings while it still has them (struct emon_flow, close_sum). */
		f->close_sum = e->tx_bytes + e->rx_bytes + e->tx_packets + e->rx_packets;
	}
	if (!e->owner.how) {
		struct emon_owner *o = bpf_map_lookup_elem(&emon_tuples, k);

		if (!o) {
			cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
			o = bpf_map_lookup_elem(&emon_owners, &cookie);
		}
		if (o)
			__builtin_memcpy(&e->owner, o, sizeof(e->owner));
	}
	bpf_ringbuf_submit(e, 0);
dirty:
	/* Pushed once the flow's close_sum is written (or, without an event, cannot be): the
	 * refresh that reads the flow for this push sees both. */
	if (f)
		dirty_mark(k, f->last_ns, 0);
}

/* The flow key from the tracepoint's own arguments. They are taken before the state
 * change takes effect, while the socket's local port (skc_num) is already zero when a
 * socket goes to CLOSE (inet_put_port runs first), so the socket cannot be used then. */
static __always_inline void flow_key_from_tp(const struct trace_event_raw_inet_sock_set_state *ctx, struct emon_flow_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->proto = IPPROTO_TCP;
	k->lport = ctx->sport;
	k->rport = ctx->dport;
	/* Copies through probe_read: the verifier allows only fixed-offset loads from ctx. */
	if (ctx->family == AF_INET) {
		k->family = AF_INET;
		bpf_probe_read_kernel(k->laddr, 4, ctx->saddr);
		bpf_probe_read_kernel(k->raddr, 4, ctx->daddr);
		return;
	}
	bpf_probe_read_kernel(k->laddr, 16, ctx->saddr_v6);
	bpf_probe_read_kernel(k->raddr, 16, ctx->daddr_v6);
	if (ipv6_is_v4mapped(k->raddr)) {
		k->family = AF_INET;
		__builtin_memcpy(k->laddr, k->laddr + 12, 4);
		__builtin_memcpy(k->raddr, k->raddr + 12, 4);
		__builtin_memset(k->laddr + 4, 0, 12);
		__builtin_memset(k->raddr + 4, 0, 12);
		return;
	}
	k->family = AF_INET6;
}

/* TCP state changes: the connect event (SYN_SENT -> ESTABLISHED, when the local port is
 * known), the close event with the flow's final counts, and the flow's socket state. */
static __always_inline void on_set_state(struct sock *sk, const struct emon_flow_key *k, int oldstate, int newstate)
{
	struct emon_flow *f;

	if (newstate == TCP_CLOSE) {
		emit_close(sk, k, oldstate);
		return;
	}
	f = bpf_map_lookup_elem(&emon_flows, k);
	if (f)
		f->sock_state = newstate;
	if (oldstate == TCP_SYN_SENT && newstate == TCP_ESTABLISHED) {
		__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		struct emon_owner *o = bpf_map_lookup_elem(&emon_owners, &cookie);
		struct emon_owner none = {};

		if (o)
			flow_patch_owner(k, o, false);
		emit_conn(EMON_EV_CONNECT, k, o ? o : &none, cookie);
	}
}

/* LISTEN sockets are not flows; CLOSE -> SYN_SENT runs before the local port exists
 * (connect4/6 covered it). */
static __always_inline bool set_state_wanted(int oldstate, int newstate)
{
	return oldstate != TCP_LISTEN && newstate != TCP_LISTEN && oldstate != TCP_CLOSE;
}

/* The BTF tracepoint: preferred. A classic tracepoint program does not run when any other
 * kprobe or tracepoint program is running on the CPU (the kernel's per-CPU bpf_prog_active
 * guard), and TCP state changes happen in softirqs that interrupt such programs: the
 * classic attachment missed about one close in 50,000 under bench/attribution's load
 * (counted in the program's recursion_misses).
 *
 * A tp_btf program is only kept from running inside itself, but that still happens: a
 * state change in process context (connect, close) is interrupted, and the softirq on the
 * way out of the interrupt changes another socket's state (bench/attribution: about 80-350
 * skipped runs per 100,000 connections, some of them closes). So two programs are attached
 * to the tracepoint, the backup after the primary (the kernel calls a tracepoint's probes
 * in the order they were attached). The primary notes, first thing, the change it is
 * handling (old and new state) under the socket's address; the backup, which runs next
 * for the same change, takes the note away if it finds it and otherwise handles the
 * change: the kernel skipped the primary, which is running lower on this CPU's stack for
 * another socket. A socket changes state under its lock, so the note of one socket is
 * never written by a nested run: wherever the interrupt lands, in either program or in
 * the kernel's code around them, each change is handled once. (A per-CPU note would not
 * do: a softirq nested between the kernel entering the backup and the backup reading the
 * note overwrites it, and the backup then handles its change a second time; measured:
 * 2-4 duplicates per 100,000 connections.)
 *
 * A note names the socket's cookie too. A note the backup never took away (it was itself
 * skipped, the primary having handled the change) stays behind, and a socket freed since
 * leaves its address to a new one: a note of the transition alone made the backup skip the
 * same transition of the new socket when the kernel skipped the primary for it (a change
 * handled by nobody, counted nowhere). Cookies are never reused (set at connect, at socket
 * creation or by the classifier's first packet); 16 bits of one, hashed, go into the note,
 * so a stale note matches a new socket once in 65,536 (a socket still without a cookie: as
 * before). The key stays the address: the verifier allows no arithmetic on a trusted
 * pointer, and a wider value would change the pinned map's layout.
 *
 * Notes live only between the two programs. An LRU hash, not socket storage: socket
 * storage would stay allocated with every TCP socket (struct bpf_local_storage plus an
 * element: over 300 bytes each on 6.18, 300 MB with a million connections) where this map
 * is a fixed 4096 entries; a note the backup never took away (it was itself skipped, the
 * primary having handled the change) is evicted in time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);   /* struct sock * */
	__type(value, __u32); /* state_note() */
} emon_state_seen SEC(".maps");

static __always_inline __u32 state_note(struct sock *sk, int oldstate, int newstate)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	return ((__u32)((cookie * 0x9E3779B97F4A7C15ULL) >> 48) << 16) | (((__u32)oldstate << 8 | (__u32)newstate) + 1);
}

static __always_inline void btf_set_state(struct sock *sk, int oldstate, int newstate)
{
	struct emon_flow_key k;

	if (!set_state_wanted(oldstate, newstate) || sk_protocol_of(sk) != IPPROTO_TCP)
		return;
	if (!netns_tracked(sk_netns_cookie(sk)) || !flow_key_from_sk(sk, IPPROTO_TCP, &k))
		return;
	/* skc_num is already zero when a socket goes to CLOSE (inet_put_port runs first);
	 * inet_sport, which the classic tracepoint reports, is not. */
	k.lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	on_set_state(sk, &k, oldstate, newstate);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(btf_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	__u32 note = state_note(sk, oldstate, newstate);

	bpf_map_update_elem(&emon_state_seen, &key, &note, BPF_ANY);
	btf_set_state(sk, oldstate, newstate);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(btf_inet_sock_set_state_backup, struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	__u32 *note = bpf_map_lookup_elem(&emon_state_seen, &key);

	if (note && *note == state_note(sk, oldstate, newstate)) {
		bpf_map_delete_elem(&emon_state_seen, &key);
		return 0;
	}
	stat_inc(EMON_STAT_STATE_CHANGES_RESCUED);
	btf_set_state(sk, oldstate, newstate);
	return 0;
}

/* The classic tracepoint, where tp_btf cannot attach. */
SEC("tracepoint/sock/inet_sock_set_state")
int handle_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	struct emon_flow_key k;

	if (ctx->protocol != IPPROTO_TCP || !set_state_wanted(ctx->oldstate, ctx->newstate))
		return 0;
	if ((ctx->family != AF_INET && ctx->family != AF_INET6) || !netns_tracked(sk_netns_cookie(sk)))
		return 0;
	flow_key_from_tp(ctx, &k);
	on_set_state(sk, &k, ctx->oldstate, ctx->newstate);
	return 0;
}
