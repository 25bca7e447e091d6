// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* OpenSSL plaintext: uprobes on SSL_write/SSL_read and their _ex variants in libssl (the
 * "catch it before it is encrypted and after it is decrypted" hooks), attached by user
 * space per library file for every process that maps it (daemon/src/l7/ssl/). Each call's
 * plaintext (at most EMON_SSL_CAP bytes of it) goes to user space with the process, the
 * SSL * (one connection) and, when known, the connection's socket as a flow key.
 *
 * Which socket: OpenSSL does not say (curl gives it a BIO of its own, not an fd), but the
 * thread inside SSL_write/SSL_read sends or receives on the connection's socket. While a
 * call is in progress (noted per thread at entry), the sock:sock_send_length and
 * sock:sock_recv_length tracepoints, which fire in the calling thread with the socket,
 * record it; the SSL * keeps it for later calls that move no bytes on the socket (a read
 * served from OpenSSL's buffer). The tracepoints fire for every socket send and receive on
 * the machine, so they first test a counter of calls in progress (an array load) and
 * return at once when it is zero. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "monitor/helpers.bpf.h"
#include "l7.h"

/* libbpf 1.1 has no BPF_UPROBE/BPF_URETPROBE: the kprobe macros read the same pt_regs. */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct emon_ssl_rec *unused_ssl_rec __attribute__((unused));

/* A call in progress, from entry to return. */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 outlen;    /* _ex: where the byte count is written */
	__u8  dir;
	__u8  ex;
	__u8  have_key;
	__u8  _pad[5];
	struct emon_flow_key key;
};

/* A connection: its socket and the plaintext offsets so far, per direction. */
struct ssl_conn {
	struct emon_flow_key key;
	__u32 seq[2];
	__u8  have_key;
	__u8  _pad[7];
};

/* pid_tgid -> the SSL call the thread is in */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct ssl_call);
} emon_ssl_calls SEC(".maps");

/* (tgid << 64 | SSL *) as two u64 -> connection */
struct ssl_conn_key {
	__u64 tgid;
	__u64 ssl;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ssl_conn_key);
	__type(value, struct ssl_conn);
} emon_ssl_conns SEC(".maps");

/* 0 -> calls in progress on the machine (gates the socket tracepoints) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} emon_ssl_busy SEC(".maps");

/* plaintext records */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} emon_ssl_events SEC(".maps");

/* enum emon_l7_stat -> per-CPU counter (the SSL rows) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_L7_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_ssl_stats SEC(".maps");

static __always_inline void ssl_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_ssl_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1); /* see stat_inc in monitor/helpers.bpf.h */
}

static __always_inline void busy_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *b = bpf_map_lookup_elem(&emon_ssl_busy, &zero);

	if (b)
		__sync_fetch_and_add(b, n);
}

static __always_inline int on_entry(void *ssl, const void *buf, void *outlen, __u8 dir, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call c = { .ssl = (__u64)ssl, .buf = (__u64)buf, .outlen = (__u64)outlen, .dir = dir, .ex = ex };

	if (!bpf_map_update_elem(&emon_ssl_calls, &id, &c, BPF_ANY))
		busy_add(1);
	return 0;
}

/* Writes one record of `CAP` reserved bytes (constant: the ring needs it). */
#define DEFINE_SSL_EMIT(NAME, CAP)                                                                 \
static __always_inline void NAME(const struct ssl_call *c, struct ssl_conn *conn, __u32 n, __u8 f) \
{                                                                                                  \
	struct emon_ssl_rec *e = bpf_ringbuf_reserve(&emon_ssl_events, sizeof(*e) + (CAP), 0);    \
	__u32 cap = n > (CAP) ? (CAP) : n;                                                         \
	__u64 id = bpf_get_current_pid_tgid();                                                     \
                                                                                                   \
	if (!e) {                                                                                  \
		l7_ssl_lost();                                                                     \
		return;                                                                            \
	}                                                                                          \
	/* ((cap - 1) & (CAP - 1)) + 1 is cap for cap in 1..CAP: calms the verifier. */            \
	if (cap && bpf_probe_read_user(e->data, ((cap - 1) & ((CAP) - 1)) + 1, (void *)c->buf)) { \
		ssl_stat(EMON_L7_STAT_SSL_READ_FAILED);                                              \
		cap = 0;                                                                           \
	}                                                                                          \
	e->hdr.type = EMON_EV_SSL;                                                                 \
	e->hdr.size = sizeof(*e) + (CAP);                                                          \
	e->hdr.cpu = bpf_get_smp_processor_id();                                                   \
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();                                                    \
	__builtin_memcpy(&e->key, &conn->key, sizeof(e->key));                                     \
	e->ssl = c->ssl;                                                                           \
	e->tgid = id >> 32;                                                                        \
	e->tid = (__u32)id;                                                                        \
	e->uid = (__u32)bpf_get_current_uid_gid();                                                 \
	e->seq = conn->seq[c->dir & 1];                                                            \
	e->len = n;                                                                                \
	e->cap_len = cap;                                                                          \
	e->dir = c->dir;                                                                           \
	e->flags = (conn->have_key ? EMON_SSL_F_KEY : 0) | (c->ex ? EMON_SSL_F_EX : 0) | f;       \
	bpf_get_current_comm(e->comm, sizeof(e->comm));                                            \
	bpf_ringbuf_submit(e, 0);                                                                  \
}

