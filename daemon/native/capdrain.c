// SPDX-License-Identifier: Apache-2.0
// The capture path's native drain (issue 13): walks the per-CPU perf rings of
// emon_cap_events and lays out one pcapng Enhanced Packet Block per record and capture
// session straight into the sessions' output chunks, in one call per drain. The
// TypeScript drain (daemon/src/capture/perfbuf.ts + stream.ts + pcapng.ts) does the same
// work record by record; this file exists because that loop, not the system calls, was
// most of the daemon's CPU per frame (docs/capture.md, "The native drain").
//
// Division of work: everything per record is here (ring walk, session bits, snap length,
// timestamp, direction flag, per-owner options copied from a table); everything rare
// stays in TypeScript (daemon/src/capture/nativedrain.ts): describing a new interface
// (an IDB in the chunk), a new owner (option 8 and the ptcpdump comments, from /proc), a
// full chunk (handed to the sink). For those the call returns at the record, leaving it
// in the ring, and TypeScript calls again once it has filled the table or flushed.
// A record is written for every session or for none: the checks run for all of its
// sessions before the first byte is written, so a return never splits one.
//
// The record layout comes from bpf/capture.h (the BPF program's own header); this file's
// structs are mirrored in nativedrain.ts, which checks them against emon_cd_layout() when
// it loads the library. Little-endian hosts only, as the pcapng writer.
#include <linux/types.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "flows.h" /* enum emon_direction */

#define CD_PAGE 4096u
#define CD_HEAD 1024u            /* struct perf_event_mmap_page.data_head */
#define CD_TAIL 1032u            /* .data_tail */
#define PERF_RECORD_LOST 2u
#define PERF_RECORD_SAMPLE 9u

#define CD_REC_HDR ((uint32_t)sizeof(struct emon_cap_record))
#define R(field) offsetof(struct emon_cap_record, field)
#define CD_MAX_IFACES 256u
#define CD_ID_UNKNOWN 0xffffffffu

/* pcapng (pcapng.ts OPT, EPB) */
#define EPB 6u
#define OPT_EPB_FLAGS 2u

/* Return codes of emon_cd_drain(). */
enum {
	CD_DONE = 0,       /* every ring was empty when looked at */
	CD_BEHIND = 1,     /* the time budget ran out with records left */
	CD_NEED_IFACE = 2, /* session need_session met interface need_ifindex */
	CD_NEED_OWNER = 3, /* session need_session met an owner not in its table (need_hdr) */
	CD_FULL = 4,       /* session need_session's chunk has no room for the next block */
	CD_CORRUPT = -1,   /* a record shorter than its header: the ring is left there */
};

struct cd_ring {
	uint64_t base;             /* the ring's control page; data_size bytes of data follow */
	uint64_t size;             /* data bytes, a power of two */
};

/* Per-owner options: open addressing on (tgid, tid); tgid 0 marks a free entry. */
struct cd_owner {
	uint32_t tgid;
	uint32_t tid;
	uint32_t comm[EMON_COMM_LEN / 4]; /* the record's comm as it was when the options were made */
	uint32_t opt_off;          /* in the session's arena */
	uint32_t opt_len;          /* a multiple of 4 */
};

struct cd_session {
	uint64_t out;              /*   0: chunk address (4-aligned) */
	uint64_t owners;           /*   8: struct cd_owner[owner_mask + 1] */
	uint64_t arena;            /*  16: option bytes */
	uint32_t at;               /*  24: in/out: where the next block goes */
	uint32_t cap;              /*  28: chunk bytes */
	uint32_t bit;              /*  32: 1 << slot */
	uint32_t snaplen;          /*  36 */
	uint32_t left;             /*  40: in/out: packets before -c is reached (0xffffffff: no -c) */
	uint32_t flags;            /*  44: in: CD_S_BACKLOG; out: CD_S_DONE */
	uint32_t owner_mask;       /*  48 */
	uint32_t n_ifaces;         /*  52 */
	uint32_t read;             /*  56: out, added: records of this session read */
	uint32_t client_dropped;   /*  60: out, added: read while the client was too far behind */
	uint32_t packets;          /*  64: out, added: blocks written */
	uint32_t truncated;        /*  68: out, added */
	uint32_t unknown_iface;    /*  72: out, added */
	uint32_t _pad;             /*  76 */
	uint32_t iface_index[CD_MAX_IFACES]; /*   80 */
	uint32_t iface_id[CD_MAX_IFACES];    /* 1104: IDB id, or CD_ID_UNKNOWN (skipped, counted) */
	uint32_t written[CD_MAX_IFACES];     /* 2128: out, added: blocks per IDB id */
};                                       /* 3152 */

