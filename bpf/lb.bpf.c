// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The layer-4 load balancer: one XDP program (xdp_lb) on every interface that receives
 * VIP traffic or nat-mode replies. XDP because the decision and the rewrite happen before
 * the kernel allocates an skb, which is what makes an LB on a general-purpose host cheap.
 *
 * Per packet, in order (see dispatch() for TCP/UDP):
 *   1. drop list (source prefixes, protocols/ports/ICMP types)       -> XDP_DROP, counted
 *   2. ICMP errors about translated flows                             -> forwarded/translated
 *   3. a reply to a nat-mode flow (destination port in the NAT range) -> back to the client
 *   4. a port no VIP uses (one array read)                            -> XDP_PASS, untouched
 *   5. a flow in the conn table: its backend, without a VIP lookup
 *   6. a VIP (address, port, protocol): long-lived table, else Maglev; anything else passes
 *   7. next hop from bpf_fib_lookup (cached per backend and CPU); nat: rewrite both ends;
 *      dsr: MACs only; bpf_redirect to the egress interface (see send_out: never XDP_TX)
 *
 * The established path (5, 7) is the forwarding path bench/lb measures: one conn lookup,
 * one backend and one next-hop array read, the rewrite, two per-CPU counters.
 *
 * Why two connection tables: the LRU table (Katran's design) is cheap and survives floods,
 * but the kernel's LRU evicts by approximate recency, so a quiet long-lived flow can lose
 * its entry and, if the Maglev table changed meanwhile, its backend. Flows older than
 * promote_ns are copied into emon_lb_long, a plain hash the LRU cannot touch; the daemon
 * deletes its idle entries. A flood can fill emon_lb_long only with flows that live long,
 * and a full table only stops promotions (counted), never forwarding.
 *
 * NAT design: the client tuple (C:c -> V:v) becomes (L:p -> B:b), where L is the
 * balancer's own address on the egress interface (emon_lb_ifaddr, filled by the daemon;
 * bpf_fib_lookup picks the interface) and p a port from the configured NAT range, chosen
 * by hashing the client tuple and probing. Replies arrive as (B:b -> L:p): emon_lb_nat is
 * keyed by exactly that tuple, so a reply costs one lookup, and a port is free for a
 * backend iff that key is absent (BPF_NOEXIST makes the claim atomic across CPUs).
 * emon_lb_nat is not an LRU: an established flow never loses its reverse entry to
 * pressure; the daemon deletes idle entries. The NAT range must lie outside the
 * balancer's ip_local_port_range so that no local socket uses (L, p).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/net.bpf.h"
#include "lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- maps --------------------------------------------------------------------------- */

/* VIP (address, port, protocol) -> slot, mode, live Maglev table. No prealloc: an update
 * swaps in a new element, so a reader never sees a half-written value (table flips). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_VIPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct emon_lb_vip_key);
	__type(value, struct emon_lb_vip);
} emon_lb_vips SEC(".maps");

/* (slot * 2 + ring) * EMON_LB_RING_SIZE + flow hash % EMON_LB_RING_SIZE -> backend id.
 * Two tables per VIP: the daemon fills the idle one, then flips emon_lb_vips.ring. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_LB_MAX_VIPS * 2 * EMON_LB_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} emon_lb_ring SEC(".maps");

/* backend id -> address, port, state (id 0 is never used) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct emon_lb_backend);
} emon_lb_backend SEC(".maps");

/* client -> VIP tuple -> the backend it is pinned to (LRU: every flow) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMON_LB_MAX_CONNS);
	__type(key, struct emon_lb_flow_key);
	__type(value, struct emon_lb_conn);
} emon_lb_conns SEC(".maps");

/* client -> VIP tuple -> backend, for flows older than promote_ns (never evicted) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_LONG);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct emon_lb_flow_key);
	__type(value, struct emon_lb_conn);
} emon_lb_long SEC(".maps");

/* backend -> balancer tuple of a nat-mode reply -> client and VIP */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_NAT);
	__type(key, struct emon_lb_flow_key);
	__type(value, struct emon_lb_nat);
} emon_lb_nat SEC(".maps");

/* (ifindex, family) -> the balancer's own address there (nat-mode source) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_IFADDRS);
	__type(key, struct emon_lb_if_key);
	__type(value, struct emon_lb_addr);
} emon_lb_ifaddr SEC(".maps");

/* backend id -> per-CPU cached next hop (route, MACs, MTU, nat source address) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct emon_lb_nh);
} emon_lb_nhc SEC(".maps");

/* VIP slot -> per-CPU packet/byte/flow counters */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct emon_lb_ctr);
} emon_lb_vstats SEC(".maps");

/* backend id -> per-CPU packet/byte/flow counters */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct emon_lb_ctr);
} emon_lb_bstats SEC(".maps");

/* enum emon_lb_stat -> per-CPU counter (each CPU owns its slot: no atomics needed) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_lb_stats SEC(".maps");

/* enum emon_lb_drop -> per-CPU count of packets dropped for that reason */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_lb_drops SEC(".maps");

/* destination port (host order) -> number of VIPs on it: TCP/UDP packets to a port no VIP
 * uses pass after this one array read, without the conn and VIP lookups */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} emon_lb_vports SEC(".maps");

/* IPv4 source prefix -> drop rule id */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EMON_LB_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct emon_lb_lpm4);
	__type(value, __u32);
} emon_lb_drop4 SEC(".maps");

/* IPv6 source prefix -> drop rule id */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EMON_LB_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct emon_lb_lpm6);
	__type(value, __u32);
} emon_lb_drop6 SEC(".maps");

/* (family, protocol, port or ICMP type) -> drop rule id */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_RULES);
	__type(key, struct emon_lb_proto_key);
	__type(value, __u32);
} emon_lb_dproto SEC(".maps");

/* drop rule id -> per-CPU packets and bytes it dropped */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_LB_MAX_RULES);
	__type(key, __u32);
	__type(value, struct emon_lb_rule_ctr);
} emon_lb_dcnt SEC(".maps");

/* 0 -> runtime settings (NAT port range, promotion age, which drop tables are in use) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_lb_config);
} emon_lb_cfg SEC(".maps");

/* VIP slot -> everything user space needs to rebuild the VIP after a restart (the data
 * path never reads it; it is here so the pinned maps alone describe the configuration) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct emon_lb_vipcfg);
} emon_lb_vipcfg SEC(".maps");

/* ---- counters ------------------------------------------------------------------------ */

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_lb_stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other CPU writes it */
}

static __always_inline int drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&emon_lb_drops, &reason);

	if (v)
		*v += 1;
	return XDP_DROP;
}

static __always_inline int pass(void)
{
	stat_inc(EMON_LB_STAT_PASS);
	return XDP_PASS;
}

