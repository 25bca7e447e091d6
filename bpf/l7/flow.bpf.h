/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The L7 stage's work on a packet of a counted flow: deciding what the flow is (once) and
 * copying what its state asks for, within per-direction budgets. The state lives in the
 * flow (emon_flow.l7_state, l7_budget, l7_flags); the classifier's one byte test on
 * l7_state (flows.bpf.c l7_wanted) keeps every flow decided none (or done) away from here. */
#ifndef EMON_L7_FLOW_BPF_H
#define EMON_L7_FLOW_BPF_H

#include "l7/copy.bpf.h"

#define L7_SKIPPED(dir) (1U << ((dir) & 1))

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

/* The L7 stage's work on one packet (bpf/l7.bpf.c tc_l7_flow), with the flow the
 * classifier counted and what it parsed (emon_pkt_meta). */
static __always_inline void l7_flow_packet(struct __sk_buff *skb, const struct emon_pkt_meta *m, struct emon_flow *f)
{
	const struct emon_flow_key *k = &m->key;
	struct l7_scratch *s = l7_scratch_get();
	struct l7_pkt *lp;
	__u32 dir = m->ingress & 1;
	__u32 off = m->l4_off;
	__u32 hdr = off + m->l4_hlen;
	__u32 ip_bytes = m->ip_bytes;
	/* A later fragment, or a protocol without ports: nothing to read. */
	bool nopayload = (m->flags & EMON_META_F_FRAGMENT) || !m->l4_hlen;
	__u32 budget, got;
	__u8 st = f->l7_state;
	int net;

	if (!s)
		return;
	lp = &s->lp;
	net = l7_net_off(skb, m->l2_len, ip_bytes, s->b);
	if (net < 0) {
		l7_stat_add(EMON_L7_STAT_LOAD_FAILED, 1);
		return;
	}
	lp->net_off = net;
	lp->payload_off = hdr;
	lp->payload_len = ip_bytes > hdr && !nopayload ? ip_bytes - hdr : 0;
	lp->seq = lp->ack = 0;
	lp->tcp_flags = 0;
	lp->dir = dir;
	lp->flags = 0;
	if (k->proto == IPPROTO_TCP) {
		/* The classifier read these already, but handing them over would cost every packet
		 * of every hooked interface: read again, for DNS/HTTP/TLS flows only. */
		if (nopayload || l7_load(skb, lp, off, s->b, 14))
			return;
		lp->seq = ((__u32)s->b[4] << 24) | ((__u32)s->b[5] << 16) | ((__u32)s->b[6] << 8) | s->b[7];
		lp->ack = ((__u32)s->b[8] << 24) | ((__u32)s->b[9] << 16) | ((__u32)s->b[10] << 8) | s->b[11];
		lp->tcp_flags = s->b[TCP_FLAGS_OFF];
	}
	if (st == EMON_L7_UNDECIDED) {
		st = l7_decide(skb, k, s);
		if (st == EMON_L7_UNDECIDED)
			return;
		f->l7_state = st;
		if (st == EMON_L7_HTTP) {
			f->l7_budget[0] = EMON_L7_HTTP_BUDGET;
			f->l7_budget[1] = EMON_L7_HTTP_BUDGET;
		} else if (st == EMON_L7_TLS) {
			/* The direction of this first payload packet is the client's. */
			f->l7_budget[dir & 1] = EMON_L7_TLS_CLIENT;
			f->l7_budget[(dir ^ 1) & 1] = EMON_L7_TLS_SERVER;
		} else if (st == EMON_L7_DNS) {
			f->l7_budget[0] = EMON_L7_DNS_TCP;
			f->l7_budget[1] = EMON_L7_DNS_TCP;
		} else {
			return;
		}
	}
	lp->kind = st;
	if (k->proto == IPPROTO_UDP) {
		if (lp->payload_len)
			l7_copy(skb, k, &f->owner, s, lp->payload_len);
		return;
	}
	if (!lp->payload_len) {
		/* FIN/RST: the parser needs to know the stream ended. */
		if (st != EMON_L7_TLS && (lp->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
			l7_copy(skb, k, &f->owner, s, 0);
		return;
	}
	budget = f->l7_budget[dir & 1];
	if (st == EMON_L7_HTTP && budget < EMON_L7_HTTP_BUDGET && lp->payload_len >= 8 &&
	    !l7_load(skb, lp, lp->payload_off, s->b, 8) &&
	    l7_http_start(s->b))
		budget = EMON_L7_HTTP_BUDGET; /* a new message: a fresh budget */
	if (!budget) {
		if (!(f->l7_flags & L7_SKIPPED(dir)))
			f->l7_flags |= L7_SKIPPED(dir);
		l7_stat_add(EMON_L7_STAT_PACKETS_SKIPPED, 1);
		if (st == EMON_L7_TLS && !f->l7_budget[(dir ^ 1) & 1])
			f->l7_state = EMON_L7_DONE;
		return;
	}
	if (f->l7_flags & L7_SKIPPED(dir)) {
		lp->flags |= EMON_L7_F_SKIPPED;
		f->l7_flags &= ~L7_SKIPPED(dir);
	}
	got = l7_copy(skb, k, &f->owner, s, budget);
	f->l7_budget[dir & 1] = budget > got ? budget - got : 0;
	if (st == EMON_L7_TLS && !f->l7_budget[0] && !f->l7_budget[1])
		f->l7_state = EMON_L7_DONE;
	return;
}

#endif /* EMON_L7_FLOW_BPF_H */