#define CD_S_BACKLOG 1u
#define CD_S_DONE 2u

struct cd_ctx {
	int64_t off_ns;            /*   0: CLOCK_REALTIME - CLOCK_MONOTONIC */
	uint64_t budget_ns;        /*   8 */
	uint64_t rings;            /*  16: struct cd_ring[n_rings] */
	uint64_t sessions;         /*  24: struct cd_session *[n_sessions] */
	uint64_t lost;             /*  32: out, added: PERF_RECORD_LOST counts */
	uint64_t samples;          /*  40: out, added */
	uint32_t n_rings;          /*  48 */
	uint32_t n_sessions;       /*  52 */
	uint32_t need_session;     /*  56: out */
	uint32_t need_ifindex;     /*  60: out */
	uint32_t need_slot;        /*  64: out: the owner table entry to fill */
	uint32_t need_bytes;       /*  68: out: CD_FULL: the block's size */
	uint8_t need_hdr[sizeof(struct emon_cap_record)]; /* 72: out: the record's header (CD_NEED_OWNER) */
};                                /* 144 */

/* Sizes and offsets for the TypeScript mirror's test. */
void emon_cd_layout(uint32_t *out)
{
	out[0] = sizeof(struct cd_ctx);
	out[1] = sizeof(struct cd_session);
	out[2] = sizeof(struct cd_owner);
	out[3] = sizeof(struct cd_ring);
	out[4] = (uint32_t)offsetof(struct cd_session, iface_id);
	out[5] = (uint32_t)offsetof(struct cd_session, written);
	out[6] = (uint32_t)offsetof(struct cd_ctx, need_hdr);
	out[7] = CD_MAX_IFACES;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint32_t owner_hash(uint32_t tgid, uint32_t tid)
{
	return (tgid * 2654435761u) ^ (tid * 40503u);
}

/* The entry for (tgid, tid): a match, or the free entry where it would go. */
static inline uint32_t owner_find(const struct cd_owner *t, uint32_t mask, uint32_t tgid, uint32_t tid)
{
	uint32_t i = owner_hash(tgid, tid) & mask;
	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask)
		if (t[i].tgid == 0 || (t[i].tgid == tgid && t[i].tid == tid))
			return i;
	return UINT32_MAX; /* full: TypeScript clears tables before that */
}

/* Exported for the TypeScript side, which fills the entry CD_NEED_OWNER named: the same
 * probe, so that both sides agree on where an owner lives. */
uint32_t emon_cd_owner_slot(const struct cd_owner *t, uint32_t mask, uint32_t tgid, uint32_t tid)
{
	return owner_find(t, mask, tgid, tid);
}

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline uint32_t pad4(uint32_t n)
{
	return (n + 3u) & ~3u;
}

static inline int iface_slot(const struct cd_session *s, uint32_t ifindex)
{
	for (uint32_t i = 0; i < s->n_ifaces && i < CD_MAX_IFACES; i++)
		if (s->iface_index[i] == ifindex)
			return (int)i;
	return -1;
}

/* What one session does with a record, decided before anything is written. */
enum { P_NONE, P_SHORT, P_UNKNOWN, P_WRITE };
struct plan {
	uint32_t what;             /* P_* (P_NONE: not selected or done) */
	uint32_t total;            /* P_WRITE: the block's bytes */
	uint32_t cap_len;
	uint32_t id;
	const struct cd_owner *owner;
};

/* The plan for session si, or a CD_NEED_* / CD_FULL code when something must be
 * resolved first. The order of the checks is stream.ts's: the client's backlog first
 * (no IDB is written for a record dropped for the client), then the record's length,
 * the interface, the owner. */