static __always_inline void ctr_add(void *map, __u32 idx, __u32 bytes, bool reply, bool newflow)
{
	struct emon_lb_ctr *c = bpf_map_lookup_elem(map, &idx);

	if (!c)
		return;
	if (reply) {
		c->rpackets += 1;
		c->rbytes += bytes;
	} else {
		c->packets += 1;
		c->bytes += bytes;
	}
	if (newflow)
		c->flows += 1;
}

/* ---- clock ------------------------------------------------------------------------- */

extern unsigned int CONFIG_HZ __kconfig __weak;

/* The per-packet clock (see EMON_LB_TOUCH_NS): jiffies when HZ is known, else coarse ns. */
static __always_inline __u64 tick_now(void)
{
	return CONFIG_HZ ? bpf_jiffies64() : bpf_ktime_get_coarse_ns();
}

/* Ticks per second. */
static __always_inline __u64 tick_hz(void)
{
	return CONFIG_HZ ? CONFIG_HZ : 1000000000ULL;
}

/* ---- checksums (incremental, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')) ------------------
 * One's complement sums do not depend on byte order, so fields are used as loaded. */

static __always_inline __u32 csum_add(__u32 csum, __u32 addend)
{
	__u32 res = csum + addend;

	return res + (res < addend);
}

static __always_inline __u32 csum_diff32(__u32 acc, __u32 from, __u32 to)
{
	return csum_add(csum_add(acc, ~from), to);
}

static __always_inline __u32 csum_diff16(__u32 acc, __u16 from, __u16 to)
{
	return csum_add(csum_add(acc, (__u16)~from), to);
}

static __always_inline __u16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)csum;
}

/* The checksum `check` after the changes accumulated in `diff`. */
static __always_inline __u16 csum_apply(__u16 check, __u32 diff)
{
	return ~csum_fold(csum_add(diff, (__u16)~check));
}

/* Writes a 4-byte address into the packet and accumulates the checksum change. */
static __always_inline __u32 put32(__u32 acc, void *field, __u32 val)
{
	__u32 old = *(__u32 *)field;

	*(__u32 *)field = val;
	return csum_diff32(acc, old, val);
}

static __always_inline __u32 put16(__u32 acc, void *field, __u16 val)
{
	__u16 old = *(__u16 *)field;

	*(__u16 *)field = val;
	return csum_diff16(acc, old, val);
}

/* Writes a 16-byte address (four words) into the packet. */
static __always_inline __u32 put128(__u32 acc, void *field, const void *val)
{
	const __u32 *v = val;

	acc = put32(acc, field, v[0]);
	acc = put32(acc, field + 4, v[1]);
	acc = put32(acc, field + 8, v[2]);
	return put32(acc, field + 12, v[3]);
}

/* Updates a TCP or UDP checksum; UDP over IPv4 may carry none (0) and must keep none,
 * and a computed 0 is sent as 0xffff (RFC 768). */
static __always_inline void l4_csum_update(__u16 *check, __u8 proto, bool v6, __u32 diff)
{
	__u16 c;

	if (proto == IPPROTO_UDP && !v6 && *check == 0)
		return;
	c = csum_apply(*check, diff);
	if (proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	*check = c;
}

/* Decrements the TTL and patches the header checksum (as the kernel's ip_decrease_ttl). */
static __always_inline void ttl_dec4(struct iphdr *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

/* ---- hashing (mirrored in daemon/src/lb/hash.ts) ---------------------------------------- */

static __always_inline __u32 rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' jhash_3words, as in the kernel's <linux/jhash.h>. */
static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* XOR of the address's four words (IPv4: the address itself; the other words are 0). */
static __always_inline __u32 addr_fold(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] ^ w[1] ^ w[2] ^ w[3];
}

static __always_inline __u32 flow_hash(const struct emon_lb_flow_key *k, __u32 seed)
{
	return jhash_3words(addr_fold(k->saddr), addr_fold(k->daddr),
			    (__u32)k->sport | ((__u32)k->dport << 16), seed + k->proto);
}

/* ---- scheduling ---------------------------------------------------------------------- */

struct decision {
	struct emon_lb_conn nc;      /* entry to insert when `insert` is set */
	struct emon_lb_conn *conn;   /* existing entry (NULL for new flows) */
	__u64 tick;                  /* tick_now() of this packet */
	__u32 bid;
	__u16 vslot;                 /* the flow's VIP slot */
	__u8  dsr;                   /* the VIP is in dsr mode */
	__u8  insert;                /* 0: none, 1: new entry (BPF_NOEXIST), 2: replace */
	__u8  touched;               /* existing flow refreshed now: check its NAT entry */
	__u8  _pad[7];
};

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
		else if (err != -17 /* EEXIST */) {
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
		stat_inc(EMON_LB_STAT_CONN_RESCHED);
		how = EMON_LB_HOW_RESCHED;
		d->insert = 2;
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
				d->insert = 1;
				stat_inc(EMON_LB_STAT_LONG_HIT);
				return be;
			}
		}
		if (key->proto == IPPROTO_TCP && !syn)
			stat_inc(EMON_LB_STAT_CONN_MIDFLOW);
		d->insert = 1;
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

	if (!d->insert)
		return false;
	err = bpf_map_update_elem(&emon_lb_conns, key, &d->nc, d->insert == 1 ? BPF_NOEXIST : BPF_ANY);
	if (err && err != -17 /* EEXIST: another CPU inserted the same flow */)
		stat_inc(EMON_LB_STAT_CONN_FAIL);
	else if (d->insert == 1 && !err)
		stat_inc(EMON_LB_STAT_CONN_NEW);
	return d->nc.how != EMON_LB_HOW_RESTORED;
}

/* ---- NAT ----------------------------------------------------------------------------- */

static __always_inline bool nat_same_client(const struct emon_lb_nat *n, const struct emon_lb_flow_key *k)
{
	return n->cport == k->sport && n->vport == k->dport &&
	       addr_eq(n->caddr, k->saddr) && addr_eq(n->vaddr, k->daddr);
}

/* Finds (existing flow) or claims a balancer-side port for the client flow `k` toward
 * backend `be` from balancer address `laddr`. Returns the port (network order) or 0
 * (drop counted). */
