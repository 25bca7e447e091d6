/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The classifier's L7 hook and what the L7 programs share: maps, record writers, the
 * per-flow state. The classifier (a prototype copy today: test/fixtures/bpf/flows_l7.bpf.c)
 * calls l7_hook() after its own parse and count; for a flow that is not DNS, HTTP or TLS
 * that costs one byte test per packet once the flow is decided (bench/l7). The rest runs
 * in bpf/l7.bpf.c's tc_l7_flow, tail-called. */
#ifndef EMON_L7_BPF_H
#define EMON_L7_BPF_H

#include "monitor/helpers.bpf.h"
#include "l7.h"

/* payload pieces for user space (kept apart from emon_events: a burst of payload must not
 * push connect/close events out) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} emon_l7_events SEC(".maps");

/* enum emon_l7_stat -> per-CPU counter */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_L7_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_l7_stats SEC(".maps");

static __always_inline void l7_stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&emon_l7_stats, &idx);

	if (v)
		*v += n;
}

/* The L7 state lives in struct emon_flow's padding (bytes 73..79), so that the flow map's
 * layout and size do not change: the state byte, a u16 byte budget per direction, and a
 * flags byte. (To be named fields of struct emon_flow when the hook moves into flows.bpf.c.) */
#define L7_STATE(f)       ((f)->_pad[0])
#define L7_BUDGET(f, dir) (*(__u16 *)&(f)->_pad[1 + 2 * ((dir) & 1)])
#define L7_FLAGS(f)       ((f)->_pad[5])
#define L7_SKIPPED(dir)   (1U << ((dir) & 1))

/* What the record writers need of the packet: where the network header is, where the
 * payload starts (from the network header), how long it is, and the TCP numbers. */
struct l7_pkt {
	__u32 net_off;     /* network header's offset from skb->data (see l7_net_off) */
	__u32 payload_off;
	__u32 payload_len;
	__u32 seq;
	__u32 ack;
	__u8  tcp_flags;
	__u8  dir;
	__u8  kind;
	__u8  flags;
};

/* One record's place in its packet: `n` bytes copied from `off` (from the network header),
 * standing for `wire` bytes from sequence number `seq`. (A struct because BPF functions
 * take at most five arguments.) */
struct l7_piece {
	__u32 off;
	__u32 n;
	__u32 wire;
	__u32 seq;
};

/* Per-CPU working space of the hook. The classifier already uses about 460 of the 512
 * bytes of stack BPF allows a program and its calls together, so the hook keeps what it
 * works on here. (TC programs do not nest on a CPU: egress runs with bottom halves off,
 * ingress in the softirq.) */
struct l7_scratch {
	struct l7_pkt lp;
	struct l7_piece pc;
	__u8 b[16];
	/* handed from the classifier to the tail-called L7 program */
	struct emon_flow_key key;
	__u32 ip_bytes;
	__u32 meta;
};

/* 0 -> struct l7_scratch (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_scratch);
} emon_l7_scratch SEC(".maps");

/* slot 0 -> the L7 program (bpf/l7.bpf.c: tc_l7_flow), tail-called by the classifier for
 * flows that are (or may become) DNS, HTTP or TLS. Empty slot: the classifier goes on as
 * if L7 were off, so an L7 program the verifier refuses never stops the classifier. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} emon_l7_progs SEC(".maps");

static __always_inline struct l7_scratch *l7_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emon_l7_scratch, &zero);
}

/* Where the network header starts, counted from skb->data (the link-layer header at TC):
 * payload is read with bpf_skb_load_bytes, which takes offsets from skb->data and follows
 * the skb's page fragments. Not with bpf_skb_load_bytes_relative: that one reads the linear
 * area only, and live TCP payload is never there (tcp_sendmsg puts it in page fragments,
 * veth hands the same skb to the peer): every live read failed, while BPF_PROG_TEST_RUN
 * packets, linear throughout, worked (the zero-records bug of the first prototype).
 * The link-layer length is the one the daemon recorded in emon_ifaces for the classifier;
 * for an interface it did not record (the loopback tap), skb->len minus the IP length,
 * accepted only if the IP header's first word is found there. -1: not known. */
static __always_inline int l7_net_off(struct __sk_buff *skb, __u32 ip_bytes, __u8 *b)
{
	__u32 slot = skb->ifindex & (EMON_IFACE_SLOTS - 1);
	struct emon_iface *i = bpf_map_lookup_elem(&emon_ifaces, &slot);
	__u32 l2;

	if (i && i->ifindex == skb->ifindex && i->l2_len <= 32)
		return i->l2_len;
	if (skb->len < ip_bytes || skb->len - ip_bytes > 32)
		return -1;
	l2 = skb->len - ip_bytes;
	if (bpf_skb_load_bytes_relative(skb, 0, b, 4, BPF_HDR_START_NET) ||
	    bpf_skb_load_bytes(skb, l2, b + 4, 4) || *(__u32 *)b != *(__u32 *)(b + 4))
		return -1;
	return l2;
}

