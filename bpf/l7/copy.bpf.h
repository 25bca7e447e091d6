/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Copying payload into emon_l7_events records: where the payload is, the record writers,
 * and the loop that cuts a packet into records. */
#ifndef EMON_L7_COPY_BPF_H
#define EMON_L7_COPY_BPF_H

#include "l7/maps.bpf.h"

/* Where the network header starts, counted from skb->data (the link-layer header at TC):
 * `l2`, the link-layer length the classifier knew (emon_pkt_meta.l2_len), when it is known.
 * payload is read with bpf_skb_load_bytes, which takes offsets from skb->data and follows
 * the skb's page fragments. Not with bpf_skb_load_bytes_relative: that one reads the linear
 * area only, and live TCP payload is never there (tcp_sendmsg puts it in page fragments,
 * veth hands the same skb to the peer): every live read failed, while BPF_PROG_TEST_RUN
 * packets, linear throughout, worked (the zero-records bug of the first prototype).
 * The link-layer length is the one the daemon recorded in emon_ifaces for the classifier;
 * for an interface it did not record (the loopback tap), skb->len minus the IP length,
 * accepted only if the IP header's first word is found there. -1: not known. */
static __always_inline int l7_net_off(struct __sk_buff *skb, __u32 l2_known, __u32 ip_bytes, __u8 *b)
{
	__u32 l2;

	if (l2_known <= 32)
		return l2_known;
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
 * because the ring needs a constant size. Global (not inlined) functions: the verifier
 * checks each once on its own, not once per piece of l7_copy's loop; inlined, the 6.1
 * verifier gave up on tc_l7_flow after 1M instructions (E2BIG; docs/l7.md). Pointer
 * arguments of a global function may be NULL as far as the verifier knows: checked. */
#define DEFINE_L7_EMIT(NAME, CAP)                                                                  \
__noinline int NAME(struct __sk_buff *skb, const struct emon_flow_key *key,                        \
		    const struct emon_owner *o, const struct l7_pkt *lp,                           \
		    const struct l7_piece *pc)                                                     \
{                                                                                                  \
	struct emon_l7_rec *e;                                                                     \
	__u32 n;                                                                                   \
                                                                                                   \
	if (!skb || !key || !lp || !pc)                                                            \
		return -1;                                                                         \
	n = pc->n;                                                                                 \
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

#endif /* EMON_L7_COPY_BPF_H */