static __always_inline __u16 nat_port(const struct emon_lb_flow_key *k, const struct emon_lb_backend *be,
				      const __u8 *laddr, __u32 bid, __u32 vslot, __u16 hint,
				      const struct emon_lb_config *cfg)
{
	struct emon_lb_flow_key rk = {};
	struct emon_lb_nat nv = {};
	struct emon_lb_nat *n;
	__u32 range, h;
	long err;

	__builtin_memcpy(rk.saddr, be->addr, 16);
	__builtin_memcpy(rk.daddr, laddr, 16);
	rk.sport = be->port;
	rk.proto = k->proto;
	rk.family = k->family;

	__builtin_memcpy(nv.caddr, k->saddr, 16);
	__builtin_memcpy(nv.vaddr, k->daddr, 16);
	nv.cport = k->sport;
	nv.vport = k->dport;
	nv.backend = bid;
	nv.vip = vslot;
	nv.last_ns = bpf_ktime_get_coarse_ns();
	nv.touch = tick_now();

	if (cfg->nat_port_max < cfg->nat_port_min) {
		drop(EMON_LB_DROP_NAT_PORTS);
		return 0;
	}
	range = (__u32)cfg->nat_port_max - cfg->nat_port_min + 1;
	h = hint ? bpf_ntohs(hint) - cfg->nat_port_min : flow_hash(k, EMON_LB_NAT_SEED);

	for (int i = 0; i < EMON_LB_NAT_TRIES; i++) {
		__u16 port = bpf_htons((__u16)(cfg->nat_port_min + (h + i) % range));

		rk.dport = port;
		err = bpf_map_update_elem(&emon_lb_nat, &rk, &nv, BPF_NOEXIST);
		if (!err) {
			stat_inc(EMON_LB_STAT_NAT_NEW);
			return port;
		}
		if (err != -17 /* EEXIST */) {
			drop(EMON_LB_DROP_NAT_FULL);
			return 0;
		}
		n = bpf_map_lookup_elem(&emon_lb_nat, &rk);
		if (n && nat_same_client(n, k)) {
			/* Ours already (the conn entry was evicted, or a touch re-checked it). */
			n->last_ns = nv.last_ns;
			n->backend = bid;
			if (!hint)
				stat_inc(EMON_LB_STAT_NAT_REUSE);
			return port;
		}
		stat_inc(EMON_LB_STAT_NAT_COLLIDE);
	}
	drop(EMON_LB_DROP_NAT_PORTS);
	return 0;
}

static __always_inline __u8 *own_addr(__u32 ifindex, __u8 family)
{
	struct emon_lb_if_key k = { .ifindex = ifindex, .family = family };
	struct emon_lb_addr *a = bpf_map_lookup_elem(&emon_lb_ifaddr, &k);

	return a ? a->addr : NULL;
}

/* The port a flow uses on the balancer side: the one already pinned (re-checking its
 * reverse entry when the flow was refreshed, as the daemon may have collected it while
 * the flow was idle), or a new one. */
static __always_inline __u16 nat_port_for(const struct emon_lb_flow_key *k, struct decision *d,
					  const struct emon_lb_backend *be, const __u8 *laddr,
					  __u32 vslot, const struct emon_lb_config *cfg)
{
	__u16 port, have = 0;

	if (d->conn)
		have = d->conn->nat_port;
	else if (d->insert == 1 && d->nc.how == EMON_LB_HOW_RESTORED)
		have = d->nc.nat_port;
	if (have && !d->touched && d->nc.how != EMON_LB_HOW_RESTORED)
		return have;
	port = nat_port(k, be, laddr, d->bid, vslot, have, cfg);
	if (port && d->conn && port != have)
		d->conn->nat_port = port;
	d->nc.nat_port = port;
	return port;
}

/* ---- routing ------------------------------------------------------------------------- */

static __always_inline int fib_drop(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return drop(EMON_LB_DROP_NO_NEIGH);
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return drop(EMON_LB_DROP_FWD_DISABLED);
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return drop(EMON_LB_DROP_TOO_BIG);
	default:
		return drop(EMON_LB_DROP_NO_ROUTE);
	}
}

/* Sends the frame out of `ifindex`. Always bpf_redirect, also back out of the ingress
 * interface, never XDP_TX: on veth, an XDP_TX frame is queued to the peer but the peer's
 * NAPI is only kicked when the peer runs an XDP program itself, so toward a GRO-only peer
 * it waits for unrelated traffic; a redirect is flushed at the end of the NAPI poll. */
static __always_inline int send_out(__u32 ifindex)
{
	long act = bpf_redirect(ifindex, 0);

	if (act != XDP_REDIRECT)
		return drop(EMON_LB_DROP_REDIRECT);
	return act;
}

static __always_inline int xmit_to(struct ethhdr *eth, __u32 ifindex, const __u8 *dmac, const __u8 *smac)
{
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	return send_out(ifindex);
}

static __always_inline int xmit(struct xdp_md *ctx, struct ethhdr *eth, const struct bpf_fib_lookup *fib)
{
	return xmit_to(eth, fib->ifindex, fib->dmac, fib->smac);
}

/* Fills a next-hop cache entry from a successful lookup `fib` (toward `baddr`). The route
 * MTU comes from a second lookup with the largest length (it answers FRAG_NEEDED with the
 * MTU); both run once per backend, CPU and EMON_LB_NH_TTL_NS. */
static __always_inline void nh_fill(struct xdp_md *ctx, struct emon_lb_nh *nh, struct bpf_fib_lookup *fib,
				    const __u8 *baddr, bool v6, const struct emon_lb_config *cfg, __u64 tick)
{
	struct bpf_fib_lookup probe;
	__u8 *laddr;

	nh->ifindex = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->flags = 0;
	if (v6 ? addr_eq(fib->ipv6_dst, baddr) : fib->ipv4_dst == *(__u32 *)baddr)
		nh->flags |= EMON_LB_NH_ONLINK;
	laddr = own_addr(fib->ifindex, v6 ? AF_INET6 : AF_INET);
	if (laddr) {
		__builtin_memcpy(nh->laddr, laddr, 16);
		nh->flags |= EMON_LB_NH_LADDR;
	}
	__builtin_memcpy(&probe, fib, sizeof(probe));
	probe.ifindex = ctx->ingress_ifindex;
	if (v6)
		__builtin_memcpy(probe.ipv6_dst, baddr, 16);
	else
		probe.ipv4_dst = *(__u32 *)baddr;
	probe.tot_len = 0xffff;
	nh->mtu = bpf_fib_lookup(ctx, &probe, sizeof(probe), 0) == BPF_FIB_LKUP_RET_FRAG_NEEDED ? probe.mtu_result : 0xffff;
	nh->gen = cfg->nh_gen;
	nh->expires = tick + tick_hz() * (EMON_LB_NH_TTL_NS / 1000000000ULL);
}

static __always_inline bool nh_usable(const struct emon_lb_nh *nh, const struct emon_lb_config *cfg, __u64 tick, __u32 l3_len)
{
	return nh->ifindex && nh->gen == cfg->nh_gen && tick < nh->expires && l3_len <= nh->mtu;
}

/* ---- ICMP "fragmentation needed" / "packet too big" ---------------------------------------
 * When a packet is larger than the MTU toward its next hop, the balancer answers its sender
 * itself (the sender's address family, quoting the packet as the sender sent it, from the
 * address it sent to), so path MTU discovery works through the translation. The frame is
 * rebuilt in place: head grows by the new headers, tail shrinks to the minimal quote. */