/* `len` bytes at `off` from the network header (see l7_net_off). */
static __always_inline long l7_load(struct __sk_buff *skb, const struct l7_pkt *lp, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(skb, lp->net_off + off, to, len);
}

/* One record of `cap` bytes reserved, holding a piece. Two instances (small and large)
 * because the ring needs a constant size. */
#define DEFINE_L7_EMIT(NAME, CAP)                                                                  \
static __always_inline int NAME(struct __sk_buff *skb, const struct emon_flow_key *key,           \
			   const struct emon_owner *o, const struct l7_pkt *lp,                    \
			   const struct l7_piece *pc)                                              \
{                                                                                                  \
	struct emon_l7_rec *e;                                                                     \
	__u32 n = pc->n;                                                                           \
                                                                                                   \
	e = bpf_ringbuf_reserve(&emon_l7_events, sizeof(*e) + (CAP), 0);                          \
	if (!e) {                                                                                  \
		l7_stat_add(EMON_L7_STAT_RINGBUF_FULL, 1);                                              \
		return -1;                                                                         \
	}                                                                                          \
	if (n > (CAP))                                                                             \
		n = (CAP);                                                                         \
	/* ((n - 1) & (CAP - 1)) + 1 is n for n in 1..CAP (CAP a power of two): the mask is there  \
	 * to calm the verifier, which loses the n > 0 test on the way to the helper. */           \
	if (n > 0 && l7_load(skb, lp, pc->off, e->data, ((n - 1) & ((CAP) - 1)) + 1)) {           \
		l7_stat_add(EMON_L7_STAT_LOAD_FAILED, 1);                                            \
		n = 0;                                                                             \
	}                                                                                          \
	e->hdr.type = EMON_EV_L7;                                                                  \
	e->hdr.size = sizeof(*e) + (CAP);                                                          \
	e->hdr.cpu = bpf_get_smp_processor_id();                                                   \
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();                                                    \
	__builtin_memcpy(&e->key, key, sizeof(*key));                                              \
	e->tgid = o ? o->tgid : 0;                                                                 \
	e->uid = o ? o->uid : 0;                                                                   \
	e->seq = pc->seq;                                                                          \
	e->ack = lp->ack;                                                                          \
	e->len = pc->wire;                                                                         \
	e->cap_len = n;                                                                            \
	e->kind = lp->kind;                                                                        \
	e->dir = lp->dir;                                                                          \
	e->tcp_flags = lp->tcp_flags;                                                              \
	e->flags = lp->flags;                                                                      \
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));                                             \
	bpf_ringbuf_submit(e, 0);                                                                  \
	l7_stat_add(EMON_L7_STAT_RECORDS, 1);                                                      \
	l7_stat_add(EMON_L7_STAT_BYTES_COPIED, n);                                                        \
	return 0;                                                                                  \
}

DEFINE_L7_EMIT(l7_emit_small, EMON_L7_SMALL)
DEFINE_L7_EMIT(l7_emit_large, EMON_L7_LARGE)

/* Copies up to `want` payload bytes in pieces; the last record also stands for the bytes
 * after them (its len covers the rest of the packet), so user space knows the packet's
 * whole length. A packet with no payload (a FIN or RST) gives one empty record. Returns
 * the bytes copied. */
static __always_inline __u32 l7_copy(struct __sk_buff *skb, const struct emon_flow_key *key,
				     const struct emon_owner *o, struct l7_scratch *s, __u32 want)
{
	struct l7_pkt *lp = &s->lp;
	struct l7_piece *pc = &s->pc;
	__u32 done = 0;

	if (want > lp->payload_len)
		want = lp->payload_len;
	if (!want) {
		pc->off = lp->payload_off;
		pc->n = 0;
		pc->wire = lp->payload_len;
		pc->seq = lp->seq;
		l7_emit_small(skb, key, o, lp, pc);
		return 0;
	}
	for (int i = 0; i < EMON_L7_MAX_PIECES; i++) {
		__u32 n = want - done;

		if (n > EMON_L7_LARGE)
			n = EMON_L7_LARGE;
		pc->off = lp->payload_off + done;
		pc->n = n;
		pc->wire = done + n == want ? lp->payload_len - done : n;
		pc->seq = lp->seq + done;
		if (n <= EMON_L7_SMALL)
			l7_emit_small(skb, key, o, lp, pc);
		else
			l7_emit_large(skb, key, o, lp, pc);
		done += n;
		if (done >= want)
			return done;
	}
	l7_stat_add(EMON_L7_STAT_PIECES_LIMIT, 1);
	return done;
}