static int plan_one(struct cd_ctx *c, uint32_t si, const uint8_t *rec, uint32_t len, struct plan *p)
{
	struct cd_session *s = ((struct cd_session **)(uintptr_t)c->sessions)[si];
	p->what = P_NONE;
	if (!(rd32(rec + R(sessions)) & s->bit) || (s->flags & CD_S_DONE))
		return 0;
	p->what = P_SHORT;
	if ((s->flags & CD_S_BACKLOG) || len < CD_REC_HDR)
		return 0;
	uint32_t ifindex = rd32(rec + R(ifindex));
	int k = iface_slot(s, ifindex);
	if (k < 0) {
		c->need_session = si;
		c->need_ifindex = ifindex;
		return CD_NEED_IFACE;
	}
	p->id = s->iface_id[k];
	p->what = P_UNKNOWN;
	if (p->id == CD_ID_UNKNOWN)
		return 0;
	p->owner = NULL;
	uint32_t tgid = rd32(rec + R(tgid));
	if (tgid != 0) {
		const struct cd_owner *t = (const struct cd_owner *)(uintptr_t)s->owners;
		uint32_t tid = rd32(rec + R(tid));
		uint32_t e = owner_find(t, s->owner_mask, tgid, tid);
		if (e == UINT32_MAX || t[e].tgid == 0 || memcmp(t[e].comm, rec + R(comm), EMON_COMM_LEN) != 0) {
			c->need_session = si;
			c->need_slot = e;
			memcpy(c->need_hdr, rec, CD_REC_HDR);
			return CD_NEED_OWNER;
		}
		p->owner = &t[e];
	}
	uint32_t cap_len = rd32(rec + R(cap_len));
	if (cap_len > len - CD_REC_HDR)
		cap_len = len - CD_REC_HDR;
	if (cap_len > s->snaplen)
		cap_len = s->snaplen; /* the kernel copied the largest session's snaplen */
	uint8_t dir = rec[R(direction)];
	uint32_t opt = (dir == EMON_DIR_OUTBOUND || dir == EMON_DIR_INBOUND ? 8u : 0u) + (p->owner ? p->owner->opt_len : 0u);
	p->cap_len = cap_len;
	p->total = 32u + pad4(cap_len) + (opt ? opt + 4u : 0u);
	if (s->at + p->total > s->cap) {
		c->need_session = si;
		c->need_bytes = p->total;
		return CD_FULL;
	}
	p->what = P_WRITE;
	return 0;
}

/* Carries out one session's plan. */
static void write_one(struct cd_ctx *c, uint32_t si, const uint8_t *rec, const struct plan *p)
{
	struct cd_session *s = ((struct cd_session **)(uintptr_t)c->sessions)[si];
	if (p->what == P_NONE)
		return;
	s->read++;
	if (s->flags & CD_S_BACKLOG) {
		s->client_dropped++;
		return;
	}
	if (p->what == P_UNKNOWN)
		s->unknown_iface++;
	if (p->what != P_WRITE)
		return;
	uint8_t *o = (uint8_t *)(uintptr_t)s->out + s->at;
	uint32_t wire_len = rd32(rec + R(wire_len));
	uint64_t mono;
	memcpy(&mono, rec + R(ts_ns), 8);
	uint64_t ts = mono + (uint64_t)c->off_ns;
	wr32(o, EPB);
	wr32(o + 4, p->total);
	wr32(o + 8, p->id);
	wr32(o + 12, (uint32_t)(ts >> 32));
	wr32(o + 16, (uint32_t)ts);
	wr32(o + 20, p->cap_len);
	wr32(o + 24, wire_len);
	uint8_t *q = o + 28;
	memcpy(q, rec + CD_REC_HDR, p->cap_len);
	q += p->cap_len;
	for (uint32_t i = p->cap_len; i < pad4(p->cap_len); i++)
		*q++ = 0;
	uint8_t dir = rec[R(direction)];
	int has_dir = dir == EMON_DIR_OUTBOUND || dir == EMON_DIR_INBOUND;
	if (has_dir || p->owner) {
		if (has_dir) {
			wr32(q, OPT_EPB_FLAGS | (4u << 16));
			wr32(q + 4, dir == EMON_DIR_INBOUND ? 1u : 2u); /* direction bits: 01 inbound, 10 outbound */
			q += 8;
		}
		if (p->owner) {
			memcpy(q, (const uint8_t *)(uintptr_t)s->arena + p->owner->opt_off, p->owner->opt_len);
			q += p->owner->opt_len;
		}
		wr32(q, 0); /* opt_endofopt */
		q += 4;
	}
	wr32(q, p->total);
	s->at += p->total;
	if (p->id < CD_MAX_IFACES)
		s->written[p->id]++;
	s->packets++;
	if (p->cap_len < wire_len)
		s->truncated++;
	if (s->left != 0xffffffffu && --s->left == 0)
		s->flags |= CD_S_DONE;
}