#define TOOBIG4_QUOTE (sizeof(struct iphdr) + 8)
#define TOOBIG6_QUOTE (sizeof(struct ipv6hdr) + 8)

static __always_inline int icmp4_toobig(struct xdp_md *ctx, __u16 mtu)
{
	const int grow = sizeof(struct iphdr) + sizeof(struct icmphdr);
	const int len = sizeof(struct ethhdr) + grow + TOOBIG4_QUOTE;
	void *data, *end;
	struct ethhdr *eth, *old;
	struct iphdr *ip, *orig;
	struct icmphdr *ic;
	__u8 mac[ETH_ALEN];
	__u32 csum;

	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(EMON_LB_DROP_TOO_BIG);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + len > end)
		return drop(EMON_LB_DROP_TOO_BIG);
	eth = data;
	old = data + grow;
	ip = data + sizeof(*eth);
	ic = (void *)(ip + 1);
	orig = (void *)(ic + 1);

	__builtin_memcpy(mac, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(grow + TOOBIG4_QUOTE);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = orig->daddr;
	ip->daddr = orig->saddr;

	ic->type = ICMP_DEST_UNREACH;
	ic->code = ICMP_FRAG_NEEDED;
	ic->checksum = 0;
	ic->un.frag.__unused = 0;
	ic->un.frag.mtu = bpf_htons(mtu);

	csum = bpf_csum_diff(NULL, 0, (__be32 *)ic, sizeof(*ic) + TOOBIG4_QUOTE, 0);
	ic->checksum = ~csum_fold(csum);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0);
	ip->check = ~csum_fold(csum);

	if (bpf_xdp_adjust_tail(ctx, len - (int)(end - data)))
		return drop(EMON_LB_DROP_TOO_BIG);
	stat_inc(EMON_LB_STAT_ICMP_TOOBIG);
	drop(EMON_LB_DROP_TOO_BIG); /* the original packet is gone: count it */
	return send_out(ctx->ingress_ifindex);
}

static __always_inline int icmp6_toobig(struct xdp_md *ctx, __u32 mtu)
{
	const int grow = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	const int len = sizeof(struct ethhdr) + grow + TOOBIG6_QUOTE;
	void *data, *end;
	struct ethhdr *eth, *old;
	struct ipv6hdr *ip, *orig;
	struct icmp6hdr *ic;
	__u8 mac[ETH_ALEN];
	__u32 csum, pseudo[2];

	if (bpf_xdp_adjust_head(ctx, -grow))
		return drop(EMON_LB_DROP_TOO_BIG);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + len > end)
		return drop(EMON_LB_DROP_TOO_BIG);
	eth = data;
	old = data + grow;
	ip = data + sizeof(*eth);
	ic = (void *)(ip + 1);
	orig = (void *)(ic + 1);

	__builtin_memcpy(mac, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);

	*(__u32 *)ip = bpf_htonl(0x60000000); /* version 6, no traffic class, no flow label */
	ip->payload_len = bpf_htons(sizeof(*ic) + TOOBIG6_QUOTE);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = 64;
	__builtin_memcpy(&ip->saddr, &orig->daddr, 16);
	__builtin_memcpy(&ip->daddr, &orig->saddr, 16);

	ic->icmp6_type = ICMPV6_PKT_TOOBIG;
	ic->icmp6_code = 0;
	ic->icmp6_cksum = 0;
	ic->icmp6_dataun.un_data32[0] = bpf_htonl(mtu);

	/* pseudo header: addresses, upper-layer length, next header */
	pseudo[0] = bpf_htonl(sizeof(*ic) + TOOBIG6_QUOTE);
	pseudo[1] = bpf_htonl(IPPROTO_ICMPV6);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)&ip->saddr, 32, 0);
	csum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), csum);
	csum = bpf_csum_diff(NULL, 0, (__be32 *)ic, sizeof(*ic) + TOOBIG6_QUOTE, csum);
	ic->icmp6_cksum = ~csum_fold(csum);

	if (bpf_xdp_adjust_tail(ctx, len - (int)(end - data)))
		return drop(EMON_LB_DROP_TOO_BIG);
	stat_inc(EMON_LB_STAT_ICMP_TOOBIG);
	drop(EMON_LB_DROP_TOO_BIG);
	return send_out(ctx->ingress_ifindex);
}

/* ---- drop list ------------------------------------------------------------------------- */

static __always_inline __u32 proto_bit(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return EMON_LB_CFG_DP_TCP;
	case IPPROTO_UDP:
		return EMON_LB_CFG_DP_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return EMON_LB_CFG_DP_ICMP;
	}
	return EMON_LB_CFG_DP_OTHER;
}

/* Returns true (counted) when a rule matches. `value` is the destination port (TCP/UDP,
 * host order) or the ICMP type. */
static __always_inline bool droplisted(const struct emon_lb_config *cfg, bool v6, const void *saddr,
				       __u8 proto, __u16 value, bool has_value, __u32 l3_len)
{
	struct emon_lb_rule_ctr *rc;
	__u32 *rule = NULL;

	if (!v6 && (cfg->flags & EMON_LB_CFG_DROP4)) {
		struct emon_lb_lpm4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, saddr, 4);
		rule = bpf_map_lookup_elem(&emon_lb_drop4, &k);
	} else if (v6 && (cfg->flags & EMON_LB_CFG_DROP6)) {
		struct emon_lb_lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, saddr, 16);
		rule = bpf_map_lookup_elem(&emon_lb_drop6, &k);
	}
	if (!rule && (cfg->flags & proto_bit(proto))) {
		struct emon_lb_proto_key pk = { .family = v6 ? AF_INET6 : AF_INET, .proto = proto };

		if (has_value) {
			pk.kind = (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) ? EMON_LB_PK_TYPE : EMON_LB_PK_PORT;
			pk.value = value;
			rule = bpf_map_lookup_elem(&emon_lb_dproto, &pk);
		}
		if (!rule) {
			pk.kind = EMON_LB_PK_ANY;
			pk.value = 0;
			rule = bpf_map_lookup_elem(&emon_lb_dproto, &pk);
		}
	}
	if (!rule)
		return false;
	rc = bpf_map_lookup_elem(&emon_lb_dcnt, rule);
	if (rc) {
		rc->packets += 1;
		rc->bytes += l3_len;
	}
	drop(EMON_LB_DROP_DROPLIST);
	return true;
}

/* ---- IPv4 ------------------------------------------------------------------------------ */

