// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Delivery of the packets capture and mirror sessions selected: the last program of the
 * capture path (see capture.h). Reached by a tail call from the generated engine program
 * once at least one session matched; never changes or drops the packet. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "capture_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TC_ACT_UNSPEC (-1)

/* Types that only appear in what user space reads: referenced here so that their BTF is in
 * the object (test/unit/daemon/capture/layout.test.ts checks the TypeScript mirrors). */
struct emon_cap_record *unused_cap_record __attribute__((unused));

static __always_inline struct emon_cap_counters *counters(__u32 slot)
{
	return bpf_map_lookup_elem(&emon_cap_stats, &slot);
}

/* Counts a match for every session in `match`. Loops over the 32 slots never carry state
 * from one slot to the next: that keeps the verifier's walk linear. */
static __always_inline void count_matched(__u32 match, __u32 len)
{
	for (__u32 i = 0; i < EMON_CAP_SESSIONS; i++) {
		struct emon_cap_counters *c;

		if (!(match >> i))
			break;
		if (!(match & (1U << i)))
			continue;
		c = counters(i);
		if (c) {
			c->matched++;
			c->matched_bytes += len;
		}
	}
}

/* Prototype of the mirror action, for the cost measurement only: a plain clone to the
 * session's interface (no encapsulation yet). */
static __always_inline void mirror(struct __sk_buff *skb, __u32 sessions)
{
	for (__u32 i = 0; i < EMON_CAP_SESSIONS; i++) {
		struct emon_cap_session *s;
		struct emon_cap_counters *c;
		__u32 slot = i;

		if (!(sessions >> i))
			break;
		if (!(sessions & (1U << i)))
			continue;
		s = bpf_map_lookup_elem(&emon_cap_sess, &slot);
		c = counters(i);
		if (!s || !c)
			continue;
		if (bpf_clone_redirect(skb, s->ifindex, 0) == 0) {
			c->delivered++;
			c->delivered_bytes += skb->len;
		} else {
			c->failed++;
		}
	}
}

/* Counts the outcome of the one copy for every capture session it served. */
static __always_inline void outcome(__u32 sessions, bool ok, __u32 cap_len, bool truncated)
{
	for (__u32 i = 0; i < EMON_CAP_SESSIONS; i++) {
		struct emon_cap_counters *c;

		if (!(sessions >> i))
			break;
		if (!(sessions & (1U << i)))
			continue;
		c = counters(i);
		if (!c)
			continue;
		if (ok) {
			c->delivered++;
			c->delivered_bytes += cap_len;
			if (truncated)
				c->truncated++;
		} else {
			c->dropped++;
		}
	}
}

/* The matched sessions, counted and mirrored; returns the capture sessions among them
 * and the copy length, or 0 when nothing goes to user space. */
static __always_inline __u32 dispatch(struct __sk_buff *skb, struct emon_cap_meta **mp, __u32 *cap_len)
{
	struct emon_cap_conf *cfg;
	struct emon_cap_meta *m;
	__u32 zero = 0, capture;

	m = bpf_map_lookup_elem(&emon_cap_meta, &zero);
	cfg = bpf_map_lookup_elem(&emon_cap_conf, &zero);
	if (!m || !cfg || !m->match)
		return 0;
	count_matched(m->match, skb->len);
	if (m->match & cfg->mirror)
		mirror(skb, m->match & cfg->mirror);
	capture = m->match & cfg->capture;
	*cap_len = skb->len < cfg->snaplen ? skb->len : cfg->snaplen;
	*mp = m;
	return capture;
}

static __always_inline void fill_record(struct emon_cap_record *r, const struct emon_cap_meta *m,
					struct __sk_buff *skb, __u32 sessions, __u32 cap_len)
{
	r->ts_ns = bpf_ktime_get_ns();
	r->cgroup_id = m->owner.cgroup_id;
	r->sessions = sessions;
	r->ifindex = m->ifindex;
	r->wire_len = skb->len;
	r->cap_len = cap_len;
	r->tgid = m->owner.tgid;
	r->tid = m->owner.pid;
	r->uid = m->owner.uid;
	r->gid = m->owner.gid;
	__builtin_memcpy(r->comm, m->owner.comm, sizeof(r->comm));
	r->direction = m->direction;
	r->l2_len = m->l2_len;
	r->how = m->owner.how;
	__builtin_memset(r->_pad, 0, sizeof(r->_pad));
}

