/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Small inline helpers shared by the monitor's programs (flows, sockets, procs, scan):
 * counters, settings, owners, events, flow keys. They use the monitor's maps. */
#ifndef EMON_MONITOR_HELPERS_BPF_H
#define EMON_MONITOR_HELPERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "lib/compat.bpf.h"
#include "lib/net.bpf.h"
#include "monitor/maps.bpf.h"

/* A counter every program may bump. Each CPU has its own slot, but one CPU can run two
 * programs nested: a program in a task's context (a socket hook, a state change inside
 * close(), an iterator) is interrupted by a softirq whose program (the classifier, a state
 * change on a received packet) bumps the same counter between the task's load and store,
 * and a plain `+= 1` then loses one of the two. Measured: bench/attribution's `kernel
 * close events` read 99,999 for a phase whose subscriber received all 100,000 close
 * events. An atomic add cannot lose either. */
static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* A counter only the TC classifier bumps, on its per-packet path. TC runs with bottom
 * halves disabled (in a softirq on receive, under rcu_read_lock_bh() on transmit), so no
 * other program runs on this CPU between the load and the store: a plain add is exact
 * and costs no locked instruction per packet. */
static __always_inline void stat_inc_tc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&emon_stats, &idx);

	if (v)
		*v += 1;
}

/* emon_owner_ports: marks a local port before an emon_tuples or emon_binds update, so a
 * classifier that finds the entry also finds the mark. */
static __always_inline void port_mark_owned(__u16 port)
{
	__u32 i = port >> 6;
	__u64 bit = 1ULL << (port & 63);
	__u64 *w = bpf_map_lookup_elem(&emon_owner_ports, &i);

	if (w && !(*w & bit))
		__sync_fetch_and_or(w, bit);
}

/* false only when neither emon_tuples nor emon_binds ever held an owner for the port: no
 * mark in the kernel's word or the daemon's. */
static __always_inline bool port_maybe_owned(__u16 port)
{
	__u32 i = port >> 6, u = i + EMON_OWNER_PORT_WORDS;
	__u64 bit = 1ULL << (port & 63);
	__u64 *w = bpf_map_lookup_elem(&emon_owner_ports, &i);

	if (!w || (*w & bit))
		return true;
	w = bpf_map_lookup_elem(&emon_owner_ports, &u);
	return !w || (*w & bit);
}

static __always_inline struct emon_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emon_config, &zero);
}

/* True when a socket in the network namespace with this cookie should be tracked. */
static __always_inline bool netns_tracked(__u64 netns_cookie)
{
	struct emon_config *cfg = config_get();

	return !cfg || !cfg->netns_cookie || cfg->netns_cookie == netns_cookie;
}

/* Pid namespaces a pid can be nested in that we look through (the kernel allows 32). */
#define MAX_PIDNS_LEVELS 8

/* A struct pid's number in the pid namespace with inode `inum`; 0 when not visible there.
 * The daemon may run in a container with its own pid namespace (systemd-nspawn, a pod
 * without hostPID): its users know the pids of that namespace, not the kernel's global
 * ones. (bpf_get_ns_current_pid_tgid would do this, but cgroup programs only have it from
 * Linux 6.10.) */
static __always_inline __u32 pid_nr_in_ns(struct pid *pid, __u32 inum)
{
	unsigned int level = BPF_CORE_READ(pid, level);
	__u64 base = bpf_core_field_offset(struct pid, numbers);

	for (int i = 0; i < MAX_PIDNS_LEVELS; i++) {
		struct upid up;

		if (i > level)
			break;
		if (bpf_probe_read_kernel(&up, sizeof(up), (void *)pid + base + i * sizeof(struct upid)))
			break;
		if (BPF_CORE_READ(up.ns, ns.inum) == inum)
			return up.nr;
	}
	return 0;
}

/* tgid and pid of `task` for the daemon: global numbers, or those of its pid namespace. */
static __always_inline void task_ids(struct task_struct *task, __u32 *tgid, __u32 *tid)
{
	struct emon_config *cfg = config_get();

	if (!cfg || !cfg->pidns_inum) {
		*tgid = BPF_CORE_READ(task, tgid);
		*tid = BPF_CORE_READ(task, pid);
		return;
	}
	*tgid = pid_nr_in_ns(BPF_CORE_READ(task, group_leader, thread_pid), cfg->pidns_inum);
	*tid = pid_nr_in_ns(BPF_CORE_READ(task, thread_pid), cfg->pidns_inum);
}

/* The process id of `task`'s parent, numbered like task_ids(). */
static __always_inline __u32 parent_tgid(struct task_struct *task)
{
	__u32 tgid, tid;

	task_ids(BPF_CORE_READ(task, real_parent), &tgid, &tid);
	return tgid;
}

/* Fills `o` with the current task; callable from any process-context hook. */
static __always_inline void owner_from_current(struct emon_owner *o, __u8 how)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct emon_config *cfg = config_get();

	o->tgid = pid_tgid >> 32;
	o->pid = (__u32)pid_tgid;
	if (cfg && cfg->pidns_inum)
		task_ids((struct task_struct *)bpf_get_current_task(), &o->tgid, &o->pid);
	o->uid = (__u32)uid_gid;
	o->gid = uid_gid >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->learned_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	o->how = how;
}

static __always_inline void *event_reserve(__u32 size, __u16 type)
{
	struct emon_event_hdr *h = bpf_ringbuf_reserve(&emon_events, size, 0);

	if (!h) {
		stat_inc(EMON_STAT_RINGBUF_FULL);
		return NULL;
	}
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = bpf_ktime_get_boot_ns();
	return h;
}