static __always_inline struct emon_lb_vip *vip_lookup(const void *daddr, int alen, __u16 dport, __u8 proto, __u8 family)
{
	struct emon_lb_vip_key vk = {};

	__builtin_memcpy(vk.addr, daddr, alen == 4 ? 4 : 16);
	vk.port = dport;
	vk.proto = proto;
	vk.family = family;
	return bpf_map_lookup_elem(&emon_lb_vips, &vk);
}

static __always_inline bool nat_range(const struct emon_lb_config *cfg, __u16 port_be)
{
	__u16 p = bpf_ntohs(port_be);

	return p >= cfg->nat_port_min && p <= cfg->nat_port_max;
}

/* A client packet to a VIP: choose, translate, send. */
static __always_inline int fwd4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *l4,
				__u16 *check, struct emon_lb_flow_key *key, __u32 l3_len, struct decision *d,
				struct emon_lb_backend *be, const struct emon_lb_config *cfg)
{
	struct emon_lb_nh *nh;
	__u32 vslot = d->vslot;
	bool newflow;

	nh = bpf_map_lookup_elem(&emon_lb_nhc, &d->bid);
	if (!nh)
		return drop(EMON_LB_DROP_BAD_BACKEND);
	if (!nh_usable(nh, cfg, d->tick, l3_len)) {
		struct bpf_fib_lookup fib = {};
		int rc;

		fib.family = AF_INET;
		fib.l4_protocol = key->proto;
		fib.sport = key->sport;
		fib.dport = be->port;
		fib.tot_len = l3_len;
		fib.tos = ip->tos;
		fib.ifindex = ctx->ingress_ifindex;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = *(__u32 *)be->addr;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && (ip->frag_off & bpf_htons(IP_DF)))
			return icmp4_toobig(ctx, fib.mtu_result);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		nh_fill(ctx, nh, &fib, be->addr, false, cfg, d->tick);
	}
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);

	if (d->dsr) {
		/* MAC rewrite only works when the backend is the next hop. */
		if (!(nh->flags & EMON_LB_NH_ONLINK))
			return drop(EMON_LB_DROP_DSR_OFFLINK);
	} else {
		__u32 acc, ports = 0;
		__u16 port;

		if (!(nh->flags & EMON_LB_NH_LADDR))
			return drop(EMON_LB_DROP_NO_SNAT_ADDR);
		port = nat_port_for(key, d, be, nh->laddr, vslot, cfg);
		if (!port)
			return XDP_DROP;
		acc = put32(0, &ip->saddr, *(__u32 *)nh->laddr);
		acc = put32(acc, &ip->daddr, *(__u32 *)be->addr);
		ports = put16(0, l4, port);
		ports = put16(ports, l4 + 2, be->port);
		ip->check = csum_apply(ip->check, acc);
		l4_csum_update(check, key->proto, false, csum_add(acc, ports));
	}
	ttl_dec4(ip);
	newflow = commit(key, d);
	ctr_add(&emon_lb_vstats, vslot, l3_len, false, newflow);
	ctr_add(&emon_lb_bstats, d->bid, l3_len, false, newflow);
	return xmit_to(eth, nh->ifindex, nh->dmac, nh->smac);
}

/* A reply from a backend to a nat-mode flow: back to the client, from the VIP. */
static __always_inline int reply4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *l4,
				  __u16 *check, struct emon_lb_nat *n, __u8 proto, __u32 l3_len)
{
	struct bpf_fib_lookup fib = {};
	__u32 acc, ports;
	bool up = false;
	__u64 tick;
	int rc;

	fib.family = AF_INET;
	fib.l4_protocol = proto;
	fib.sport = n->vport;
	fib.dport = n->cport;
	fib.tot_len = l3_len;
	fib.tos = ip->tos;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = *(__u32 *)n->vaddr;
	fib.ipv4_dst = *(__u32 *)n->caddr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && (ip->frag_off & bpf_htons(IP_DF)))
		return icmp4_toobig(ctx, fib.mtu_result); /* to the backend, about its own packet */
	/* The balancer's stack never saw this client (XDP took its packets), so it may not
	 * know its MAC: hand the translated reply to the stack, which resolves the neighbour
	 * and forwards it; the following replies go through XDP again. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		up = true;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);

	acc = put32(0, &ip->saddr, *(__u32 *)n->vaddr);
	acc = put32(acc, &ip->daddr, *(__u32 *)n->caddr);
	ports = put16(0, l4, n->vport);
	ports = put16(ports, l4 + 2, n->cport);
	ip->check = csum_apply(ip->check, acc);
	l4_csum_update(check, proto, false, csum_add(acc, ports));

	tick = tick_now();
	if (tick - n->touch >= tick_hz()) {
		n->touch = tick;
		n->last_ns = bpf_ktime_get_coarse_ns();
	}
	if (!(n->flags & EMON_LB_NAT_REPLIED))
		n->flags |= EMON_LB_NAT_REPLIED; /* written once per flow, not per packet */
	stat_inc(EMON_LB_STAT_NAT_REPLY);
	ctr_add(&emon_lb_vstats, n->vip, l3_len, true, false);
	ctr_add(&emon_lb_bstats, n->backend, l3_len, true, false);
	if (up) {
		stat_inc(EMON_LB_STAT_NEIGH_PASS);
		return XDP_PASS; /* the stack decrements the TTL */
	}
	ttl_dec4(ip);
	return xmit(ctx, eth, &fib);
}

/* Rewrites an ICMP error's quoted packet (IPv4): inner addresses and ports, the inner IP
 * checksum, the inner TCP/UDP checksum when it was quoted, and returns the difference the
 * ICMP checksum must absorb. */
static __always_inline __u32 inner4_rewrite(struct iphdr *in, __u16 *inp, void *end,
					    __u32 saddr, __u16 sport, __u32 daddr, __u16 dport)
{
	__u32 acc, ports, icmp;
	__u16 old, *check;

	acc = put32(0, &in->saddr, saddr);
	acc = put32(acc, &in->daddr, daddr);
	ports = put16(0, &inp[0], sport);
	ports = put16(ports, &inp[1], dport);
	old = in->check;
	in->check = csum_apply(old, acc);
	icmp = csum_diff16(csum_add(acc, ports), old, in->check);
	check = in->protocol == IPPROTO_TCP ? (void *)inp + 16 : (void *)inp + 6;
	if ((void *)(check + 1) <= end) {
		old = *check;
		l4_csum_update(check, in->protocol, false, csum_add(acc, ports));
		icmp = csum_diff16(icmp, old, *check);
	}
	return icmp;
}

/* ICMP errors about translated flows. A: an error about a reply the VIP sent (a router
 * on the client side could not deliver it, or needs it smaller): goes to the flow's
 * backend, in the backend's terms. B: an error from the backend side about a packet the
 * balancer sent there: goes back to the client, in the client's terms. */