#define CD_MAX_SESSIONS 32u

/* One record for every session, or a code saying what must be resolved first. */
static int deliver(struct cd_ctx *c, const uint8_t *rec, uint32_t len)
{
	struct plan plans[CD_MAX_SESSIONS];
	uint32_t n = c->n_sessions < CD_MAX_SESSIONS ? c->n_sessions : CD_MAX_SESSIONS;
	if (len < 20)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		int rc = plan_one(c, i, rec, len, &plans[i]);
		if (rc)
			return rc;
	}
	for (uint32_t i = 0; i < n; i++)
		write_one(c, i, rec, &plans[i]);
	return 0;
}

/* Records that wrap around the end of a ring are copied here to be read contiguously
 * (perf_event_header.size is a u16: a record is shorter than 64 KiB). One caller at a
 * time: the daemon drains on its event loop only. */
static uint8_t wrap_buf[65536] __attribute__((aligned(8)));

int emon_cd_drain(struct cd_ctx *c)
{
	const struct cd_ring *rings = (const struct cd_ring *)(uintptr_t)c->rings;
	uint64_t t0 = now_ns();
	uint32_t turns = 0;
	for (uint32_t ri = 0; ri < c->n_rings; ri++) {
		const struct cd_ring *r = &rings[ri];
		uint8_t *ctl = (uint8_t *)(uintptr_t)r->base;
		uint8_t *data = ctl + CD_PAGE;
		uint64_t *headp = (uint64_t *)(ctl + CD_HEAD);
		uint64_t *tailp = (uint64_t *)(ctl + CD_TAIL);
		uint64_t head = __atomic_load_n(headp, __ATOMIC_ACQUIRE); /* record bytes before head are visible */
		uint64_t tail = *tailp; /* only we write it */
		uint64_t mask = r->size - 1;
		int rc = 0;
		while (tail < head) {
			uint64_t off = tail & mask;
			const uint8_t *h = data + off; /* the 8-byte header never wraps: records are 8-aligned */
			uint32_t type = rd32(h);
			uint32_t size = rd32(h + 4) >> 16;
			if (size < 8) {
				rc = CD_CORRUPT;
				break;
			}
			if (type == PERF_RECORD_SAMPLE && size >= 12) {
				/* u32 raw size, then the program's bytes (raw size counts the padding) */
				uint64_t start = (off + 12) & mask;
				uint32_t len = size - 12;
				const uint8_t *rec = data + start;
				if (start + len > r->size) {
					uint64_t first = r->size - start;
					memcpy(wrap_buf, data + start, first);
					memcpy(wrap_buf + first, data, len - first);
					rec = wrap_buf;
				}
				rc = deliver(c, rec, len);
				if (rc)
					break; /* the record stays: TypeScript resolves and calls again */
				c->samples++;
			} else if (type == PERF_RECORD_LOST) {
				uint64_t lost;
				uint64_t lo = rd32(data + ((off + 16) & mask));
				uint64_t hi = rd32(data + ((off + 20) & mask));
				lost = hi << 32 | lo;
				c->lost += lost;
			}
			tail += size;
			if ((++turns & 255) == 0) {
				/* Space back to the kernel while we work (a long drain of a full ring
				 * would otherwise leave the producer no room until it ends). */
				__atomic_store_n(tailp, tail, __ATOMIC_RELEASE);
				if (now_ns() - t0 > c->budget_ns) {
					rc = CD_BEHIND;
					break;
				}
			}
		}
		__atomic_store_n(tailp, tail, __ATOMIC_RELEASE); /* the space goes back to the kernel */
		if (rc)
			return rc;
	}
	return CD_DONE;
}
