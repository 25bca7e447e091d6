// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Start-up scan: the owners of TCP and UDP sockets that were opened before the daemon (the
 * socket hooks in sockets.bpf.c only see what happens after they attach). Runs once at
 * every daemon start and writes what sockets.bpf.c would have written: owner by cookie,
 * by tuple (connected sockets) and by local endpoint (listening and bound sockets), with
 * `how` = EMON_HOW_PROC, never overwriting what a hook learned (BPF_NOEXIST). First holder
 * wins: the walk goes by ascending pid, so a socket shared after fork() belongs to the
 * parent that created it.
 *
 * Verifiers differ in what they trust, and the same kernel version has refused a program
 * one build accepted (6.18.44: `sock->sk` behind bpf_sock_from_file() became untrusted,
 * so bpf_get_socket_cookie() on it was refused). So the scan has alternatives, tried in
 * this order by the daemon (daemon/src/monitor/components.ts), with a user-space walk of
 * /proc as the last one, which no verifier can refuse:
 *
 *   1. iter_task_sockets       iter/task_file, cookie from the trusted sock->sk
 *   2. iter_task_sockets_core  iter/task_file, socket read with CO-RE only; the cookie
 *                              from the socket's own field (0, and skipped, when nobody
 *                              has asked for it yet: the tuple and endpoint still work)
 *   3. iter_task_inodes, then  iter/task_file fills emon_scan_inos (socket inode -> owner);
 *      iter_tcp_sockets and    the protocol iterators hand over trusted socket pointers
 *      iter_udp_sockets        and join by inode (the way `ss -p` joins /proc)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "monitor/helpers.bpf.h"
#include "lib/net.bpf.h"
#include "sockets.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_LISTEN 10
#define S_IFMT   00170000
#define S_IFSOCK 0140000

/* socket inode number -> owner: the first half of alternative 3's join, filled by
 * iter_task_inodes and emptied by the daemon after the protocol iterators ran. Allocated
 * as used (no preallocation): empty between scans. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct emon_owner);
} emon_scan_inos SEC(".maps");

static __always_inline bool inet_family(__u32 family)
{
	return family == AF_INET || family == AF_INET6;
}

/* The owner a task would be as the socket hooks record it; false for a task outside the
 * daemon's pid namespace (its users cannot name it). */
static __always_inline bool owner_from_task(struct task_struct *task, struct emon_owner *o)
{
	task_ids(task, &o->tgid, &o->pid);
	if (!o->tgid)
		return false;
	o->uid = BPF_CORE_READ(task, cred, uid.val);
	o->gid = BPF_CORE_READ(task, cred, gid.val);
	o->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	o->learned_ns = bpf_ktime_get_boot_ns();
	BPF_CORE_READ_STR_INTO(&o->comm, task, comm);
	o->how = EMON_HOW_PROC;
	return true;
}

/* Records one socket's owner. `sk` may be any pointer to the socket (only CO-RE reads
 * here); `cookie` 0 when not known. */
static __always_inline void scan_record(struct sock *sk, __u16 proto, __u64 cookie, const struct emon_owner *o)
{
	struct emon_flow_key k;
	__u8 state;

	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || !netns_tracked(sk_netns_cookie(sk)))
		return;
	if (cookie)
		bpf_map_update_elem(&emon_owners, &cookie, o, BPF_NOEXIST);
	if (!flow_key_from_sk(sk, proto, &k))
		return;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (k.rport == 0) {
		/* listening or unconnected bound socket: a local endpoint */
		struct emon_endpoint ep = { .family = k.family, .proto = k.proto, .port = k.lport };

		if (!k.lport)
			return;
		__builtin_memcpy(ep.addr, k.laddr, 16);
		port_mark_owned(ep.port);
		bpf_map_update_elem(&emon_binds, &ep, o, BPF_NOEXIST);
	} else if (proto == IPPROTO_UDP || state != TCP_LISTEN) {
		port_mark_owned(k.lport);
		bpf_map_update_elem(&emon_tuples, &k, o, BPF_NOEXIST);
		flow_patch_owner(&k, o, false);
	}
	stat_inc(EMON_STAT_OWNERS_PROC);
}

/* The socket behind a file, read with CO-RE only (NULL when the file is not a socket). */
static __always_inline struct socket *file_socket(struct file *file)
{
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	return BPF_CORE_READ(file, private_data);
}

/* Alternative 1: every file of every task; sockets through bpf_sock_from_file(). */
SEC("iter/task_file")
int iter_task_sockets(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct emon_owner o = {};
	struct socket *sock;
	struct sock *sk;

	if (!file || !task)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	/* A direct (BTF) read keeps sk a typed pointer, which bpf_get_socket_cookie needs:
	 * the verifier of some kernels does not trust it (then alternative 2 is used). */
	sk = sock->sk;
	if (!sk || !inet_family(BPF_CORE_READ(sk, __sk_common.skc_family)))
		return 0;
	if (!owner_from_task(task, &o))
		return 0;
	scan_record(sk, sk_protocol_of(sk), bpf_get_socket_cookie(sk), &o);
	return 0;
}

/* Alternative 2: the same walk with no trusted pointer beyond the iterator's own. */
SEC("iter/task_file")
int iter_task_sockets_core(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct emon_owner o = {};
	struct socket *sock;
	struct sock *sk;

	if (!file || !task)
		return 0;
	sock = file_socket(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || !inet_family(BPF_CORE_READ(sk, __sk_common.skc_family)))
		return 0;
	if (!owner_from_task(task, &o))
		return 0;
	/* The cookie is made on first use (sock_gen_cookie): 0 means nothing asked yet, and
	 * whatever asks later gets a new one, so a 0 is not recorded. */
	scan_record(sk, sk_protocol_of(sk), BPF_CORE_READ(sk, __sk_common.skc_cookie.counter), &o);
	return 0;
}

/* Alternative 3, first pass: socket inode -> its first holder. */
SEC("iter/task_file")
int iter_task_inodes(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct emon_owner o = {};
	__u64 ino;

	if (!file || !task)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	ino = BPF_CORE_READ(file, f_inode, i_ino);
	if (bpf_map_lookup_elem(&emon_scan_inos, &ino))
		return 0;
	if (!owner_from_task(task, &o))
		return 0;
	if (bpf_map_update_elem(&emon_scan_inos, &ino, &o, BPF_NOEXIST))
		stat_inc(EMON_STAT_SCAN_OVERFLOW);
	return 0;
}

static __always_inline void scan_joined(struct sock *sk, __u16 proto)
{
	struct emon_owner *o;
	__u64 ino;

	ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	if (!ino)
		return;
	o = bpf_map_lookup_elem(&emon_scan_inos, &ino);
	if (o)
		scan_record(sk, proto, bpf_get_socket_cookie(sk), o);
}

/* Alternative 3, second pass: every TCP socket of the namespace the iterator was created
 * in. TIME_WAIT and request sockets are not full sockets and no process holds them. */
SEC("iter/tcp")
int iter_tcp_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (tp)
		scan_joined((struct sock *)tp, IPPROTO_TCP);
	return 0;
}

/* Alternative 3, second pass: every UDP socket of the iterator's namespace. */
SEC("iter/udp")
int iter_udp_sockets(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;

	if (udp)
		scan_joined((struct sock *)udp, IPPROTO_UDP);
	return 0;
}