static __always_inline int icmp4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip, void *end,
				 const struct emon_lb_config *cfg)
{
	struct icmphdr *ic = (void *)(ip + 1);
	struct bpf_fib_lookup fib = {};
	struct emon_lb_flow_key k = {};
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	struct iphdr *in;
	__u16 *inp;
	__u32 acc, diff;
	int rc;

	if ((void *)(ic + 1) > end)
		return pass();
	if (ic->type != ICMP_DEST_UNREACH && ic->type != ICMP_TIME_EXCEEDED)
		return pass();
	in = (void *)(ic + 1);
	inp = (void *)(in + 1);
	if ((void *)(inp + 4) > end)
		return pass();
	if (in->ihl != 5 || (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP))
		return pass();

	vip = vip_lookup(&in->saddr, 4, inp[0], in->protocol, AF_INET);
	if (vip) {
		/* A: the quoted packet is VIP:v -> client:c; its flow is client:c -> VIP:v. */
		k.family = AF_INET;
		k.proto = in->protocol;
		__builtin_memcpy(k.saddr, &in->daddr, 4);
		__builtin_memcpy(k.daddr, &in->saddr, 4);
		k.sport = inp[1];
		k.dport = inp[0];
		c = bpf_map_lookup_elem(&emon_lb_conns, &k);
		if (!c)
			c = bpf_map_lookup_elem(&emon_lb_long, &k);
		if (!c)
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		be = backend_get(c->backend);
		if (!be || !(be->flags & EMON_LB_BE_IN_USE))
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		fib.family = AF_INET;
		fib.ifindex = ctx->ingress_ifindex;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = *(__u32 *)be->addr;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		if (ip->ttl <= 1)
			return drop(EMON_LB_DROP_TTL);
		if (vip->mode == EMON_LB_MODE_NAT) {
			__u8 *laddr = own_addr(fib.ifindex, AF_INET);

			if (!laddr)
				return drop(EMON_LB_DROP_NO_SNAT_ADDR);
			if (!c->nat_port)
				return drop(EMON_LB_DROP_ICMP_UNKNOWN);
			acc = put32(0, &ip->saddr, *(__u32 *)laddr);
			acc = put32(acc, &ip->daddr, *(__u32 *)be->addr);
			ip->check = csum_apply(ip->check, acc);
			diff = inner4_rewrite(in, inp, end, *(__u32 *)be->addr, be->port, *(__u32 *)laddr, c->nat_port);
			ic->checksum = csum_apply(ic->checksum, diff);
		}
		ttl_dec4(ip);
		stat_inc(EMON_LB_STAT_ICMP_FWD);
		return xmit(ctx, eth, &fib);
	}

	if (!nat_range(cfg, inp[0]))
		return pass();
	/* B: the quoted packet is balancer:p -> backend:b; its reply key is backend -> balancer. */
	k.family = AF_INET;
	k.proto = in->protocol;
	__builtin_memcpy(k.saddr, &in->daddr, 4);
	__builtin_memcpy(k.daddr, &in->saddr, 4);
	k.sport = inp[1];
	k.dport = inp[0];
	n = bpf_map_lookup_elem(&emon_lb_nat, &k);
	if (!n)
		return pass();
	fib.family = AF_INET;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = *(__u32 *)n->vaddr;
	fib.ipv4_dst = *(__u32 *)n->caddr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->ttl <= 1)
		return drop(EMON_LB_DROP_TTL);
	acc = put32(0, &ip->saddr, *(__u32 *)n->vaddr);
	acc = put32(acc, &ip->daddr, *(__u32 *)n->caddr);
	ip->check = csum_apply(ip->check, acc);
	diff = inner4_rewrite(in, inp, end, *(__u32 *)n->caddr, n->cport, *(__u32 *)n->vaddr, n->vport);
	ic->checksum = csum_apply(ic->checksum, diff);
	ttl_dec4(ip);
	stat_inc(EMON_LB_STAT_ICMP_REPLY);
	return xmit(ctx, eth, &fib);
}

/* IPv4 with options or fragments: never balanced (ports may be absent; the rewrite paths
 * assume a 20-byte header). Dropped with a reason when they are VIP traffic. */
static __always_inline int unusual4(struct iphdr *ip, void *end, int reason)
{
	__u32 ihl = ip->ihl * 4;
	__u16 *ports;

	if (ihl < sizeof(*ip) || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return pass();
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return pass(); /* a later fragment: no ports to tell */
	ihl &= 0x3c; /* Mask needed to calm verifier: ihl <= 60. */
	ports = (void *)ip + ihl;
	if ((void *)(ports + 2) > end)
		return pass();
	if (vip_lookup(&ip->daddr, 4, ports[1], ip->protocol, AF_INET))
		return drop(reason);
	return pass();
}


/* ---- IPv6 ------------------------------------------------------------------------------ */

static __always_inline int fwd6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *l4,
				__u16 *check, struct emon_lb_flow_key *key, __u32 l3_len, struct decision *d,
				struct emon_lb_backend *be, const struct emon_lb_config *cfg)
{
	struct emon_lb_nh *nh;
	__u32 vslot = d->vslot;
	bool newflow;

	nh = bpf_map_lookup_elem(&emon_lb_nhc, &d->bid);
	if (!nh)
		return drop(EMON_LB_DROP_BAD_BACKEND);
	if (!nh_usable(nh, cfg, d->tick, l3_len)) {
		struct bpf_fib_lookup fib = {};
		int rc;

		fib.family = AF_INET6;
		fib.l4_protocol = key->proto;
		fib.sport = key->sport;
		fib.dport = be->port;
		fib.tot_len = l3_len;
		fib.flowinfo = *(__u32 *)ip & bpf_htonl(0x0FFFFFFF);
		fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(fib.ipv6_src, &ip->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return icmp6_toobig(ctx, fib.mtu_result);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		nh_fill(ctx, nh, &fib, be->addr, true, cfg, d->tick);
	}
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);

	if (d->dsr) {
		if (!(nh->flags & EMON_LB_NH_ONLINK))
			return drop(EMON_LB_DROP_DSR_OFFLINK);
	} else {
		__u32 acc, ports = 0;
		__u16 port;

		if (!(nh->flags & EMON_LB_NH_LADDR))
			return drop(EMON_LB_DROP_NO_SNAT_ADDR);
		port = nat_port_for(key, d, be, nh->laddr, vslot, cfg);
		if (!port)
			return XDP_DROP;
		acc = put128(0, &ip->saddr, nh->laddr);
		acc = put128(acc, &ip->daddr, be->addr);
		ports = put16(0, l4, port);
		ports = put16(ports, l4 + 2, be->port);
		l4_csum_update(check, key->proto, true, csum_add(acc, ports));
	}
	ip->hop_limit--;
	newflow = commit(key, d);
	ctr_add(&emon_lb_vstats, vslot, l3_len, false, newflow);
	ctr_add(&emon_lb_bstats, d->bid, l3_len, false, newflow);
	return xmit_to(eth, nh->ifindex, nh->dmac, nh->smac);
}