/* What a close record takes from the connection's flow: its counts, interface, direction and
 * owner (the socket's close, sockets.bpf.c emit_close(), and the classifier's inferred one,
 * flows.bpf.c emit_inferred_close()). */
static __always_inline void close_from_flow(struct emon_event_close *e, const struct emon_flow *f)
{
	e->tx_bytes = f->tx_bytes;
	e->rx_bytes = f->rx_bytes;
	e->tx_packets = f->tx_packets;
	e->rx_packets = f->rx_packets;
	e->ifindex = f->ifindex;
	e->direction = f->direction;
	e->flow_seen = 1;
	__builtin_memcpy(&e->owner, &f->owner, sizeof(e->owner));
}

/* Flow key of a TCP/UDP socket from its struct sock; IPv4-mapped IPv6 sockets are
 * keyed as IPv4, like the packets they send. Returns false for other families. */
static __always_inline bool flow_key_from_sk(struct sock *sk, __u8 proto, struct emon_flow_key *k)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(k, 0, sizeof(*k));
	k->proto = proto;
	k->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	k->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		k->family = AF_INET;
		BPF_CORE_READ_INTO((__u32 *)k->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)k->raddr, sk, __sk_common.skc_daddr);
		return true;
	}
	if (family != AF_INET6)
		return false;
	BPF_CORE_READ_INTO(k->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	BPF_CORE_READ_INTO(k->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	if (ipv6_is_v4mapped(k->raddr) || (ipv6_is_v4mapped(k->laddr) && !*(__u64 *)k->raddr && !*(__u64 *)(k->raddr + 8))) {
		k->family = AF_INET;
		__builtin_memcpy(k->laddr, k->laddr + 12, 4);
		__builtin_memcpy(k->raddr, k->raddr + 12, 4);
		__builtin_memset(k->laddr + 4, 0, 12);
		__builtin_memset(k->raddr + 4, 0, 12);
		return true;
	}
	k->family = AF_INET6;
	return true;
}

/* The dirty-flow ring (issue 17). The daemon keeps, per flow, the counts it last read and
 * per-owner totals; the kernel tells it which flows to read again:
 *  - every change that is not a packet's counts (a flow created or reopened, its owner
 *    filled in or moved, its socket closed) pushes the key (dirty_mark), unless the flow
 *    was already pushed in this epoch (its stamp at or after it);
 *  - a packet pushes the key when it moves the flow's stamp (last_ns, set at most once a
 *    tick per flow) from before the daemon's epoch to at or after it (dirty_tick): at most
 *    once per flow per epoch, and only on the once-a-tick path, so a packet within the
 *    flow's current tick costs nothing more.
 * The daemon moves the epoch to the next tick before each read and waits for that tick,
 * so counts added within an epoch after the flow's push are read at the next refresh
 * (daemon/src/monitor/dirty.ts has the argument). A push the ring cannot take counts
 * EMON_STAT_DIRTY_RING_FULL and the daemon walks the table once. Epoch 0: no daemon keeps
 * the ring; nothing is pushed. EMON_NO_DIRTY builds the classifier without any of it
 * (flows_walk.bpf.c, the daemon's fallback). */
static __always_inline __u64 dirty_epoch(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&emon_epoch, &zero);

	return g ? *g : 0;
}

static __always_inline void dirty_push(const struct emon_flow_key *k, __u64 stamp)
{
	struct emon_dirty_rec *r = bpf_ringbuf_reserve(&emon_dirty, sizeof(*r), 0);

	if (!r) {
		stat_inc(EMON_STAT_DIRTY_RING_FULL);
		return;
	}
	__builtin_memcpy(&r->key, k, sizeof(*k));
	r->stamp = stamp;
	/* No wakeup while the ring is under a quarter full: the daemon drains it before each
	 * read, so an idle daemon is not woken per new flow. From a quarter on, every push
	 * wakes the reader (dirty.ts polls the ring), which empties it long before it fills. */
	bpf_ringbuf_submit(r, bpf_ringbuf_query(&emon_dirty, BPF_RB_AVAIL_DATA) >= EMON_DIRTY_WAKE_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* A change other than counts (see above) to a flow whose stamp was `last` (0: a new flow).
 * A flow whose stamp is already at or after the epoch was pushed in this epoch (the stamp
 * moves there only through a push: its creation, a reopen, or dirty_tick), so that push's
 * key, still to be read or carried to the next refresh because its stamp is >= the epoch,
 * covers this change as it covers later counts: no second push. A flow made and closed
 * between two refreshes is pushed once, not twice (bench/attribution: one record per
 * connection instead of two). */
static __always_inline void dirty_mark(const struct emon_flow_key *k, __u64 last, __u64 stamp)
{
#ifndef EMON_NO_DIRTY
	__u64 g = dirty_epoch();

	if (g && last < g)
		dirty_push(k, stamp);
#endif
}

/* A packet moved the flow's stamp from `old` to `now` (once a tick per flow). */
static __always_inline void dirty_tick(const struct emon_flow_key *k, __u64 old, __u64 now)
{
#ifndef EMON_NO_DIRTY
	__u64 g = dirty_epoch();

	if (old < g && g <= now)
		dirty_push(k, now);
#endif
}

/* Fills in the owner of an existing flow (the join, done in the kernel). */
static __always_inline void flow_patch_owner(const struct emon_flow_key *k, const struct emon_owner *o, bool overwrite)
{
	struct emon_flow *f = bpf_map_lookup_elem(&emon_flows, k);

	if (f && (overwrite || !f->owner.how)) {
		__builtin_memcpy(&f->owner, o, sizeof(*o));
		stat_inc(EMON_STAT_FLOWS_PATCHED);
		dirty_mark(k, f->last_ns, 0);
	}
}

#endif /* EMON_MONITOR_HELPERS_BPF_H */