/* Reached from the engine (emon_cap_progs[EMON_CAP_PROG_DELIVER]). Copies through the
 * per-CPU perf rings: bpf_perf_event_output with BPF_F_CTXLEN_MASK copies the packet
 * straight from the skb (linear or not) behind the record, once, at its exact length. */
SEC("tc")
int tc_cap_deliver(struct __sk_buff *skb)
{
	struct emon_cap_record rec;
	struct emon_cap_meta *m = NULL;
	__u32 capture, cap_len = 0;
	long err;

	capture = dispatch(skb, &m, &cap_len);
	if (!capture || !m)
		return TC_ACT_UNSPEC;
	/* Mask needed to calm the verifier: the length shares the flags word (BPF_F_CTXLEN_MASK). */
	cap_len &= 0xfffff;
	fill_record(&rec, m, skb, capture, cap_len);
	err = bpf_perf_event_output(skb, &emon_cap_events, BPF_F_CURRENT_CPU | ((__u64)cap_len << 32), &rec, sizeof(rec));
	outcome(capture, err == 0, cap_len, cap_len < skb->len);
	return TC_ACT_UNSPEC;
}

/* The same through one BPF ring buffer. A reservation's size must be a constant, so the
 * record takes the smallest of a few fixed sizes that holds it (up to 2x the space);
 * bpf_skb_load_bytes then copies the packet into it once. */
#define RB_BUCKET(SZ)                                                                        \
	if (cap_len <= (SZ) - sizeof(struct emon_cap_record)) {                              \
		struct {                                                                      \
			struct emon_cap_record h;                                             \
			__u8 data[(SZ) - sizeof(struct emon_cap_record)];                     \
		} *r = bpf_ringbuf_reserve(&emon_cap_ring, (SZ), 0);                         \
		if (!r)                                                                       \
			return false;                                                         \
		/* The length as a u64, its bounds tested again right at the call: calms   \
		 * the verifier (with a u32, clang tests a zero-extended copy in another   \
		 * register and the verifier cannot tie the two). */                          \
		__u64 n = cap_len;                                                            \
		fill_record(&r->h, m, skb, sessions, cap_len);                                \
		asm volatile("" : "+r"(n));                                                   \
		if (n > (SZ) - sizeof(struct emon_cap_record))                                \
			n = 0;                                                                \
		if (n < 1 || bpf_skb_load_bytes(skb, 0, r->data, n)) {                        \
			bpf_ringbuf_discard(r, 0);                                            \
			return false;                                                         \
		}                                                                             \
		bpf_ringbuf_submit(r, 0);                                                     \
		return true;                                                                  \
	}

static __always_inline bool ring_copy(struct __sk_buff *skb, const struct emon_cap_meta *m, __u32 sessions, __u32 cap_len)
{
	if (cap_len < 1)
		return false;
	RB_BUCKET(256)
	RB_BUCKET(1024)
	RB_BUCKET(1664)
	RB_BUCKET(4096)
	RB_BUCKET(16384)
	RB_BUCKET(65536)
	return false;
}

SEC("tc")
int tc_cap_deliver_rb(struct __sk_buff *skb)
{
	struct emon_cap_meta *m = NULL;
	__u32 capture, cap_len = 0;

	capture = dispatch(skb, &m, &cap_len);
	if (!capture || !m)
		return TC_ACT_UNSPEC;
	if (cap_len > 65536 - sizeof(struct emon_cap_record))
		cap_len = 65536 - sizeof(struct emon_cap_record);
	outcome(capture, ring_copy(skb, m, capture, cap_len), cap_len, cap_len < skb->len);
	return TC_ACT_UNSPEC;
}