/* First payload bytes that start an HTTP/1.x message: a request line's method or a status
 * line. Compared as little-endian u32 words (one load, a few compares). */
static __always_inline bool l7_http_start(const __u8 *b)
{
	__u32 w = *(const __u32 *)b;

	switch (w) {
	case 0x20544547: /* "GET " */
	case 0x54534f50: /* "POST" */
	case 0x20545550: /* "PUT " */
	case 0x44414548: /* "HEAD" */
	case 0x454c4544: /* "DELE" */
	case 0x4954504f: /* "OPTI" */
	case 0x43544150: /* "PATC" */
	case 0x4e4e4f43: /* "CONN" */
	case 0x43415254: /* "TRAC" */
		return true;
	case 0x50545448: /* "HTTP" */
		return b[4] == '/' && b[5] == '1' && b[6] == '.';
	}
	return false;
}

/* A TLS handshake record holding a ClientHello: 0x16, version 3.x, type 1. */
static __always_inline bool l7_tls_client_hello(const __u8 *b)
{
	return b[0] == 0x16 && b[1] == 3 && b[2] <= 4 && b[5] == 1;
}

/* Decides a flow's state on its first packet (or first payload packet, TCP). */
static __always_inline __u8 l7_decide(struct __sk_buff *skb, const struct emon_flow_key *k, struct l7_scratch *s)
{
	struct emon_config *cfg = config_get();
	__u32 on = cfg ? cfg->flags & (EMON_CFG_L7_DNS | EMON_CFG_L7_HTTP | EMON_CFG_L7_TLS) : 0;
	struct l7_pkt *lp = &s->lp;
	__u8 *b = s->b;

	if (!on || (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP))
		return EMON_L7_NONE;
	if (k->rport == 53) { /* we are the client of a DNS server */
		if (!(on & EMON_CFG_L7_DNS))
			return EMON_L7_NONE;
		l7_stat_add(EMON_L7_STAT_FLOWS_DNS, 1);
		return EMON_L7_DNS;
	}
	if (k->proto != IPPROTO_TCP)
		return EMON_L7_NONE;
	if (lp->payload_len < 8)
		return lp->payload_len ? EMON_L7_NONE : EMON_L7_UNDECIDED;
	if (l7_load(skb, lp, lp->payload_off, b, 8)) {
		/* Not decided: the next payload packet tries again. */
		l7_stat_add(EMON_L7_STAT_LOAD_FAILED, 1);
		return EMON_L7_UNDECIDED;
	}
	if ((on & EMON_CFG_L7_HTTP) && l7_http_start(b)) {
		l7_stat_add(EMON_L7_STAT_FLOWS_HTTP, 1);
		return EMON_L7_HTTP;
	}
	if ((on & EMON_CFG_L7_TLS) && l7_tls_client_hello(b)) {
		l7_stat_add(EMON_L7_STAT_FLOWS_TLS, 1);
		return EMON_L7_TLS;
	}
	return EMON_L7_NONE;
}

/* The classifier passes what it parsed packed in one word (BPF calls take five arguments):
 * transport header offset from the network header (12 bits), transport header length
 * (8 bits), direction (1: ingress), and whether the packet has no payload to look at (a
 * fragment, or a protocol without ports). */
#define L7_META(l4_off, l4_hlen, ingress, nopayload) \
	(((__u32)(l4_off) & 0xfff) | (((__u32)(l4_hlen) & 0xff) << 12) | ((__u32)!!(ingress) << 20) | ((__u32)!!(nopayload) << 21))

/* The work for flows that are (or may become) DNS, HTTP or TLS, in the tail-called
 * program (bpf/l7.bpf.c), with the flow the classifier counted. `ip_bytes`: the packet's
 * IP-layer length. */
static __always_inline __attribute__((unused)) int l7_flow_packet(struct __sk_buff *skb, const struct emon_flow_key *k,
			      struct emon_flow *f, __u32 ip_bytes, __u32 meta)
{
	struct l7_scratch *s = l7_scratch_get();
	struct l7_pkt *lp;
	__u32 dir = (meta >> 20) & 1;
	__u32 off = meta & 0xfff;
	__u32 hdr = off + ((meta >> 12) & 0xff);
	__u32 budget, got;
	__u8 st = L7_STATE(f);
	int net;

