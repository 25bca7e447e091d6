/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Which backend a flow goes to: the VIP lookup, the conn tables (LRU and long-lived), and
 * the VIP's Maglev table for new flows. A decision is recorded only once the packet is
 * sure to leave (commit). */
#ifndef EMON_LB_CONN_BPF_H
#define EMON_LB_CONN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/jhash.bpf.h"
#include "lib/net.bpf.h"
#include "lb.h"
#include "lb/maps.bpf.h"
#include "lb/consts.bpf.h"
#include "lb/structs.bpf.h"
#include "lb/helpers.bpf.h"

/* XOR of the address's four words (IPv4: the address itself; the other words are 0). */
static __always_inline __u32 addr_fold(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] ^ w[1] ^ w[2] ^ w[3];
}

/* The flow hash, mirrored in daemon/src/lb/hash.ts (user space predicts and explains Maglev
 * decisions with it). */
static __always_inline __u32 flow_hash(const struct emon_lb_flow_key *k, __u32 seed)
{
	return jhash_3words(addr_fold(k->saddr), addr_fold(k->daddr),
			    (__u32)k->sport | ((__u32)k->dport << 16), seed + k->proto);
}

/* The VIP a packet to daddr:dport (network order) is for, or NULL. */
static __always_inline struct emon_lb_vip *vip_lookup(const void *daddr, __u16 dport, __u8 proto, const bool v6)
{
	struct emon_lb_vip_key vk = {};

	addr_copy(vk.addr, daddr, v6);
	vk.port = dport;
	vk.proto = proto;
	vk.family = v6 ? AF_INET6 : AF_INET;
	return bpf_map_lookup_elem(&emon_lb_vips, &vk);
}

static __always_inline struct emon_lb_backend *backend_get(__u32 id)
{
	return bpf_map_lookup_elem(&emon_lb_backend, &id);
}

/* A pinned backend stays valid while it exists in the VIP; a new connection attempt (a bare
 * SYN that reuses the tuple) does not go to a draining or failing backend. */
static __always_inline bool backend_usable(const struct emon_lb_backend *be, __u32 slot, bool syn)
{
	if (!(be->flags & EMON_LB_BE_IN_USE) || be->vip != slot)
		return false;
	return !(syn && (be->flags & (EMON_LB_BE_DRAINING | EMON_LB_BE_DOWN)));
}

/* Refreshes last_ns at most once a second, and copies old flows into the long-lived
 * table. Returns true when it refreshed. */
static __always_inline bool conn_touch(struct emon_lb_conn *c, const struct emon_lb_flow_key *key,
				       const struct emon_lb_config *cfg, __u64 tick)
{
	struct emon_lb_conn *l;
	__u64 now;
	long err;

	if (tick - c->touch < tick_hz())
		return false;
	now = bpf_ktime_get_coarse_ns();
	c->touch = tick;
	c->last_ns = now;
	if (c->flags & EMON_LB_CONN_LONG) {
		l = bpf_map_lookup_elem(&emon_lb_long, key);
		if (l) {
			l->last_ns = now;
			l->touch = tick;
			return true;
		}
		c->flags &= ~EMON_LB_CONN_LONG; /* the daemon collected it: promote again */
	}
	if (cfg->promote_ns && now - c->created_ns >= cfg->promote_ns) {
		c->flags |= EMON_LB_CONN_LONG;
		err = bpf_map_update_elem(&emon_lb_long, key, c, BPF_NOEXIST);
		if (!err)
			stat_inc(EMON_LB_STAT_LONG_PROMOTE);
		else if (err != -LB_EEXIST) {
			c->flags &= ~EMON_LB_CONN_LONG;
			stat_inc(EMON_LB_STAT_LONG_FULL);
		}
	}
	return true;
}

/* The fast path: a flow in the conn table keeps its backend without looking the VIP up
 * (the entry names the VIP's slot and mode; the backend slot says whether both still
 * exist). Returns NULL when the entry cannot be used. */
