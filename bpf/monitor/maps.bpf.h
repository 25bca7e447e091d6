/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The monitor's maps. flows, sockets and procs objects all include this header; the
 * daemon creates each map once, pins it under <pinPath>/maps/, and every object reuses
 * the pinned map, so the classifier and the socket probes share one set of tables.
 * max_entries here are defaults; the daemon sets them from its configuration. */
#ifndef EMON_MONITOR_MAPS_BPF_H
#define EMON_MONITOR_MAPS_BPF_H

#include "monitor/common.h"
#include "flows.h"
#include "sockets.h"

#include "monitor/flowmap.bpf.h"

/* socket cookie -> owner (creator, connector or sender of the socket) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct emon_owner);
} emon_owners SEC(".maps");

/* flow key -> owner, for sockets whose tuple is known before or without a packet
 * (accepted connections, sockets found by the start-up scan) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct emon_flow_key);
	__type(value, struct emon_owner);
} emon_tuples SEC(".maps");

/* local endpoint (listening or bound socket) -> owner */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct emon_endpoint);
	__type(value, struct emon_owner);
} emon_binds SEC(".maps");

/* Local ports emon_tuples or emon_binds ever held an owner for, a bit per port, never
 * cleared (bpf/sockets.h EMON_OWNER_PORT_WORDS: the kernel's words, then the daemon's;
 * 16 KiB): lets resolve_owner() skip those two tables for a port neither ever held
 * (forwarded traffic, a connection whose socket the hooks did not see), the new-flow path's
 * costliest misses. Every writer of either table marks the port first: accept, post_bind
 * and the start-up scan here, the daemon's /proc scan and its pass over both tables at
 * every start (daemon/src/monitor/ownerports.ts). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * EMON_OWNER_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} emon_owner_ports SEC(".maps");

/* first fragment's ports, so later fragments join their flow */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct emon_frag_key);
	__type(value, struct emon_frag_ports);
} emon_frags SEC(".maps");

/* connect, accept, close, exec and exit events for the daemon */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} emon_events SEC(".maps");

/* Keys of flows that changed since the daemon last read them (struct emon_dirty_rec; see
 * dirty_tick in monitor/helpers.bpf.h): lets `processes.list`, `top` and the owner index read
 * only those flows instead of the whole table. Written without wakeups until it holds
 * EMON_DIRTY_WAKE_BYTES: the daemon drains it before each read, and when woken
 * (daemon/src/monitor/dirty.ts). */
#define EMON_DIRTY_RING_BYTES (1 << 20)
#define EMON_DIRTY_WAKE_BYTES (EMON_DIRTY_RING_BYTES / 4)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EMON_DIRTY_RING_BYTES);
} emon_dirty SEC(".maps");

/* 0 -> the daemon's dirty epoch: a CLOCK_MONOTONIC_COARSE time in ns; a flow whose stamp
 * (last_ns) moves from before it to at or after it is pushed to emon_dirty. 0: the daemon
 * keeps no dirty ring (it walks the table), nothing is pushed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} emon_epoch SEC(".maps");

/* enum emon_stat -> per-CPU counter (no atomics needed: each CPU owns its slot) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} emon_stats SEC(".maps");

/* ifindex % EMON_IFACE_SLOTS -> link-layer header length of that interface (written by
 * the daemon when it attaches the classifier; lets the classifier read headers directly) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_IFACE_SLOTS);
	__type(key, __u32);
	__type(value, struct emon_iface);
} emon_ifaces SEC(".maps");

/* 0 -> runtime settings written by the daemon */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_config);
} emon_config SEC(".maps");

/* EMON_HOOK_SLOT_* -> the stage program of the classifier's hook chain (L7, capture):
 * written by the daemon when a feature's program is loaded, cleared when it is switched off.
 * An empty slot makes the tail call fall through: the classifier then runs alone. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, EMON_HOOK_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} emon_hooks SEC(".maps");

/* 0 -> the packet at hand, as the classifier parsed it, for the stages (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_pkt_meta);
} emon_pkt_meta SEC(".maps");

#endif /* EMON_MONITOR_MAPS_BPF_H */