static __always_inline int reply6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *l4,
				  __u16 *check, struct emon_lb_nat *n, __u8 proto, __u32 l3_len)
{
	struct bpf_fib_lookup fib = {};
	__u32 acc, ports;
	bool up = false;
	__u64 tick;
	int rc;

	fib.family = AF_INET6;
	fib.l4_protocol = proto;
	fib.sport = n->vport;
	fib.dport = n->cport;
	fib.tot_len = l3_len;
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, n->vaddr, 16);
	__builtin_memcpy(fib.ipv6_dst, n->caddr, 16);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return icmp6_toobig(ctx, fib.mtu_result);
	/* The balancer's stack never saw this client (XDP took its packets), so it may not
	 * know its MAC: hand the translated reply to the stack, which resolves the neighbour
	 * and forwards it; the following replies go through XDP again. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		up = true;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);

	acc = put128(0, &ip->saddr, n->vaddr);
	acc = put128(acc, &ip->daddr, n->caddr);
	ports = put16(0, l4, n->vport);
	ports = put16(ports, l4 + 2, n->cport);
	l4_csum_update(check, proto, true, csum_add(acc, ports));

	tick = tick_now();
	if (tick - n->touch >= tick_hz()) {
		n->touch = tick;
		n->last_ns = bpf_ktime_get_coarse_ns();
	}
	if (!(n->flags & EMON_LB_NAT_REPLIED))
		n->flags |= EMON_LB_NAT_REPLIED; /* written once per flow, not per packet */
	stat_inc(EMON_LB_STAT_NAT_REPLY);
	ctr_add(&emon_lb_vstats, n->vip, l3_len, true, false);
	ctr_add(&emon_lb_bstats, n->backend, l3_len, true, false);
	if (up) {
		stat_inc(EMON_LB_STAT_NEIGH_PASS);
		return XDP_PASS; /* the stack decrements the TTL */
	}
	ip->hop_limit--;
	return xmit(ctx, eth, &fib);
}

/* As inner4_rewrite, for a quoted IPv6 packet (no header checksum; the TCP/UDP
 * checksum's pseudo header covers the addresses). */
static __always_inline __u32 inner6_rewrite(struct ipv6hdr *in, __u16 *inp, void *end,
					    const void *saddr, __u16 sport, const void *daddr, __u16 dport)
{
	__u32 acc, ports, icmp;
	__u16 old, *check;

	acc = put128(0, &in->saddr, saddr);
	acc = put128(acc, &in->daddr, daddr);
	ports = put16(0, &inp[0], sport);
	ports = put16(ports, &inp[1], dport);
	icmp = csum_add(acc, ports);
	check = in->nexthdr == IPPROTO_TCP ? (void *)inp + 16 : (void *)inp + 6;
	if ((void *)(check + 1) <= end) {
		old = *check;
		l4_csum_update(check, in->nexthdr, true, csum_add(acc, ports));
		icmp = csum_diff16(icmp, old, *check);
	}
	return icmp;
}

static __always_inline int icmp6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip, void *end,
				 const struct emon_lb_config *cfg)
{
	struct icmp6hdr *ic = (void *)(ip + 1);
	struct bpf_fib_lookup fib = {};
	struct emon_lb_flow_key k = {};
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	struct ipv6hdr *in;
	__u16 *inp;
	__u32 acc, diff;
	int rc;

	if ((void *)(ic + 1) > end)
		return pass();
	if (ic->icmp6_type != ICMPV6_DEST_UNREACH && ic->icmp6_type != ICMPV6_PKT_TOOBIG &&
	    ic->icmp6_type != ICMPV6_TIME_EXCEED)
		return pass();
	in = (void *)(ic + 1);
	inp = (void *)(in + 1);
	if ((void *)(inp + 4) > end)
		return pass();
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return pass();

	k.family = AF_INET6;
	k.proto = in->nexthdr;
	__builtin_memcpy(k.saddr, &in->daddr, 16);
	__builtin_memcpy(k.daddr, &in->saddr, 16);
	k.sport = inp[1];
	k.dport = inp[0];

	vip = vip_lookup(&in->saddr, 16, inp[0], in->nexthdr, AF_INET6);
	if (vip) {
		c = bpf_map_lookup_elem(&emon_lb_conns, &k);
		if (!c)
			c = bpf_map_lookup_elem(&emon_lb_long, &k);
		if (!c)
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		be = backend_get(c->backend);
		if (!be || !(be->flags & EMON_LB_BE_IN_USE))
			return drop(EMON_LB_DROP_ICMP_UNKNOWN);
		fib.family = AF_INET6;
		fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(fib.ipv6_src, &ip->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return fib_drop(rc);
		if (ip->hop_limit <= 1)
			return drop(EMON_LB_DROP_TTL);
		if (vip->mode == EMON_LB_MODE_NAT) {
			__u8 *laddr = own_addr(fib.ifindex, AF_INET6);

			if (!laddr)
				return drop(EMON_LB_DROP_NO_SNAT_ADDR);
			if (!c->nat_port)
				return drop(EMON_LB_DROP_ICMP_UNKNOWN);
			/* ICMPv6's checksum covers the outer addresses too (pseudo header). */
			acc = put128(0, &ip->saddr, laddr);
			acc = put128(acc, &ip->daddr, be->addr);
			diff = inner6_rewrite(in, inp, end, be->addr, be->port, laddr, c->nat_port);
			ic->icmp6_cksum = csum_apply(ic->icmp6_cksum, csum_add(acc, diff));
		}
		ip->hop_limit--;
		stat_inc(EMON_LB_STAT_ICMP_FWD);
		return xmit(ctx, eth, &fib);
	}

	if (!nat_range(cfg, inp[0]))
		return pass();
	n = bpf_map_lookup_elem(&emon_lb_nat, &k);
	if (!n)
		return pass();
	fib.family = AF_INET6;
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, n->vaddr, 16);
	__builtin_memcpy(fib.ipv6_dst, n->caddr, 16);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_drop(rc);
	if (ip->hop_limit <= 1)
		return drop(EMON_LB_DROP_TTL);
	acc = put128(0, &ip->saddr, n->vaddr);
	acc = put128(acc, &ip->daddr, n->caddr);
	diff = inner6_rewrite(in, inp, end, n->caddr, n->cport, n->vaddr, n->vport);
	ic->icmp6_cksum = csum_apply(ic->icmp6_cksum, csum_add(acc, diff));
	ip->hop_limit--;
	stat_inc(EMON_LB_STAT_ICMP_REPLY);
	return xmit(ctx, eth, &fib);
}