static __always_inline struct emon_lb_backend *
established(struct emon_lb_conn *c, const struct emon_lb_flow_key *key, const struct emon_lb_config *cfg,
	    bool syn, struct decision *d)
{
	struct emon_lb_backend *be = backend_get(c->backend);

	if (!be || !backend_usable(be, c->vip, syn))
		return NULL;
	d->conn = c;
	d->bid = c->backend;
	d->vslot = c->vip;
	d->dsr = (c->flags & EMON_LB_CONN_DSR) != 0;
	d->touched = conn_touch(c, key, cfg, d->tick);
	return be;
}

/* A flow the conn table cannot serve: restored from the long-lived table, or chosen by the
 * VIP's Maglev table. `had_conn`: its LRU entry exists but names a backend it may not use.
 * Returns NULL (drop already counted) when there is no backend. */
static __always_inline struct emon_lb_backend *
schedule(const struct emon_lb_flow_key *key, const struct emon_lb_vip *vip, bool syn, bool had_conn,
	 struct decision *d)
{
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	__u8 how = EMON_LB_HOW_MAGLEV;
	__u32 idx, *id;
	__u64 now;

	d->vslot = vip->slot;
	d->dsr = vip->mode == EMON_LB_MODE_DSR;
	if (had_conn) {
		stat_inc(EMON_LB_STAT_CONN_RESCHEDULED);
		how = EMON_LB_HOW_RESCHED;
		d->insert = LB_INSERT_REPLACE;
	} else {
		c = bpf_map_lookup_elem(&emon_lb_long, key);
		if (c) {
			be = backend_get(c->backend);
			if (be && backend_usable(be, vip->slot, syn)) {
				now = bpf_ktime_get_coarse_ns();
				__builtin_memcpy(&d->nc, c, sizeof(d->nc));
				d->nc.how = EMON_LB_HOW_RESTORED;
				d->nc.last_ns = now;
				d->nc.touch = d->tick;
				c->last_ns = now;
				c->touch = d->tick;
				d->bid = d->nc.backend;
				d->insert = LB_INSERT_NEW;
				stat_inc(EMON_LB_STAT_LONG_HIT);
				return be;
			}
		}
		if (key->proto == IPPROTO_TCP && !syn)
			stat_inc(EMON_LB_STAT_CONN_MIDFLOW_MISS);
		d->insert = LB_INSERT_NEW;
	}

	/* Maglev: the VIP's live table maps the flow hash to a backend. */
	idx = (vip->slot * 2 + (vip->ring & 1)) * EMON_LB_RING_SIZE + flow_hash(key, EMON_LB_FLOW_SEED) % EMON_LB_RING_SIZE;
	id = bpf_map_lookup_elem(&emon_lb_ring, &idx);
	if (!id || !*id) {
		drop(EMON_LB_DROP_NO_BACKEND);
		return NULL;
	}
	be = backend_get(*id);
	if (!be || !(be->flags & EMON_LB_BE_IN_USE)) {
		drop(EMON_LB_DROP_BAD_BACKEND);
		return NULL;
	}
	now = bpf_ktime_get_coarse_ns();
	d->bid = *id;
	d->conn = NULL;
	d->nc.backend = *id;
	d->nc.gen = vip->gen;
	d->nc.created_ns = now;
	d->nc.last_ns = now;
	d->nc.touch = d->tick;
	d->nc.nat_port = 0;
	d->nc.how = how;
	d->nc.flags = d->dsr ? EMON_LB_CONN_DSR : 0;
	d->nc.vip = vip->slot;
	return be;
}

/* Records a decision once the packet is sure to leave (nothing is pinned for a packet
 * the balancer then drops). Returns true for a new flow (a Maglev decision). */
static __always_inline bool commit(const struct emon_lb_flow_key *key, struct decision *d)
{
	long err;

	if (d->insert == LB_INSERT_NONE)
		return false;
	err = bpf_map_update_elem(&emon_lb_conns, key, &d->nc, d->insert == LB_INSERT_NEW ? BPF_NOEXIST : BPF_ANY);
	if (err && err != -LB_EEXIST /* another CPU inserted the same flow */)
		stat_inc(EMON_LB_STAT_CONN_INSERT_FAIL);
	else if (d->insert == LB_INSERT_NEW && !err)
		stat_inc(EMON_LB_STAT_CONN_NEW);
	return d->nc.how != EMON_LB_HOW_RESTORED;
}

#endif /* EMON_LB_CONN_BPF_H */