static __always_inline void l7_ssl_lost(void)
{
	ssl_stat(EMON_L7_STAT_RINGBUF_FULL);
}

/* Three sizes: the ring holds what is reserved, so a 1 KiB response in a 4 KiB record
 * would take four times the room it needs. */
DEFINE_SSL_EMIT(ssl_emit_small, EMON_L7_SMALL)
DEFINE_SSL_EMIT(ssl_emit_medium, EMON_L7_LARGE)
DEFINE_SSL_EMIT(ssl_emit_large, EMON_SSL_CAP)

static __always_inline int on_return(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&emon_ssl_calls, &id);
	struct ssl_conn_key ck;
	struct ssl_conn *conn, fresh = {};
	__u64 n = 0;

	if (!c) {
		ssl_stat(EMON_L7_STAT_SSL_ENTRY_MISSED);
		return 0;
	}
	busy_add(-1);
	if (c->ex) {
		/* SSL_*_ex return 1 and write the byte count through their last argument. */
		if (ret == 1 && c->outlen)
			bpf_probe_read_user(&n, sizeof(n), (void *)c->outlen);
	} else if (ret > 0) {
		n = ret;
	}
	ck.tgid = id >> 32;
	ck.ssl = c->ssl;
	conn = bpf_map_lookup_elem(&emon_ssl_conns, &ck);
	if (!conn) {
		bpf_map_update_elem(&emon_ssl_conns, &ck, &fresh, BPF_NOEXIST);
		conn = bpf_map_lookup_elem(&emon_ssl_conns, &ck);
		if (!conn)
			goto out;
	}
	if (c->have_key && !conn->have_key) {
		__builtin_memcpy(&conn->key, &c->key, sizeof(conn->key));
		conn->have_key = 1;
	}
	if (!c->ex && c->dir == 1 && ret == 0) {
		/* SSL_read's 0 is the end of the connection (close_notify or EOF; "try again"
		 * is -1): an empty record tells user space to close it. SSL_read_ex returns 0
		 * for both, so it cannot say. */
		ssl_emit_small(c, conn, 0, EMON_SSL_F_EOF);
	} else if (n > 0 && n < (1ULL << 31)) {
		ssl_stat(EMON_L7_STAT_SSL_CALLS);
		if (!conn->have_key)
			ssl_stat(EMON_L7_STAT_SSL_NO_SOCKET);
		if (n <= EMON_L7_SMALL)
			ssl_emit_small(c, conn, n, 0);
		else if (n <= EMON_L7_LARGE)
			ssl_emit_medium(c, conn, n, 0);
		else
			ssl_emit_large(c, conn, n, 0);
		conn->seq[c->dir & 1] += n;
	}
out:
	bpf_map_delete_elem(&emon_ssl_calls, &id);
	return 0;
}

/* int SSL_write(SSL *ssl, const void *buf, int num): the plaintext is at buf on entry;
 * how much of it went is known on return. */
SEC("uprobe")
int BPF_KPROBE(uprobe_ssl_write, void *ssl, const void *buf, int num)
{
	return on_entry(ssl, buf, NULL, 0, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_ssl_write, int ret)
{
	return on_return(ret);
}

/* int SSL_read(SSL *ssl, void *buf, int num): the plaintext is at buf on return. */
SEC("uprobe")
int BPF_KPROBE(uprobe_ssl_read, void *ssl, void *buf, int num)
{
	return on_entry(ssl, buf, NULL, 1, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_ssl_read, int ret)
{
	return on_return(ret);
}

/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_KPROBE(uprobe_ssl_write_ex, void *ssl, const void *buf, size_t num, size_t *written)
{
	return on_entry(ssl, buf, written, 0, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_ssl_write_ex, int ret)
{
	return on_return(ret);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_KPROBE(uprobe_ssl_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return on_entry(ssl, buf, readbytes, 1, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_ssl_read_ex, int ret)
{
	return on_return(ret);
}

/* The socket of the call in progress on this thread. */
static __always_inline void on_sock_io(void *skp, __u16 family, __u16 protocol)
{
	__u32 zero = 0;
	__s64 *busy = bpf_map_lookup_elem(&emon_ssl_busy, &zero);
	__u64 id;
	struct ssl_call *c;

	if (!busy || *busy <= 0)
		return;
	if (protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return;
	id = bpf_get_current_pid_tgid();
	c = bpf_map_lookup_elem(&emon_ssl_calls, &id);
	if (!c || c->have_key)
		return;
	if (flow_key_from_sk((struct sock *)skp, IPPROTO_TCP, &c->key))
		c->have_key = 1;
}

/* sock_sendmsg/sock_recvmsg, in the calling thread, for every socket on the machine. */
SEC("tracepoint/sock/sock_send_length")
int tp_sock_send_length(struct trace_event_raw_sock_msg_length *ctx)
{
	on_sock_io(ctx->sk, ctx->family, ctx->protocol);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int tp_sock_recv_length(struct trace_event_raw_sock_msg_length *ctx)
{
	on_sock_io(ctx->sk, ctx->family, ctx->protocol);
	return 0;
}