/* TCP/UDP after parsing, both families. In order of what a balancer sees most:
 * replies to nat-mode flows (their destination port is a NAT port), established flows
 * (the conn table alone decides), then new flows to a VIP. Everything else passes. */
static __always_inline int dispatch(struct xdp_md *ctx, struct ethhdr *eth, void *ip, void *l4, __u16 *check,
				    struct emon_lb_flow_key *key, __u8 tcp_flags, __u32 l3_len,
				    const struct emon_lb_config *cfg, const bool v6)
{
	bool syn = key->proto == IPPROTO_TCP && (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct decision d = { .tick = tick_now() };
	struct emon_lb_backend *be;
	struct emon_lb_conn *c;
	struct emon_lb_vip *vip;
	struct emon_lb_nat *n;
	__u8 *vports;
	__u32 port;

	if (nat_range(cfg, key->dport)) {
		n = bpf_map_lookup_elem(&emon_lb_nat, key);
		if (n)
			return v6 ? reply6(ctx, eth, ip, l4, check, n, key->proto, l3_len)
				  : reply4(ctx, eth, ip, l4, check, n, key->proto, l3_len);
	}
	port = bpf_ntohs(key->dport);
	vports = bpf_map_lookup_elem(&emon_lb_vports, &port);
	if (!vports || !*vports)
		return pass();
	c = bpf_map_lookup_elem(&emon_lb_conns, key);
	if (c) {
		be = established(c, key, cfg, syn, &d);
		if (be)
			goto forward;
	}
	vip = vip_lookup(key->daddr, v6 ? 16 : 4, key->dport, key->proto, key->family);
	if (!vip)
		return pass();
	be = schedule(key, vip, syn, c != NULL, &d);
	if (!be)
		return XDP_DROP;
forward:
	return v6 ? fwd6(ctx, eth, ip, l4, check, key, l3_len, &d, be, cfg)
		  : fwd4(ctx, eth, ip, l4, check, key, l3_len, &d, be, cfg);
}

/* IPv4: drop list, then ICMP errors, or TCP/UDP with a plain 20-byte header to dispatch(). */
static __always_inline int lb_ipv4(struct xdp_md *ctx, struct ethhdr *eth, void *end, const struct emon_lb_config *cfg)
{
	struct iphdr *ip = (void *)(eth + 1);
	struct emon_lb_flow_key key = {};
	__u8 tcp_flags = 0;
	__u16 *ports, *check;
	__u32 l3_len;
	void *l4;

	if ((void *)(ip + 1) > end)
		return pass();
	l3_len = bpf_ntohs(ip->tot_len);
	l4 = ip + 1;

	if (cfg->flags) {
		__u16 value = 0;
		bool has = false;

		if (ip->ihl == 5 && !(ip->frag_off & bpf_htons(IP_OFFSET))) {
			__u8 *t = l4;

			if (ip->protocol == IPPROTO_ICMP && (void *)(t + 1) <= end) {
				value = t[0];
				has = true;
			} else if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && (void *)(t + 4) <= end) {
				value = ((__u16)t[2] << 8) | t[3];
				has = true;
			}
		}
		if (droplisted(cfg, false, &ip->saddr, ip->protocol, value, has, l3_len))
			return XDP_DROP;
	}
	if (ip->ihl != 5)
		return unusual4(ip, end, EMON_LB_DROP_IP_OPTIONS);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return unusual4(ip, end, EMON_LB_DROP_FRAGMENT);

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		tcp_flags = ((__u8 *)th)[13];
		check = &th->check;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return unusual4(ip, end, EMON_LB_DROP_MALFORMED);
		check = &uh->check;
		break;
	}
	case IPPROTO_ICMP:
		return icmp4(ctx, eth, ip, end, cfg);
	default:
		return pass();
	}
	ports = l4;
	key.family = AF_INET;
	key.proto = ip->protocol;
	__builtin_memcpy(key.saddr, &ip->saddr, 4);
	__builtin_memcpy(key.daddr, &ip->daddr, 4);
	key.sport = ports[0];
	key.dport = ports[1];
	return dispatch(ctx, eth, ip, l4, check, &key, tcp_flags, l3_len, cfg, false);
}

/* IPv6: drop list, then ICMPv6 errors, or TCP/UDP right after the fixed header to dispatch(). */
static __always_inline int lb_ipv6(struct xdp_md *ctx, struct ethhdr *eth, void *end, const struct emon_lb_config *cfg)
{
	struct ipv6hdr *ip = (void *)(eth + 1);
	struct emon_lb_flow_key key = {};
	__u8 tcp_flags = 0;
	__u16 *ports, *check;
	__u32 l3_len;
	void *l4;

	if ((void *)(ip + 1) > end)
		return pass();
	l3_len = sizeof(*ip) + bpf_ntohs(ip->payload_len);
	l4 = ip + 1;

	if (cfg->flags) {
		__u8 *t = l4;
		__u16 value = 0;
		bool has = false;

		if (ip->nexthdr == IPPROTO_ICMPV6 && (void *)(t + 1) <= end) {
			value = t[0];
			has = true;
		} else if ((ip->nexthdr == IPPROTO_TCP || ip->nexthdr == IPPROTO_UDP) && (void *)(t + 4) <= end) {
			value = ((__u16)t[2] << 8) | t[3];
			has = true;
		}
		if (droplisted(cfg, true, &ip->saddr, ip->nexthdr, value, has, l3_len))
			return XDP_DROP;
	}

	/* Extension headers (fragments included) are not walked: such packets pass to the
	 * stack, which has no route for the VIP. */
	switch (ip->nexthdr) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return pass();
		tcp_flags = ((__u8 *)th)[13];
		check = &th->check;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return pass();
		check = &uh->check;
		break;
	}
	case IPPROTO_ICMPV6:
		return icmp6(ctx, eth, ip, end, cfg);
	default:
		return pass();
	}
	ports = l4;

	key.family = AF_INET6;
	key.proto = ip->nexthdr;
	__builtin_memcpy(key.saddr, &ip->saddr, 16);
	__builtin_memcpy(key.daddr, &ip->daddr, 16);
	key.sport = ports[0];
	key.dport = ports[1];
	return dispatch(ctx, eth, ip, l4, check, &key, tcp_flags, l3_len, cfg, true);
}

/* Attached (through a pinned bpf_link, native mode where the driver supports it) to every
 * interface that receives VIP traffic or nat-mode replies. */
SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct emon_lb_config *cfg;
	__u32 zero = 0;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&emon_lb_cfg, &zero);
	if (!cfg)
		return XDP_PASS; /* cannot happen: array element 0 always exists */
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return lb_ipv4(ctx, eth, end, cfg);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return lb_ipv6(ctx, eth, end, cfg);
	return XDP_PASS; /* ARP, VLAN-tagged and other frames: not ours */
}