	if (!s)
		return 0;
	lp = &s->lp;
	net = l7_net_off(skb, ip_bytes, s->b);
	if (net < 0) {
		l7_stat_add(EMON_L7_STAT_LOAD_FAILED, 1);
		return 0;
	}
	lp->net_off = net;
	lp->payload_off = hdr;
	lp->payload_len = ip_bytes > hdr && !(meta & (1U << 21)) && hdr > off ? ip_bytes - hdr : 0;
	lp->seq = lp->ack = 0;
	lp->tcp_flags = 0;
	lp->dir = dir;
	lp->flags = 0;
	if (k->proto == IPPROTO_TCP) {
		/* The classifier read these already, but keeping them would cost it stack it does
		 * not have: read again, for DNS/HTTP/TLS flows only. */
		if (l7_load(skb, lp, off, s->b, 14))
			return 0;
		lp->seq = ((__u32)s->b[4] << 24) | ((__u32)s->b[5] << 16) | ((__u32)s->b[6] << 8) | s->b[7];
		lp->ack = ((__u32)s->b[8] << 24) | ((__u32)s->b[9] << 16) | ((__u32)s->b[10] << 8) | s->b[11];
		lp->tcp_flags = s->b[TCP_FLAGS_OFF];
	}
	if (st == EMON_L7_UNDECIDED) {
		st = l7_decide(skb, k, s);
		if (st == EMON_L7_UNDECIDED)
			return 0;
		L7_STATE(f) = st;
		if (st == EMON_L7_HTTP) {
			L7_BUDGET(f, 0) = EMON_L7_HTTP_BUDGET;
			L7_BUDGET(f, 1) = EMON_L7_HTTP_BUDGET;
		} else if (st == EMON_L7_TLS) {
			/* The direction of this first payload packet is the client's. */
			L7_BUDGET(f, dir) = EMON_L7_TLS_CLIENT;
			L7_BUDGET(f, dir ^ 1) = EMON_L7_TLS_SERVER;
		} else if (st == EMON_L7_DNS) {
			L7_BUDGET(f, 0) = EMON_L7_DNS_TCP;
			L7_BUDGET(f, 1) = EMON_L7_DNS_TCP;
		} else {
			return 0;
		}
	}
	lp->kind = st;
	if (k->proto == IPPROTO_UDP) {
		if (lp->payload_len)
			l7_copy(skb, k, &f->owner, s, lp->payload_len);
		return 0;
	}
	if (!lp->payload_len) {
		/* FIN/RST: the parser needs to know the stream ended. */
		if (st != EMON_L7_TLS && (lp->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
			l7_copy(skb, k, &f->owner, s, 0);
		return 0;
	}
	budget = L7_BUDGET(f, dir);
	if (st == EMON_L7_HTTP && budget < EMON_L7_HTTP_BUDGET && lp->payload_len >= 8 &&
	    !l7_load(skb, lp, lp->payload_off, s->b, 8) &&
	    l7_http_start(s->b))
		budget = EMON_L7_HTTP_BUDGET; /* a new message: a fresh budget */
	if (!budget) {
		if (!(L7_FLAGS(f) & L7_SKIPPED(dir)))
			L7_FLAGS(f) |= L7_SKIPPED(dir);
		l7_stat_add(EMON_L7_STAT_PACKETS_SKIPPED, 1);
		if (st == EMON_L7_TLS && !L7_BUDGET(f, dir ^ 1))
			L7_STATE(f) = EMON_L7_DONE;
		return 0;
	}
	if (L7_FLAGS(f) & L7_SKIPPED(dir)) {
		lp->flags |= EMON_L7_F_SKIPPED;
		L7_FLAGS(f) &= ~L7_SKIPPED(dir);
	}
	got = l7_copy(skb, k, &f->owner, s, budget);
	L7_BUDGET(f, dir) = budget > got ? budget - got : 0;
	if (st == EMON_L7_TLS && !L7_BUDGET(f, 0) && !L7_BUDGET(f, 1))
		L7_STATE(f) = EMON_L7_DONE;
	return 0;
}

/* The hook, inline at the end of the classifier: flows decided as none of ours (or done)
 * cost the one byte test; the others go to the L7 program by a tail call (which starts
 * on a fresh stack: the classifier has used 456 of its 512 bytes). Returns only when the
 * flow is not ours or the L7 program is not there. */
static __always_inline __attribute__((unused)) void l7_hook(struct __sk_buff *skb, const struct emon_flow_key *k,
							   const struct emon_flow *f, __u32 ip_bytes, __u32 meta)
{
	struct l7_scratch *s;
	__u8 st = L7_STATE(f);

	if (st == EMON_L7_NONE || st == EMON_L7_DONE)
		return;
	/* A TCP flow is decided by its first payload: its handshake and any other packet
	 * without payload before that need not go further. */
	if (st == EMON_L7_UNDECIDED && k->proto == IPPROTO_TCP &&
	    ip_bytes <= (meta & 0xfff) + ((meta >> 12) & 0xff))
		return;
	s = l7_scratch_get();
	if (!s)
		return;
	__builtin_memcpy(&s->key, k, sizeof(*k));
	s->ip_bytes = ip_bytes;
	s->meta = meta;
	bpf_tail_call(skb, &emon_l7_progs, 0);
}

#endif /* EMON_L7_BPF_H */
