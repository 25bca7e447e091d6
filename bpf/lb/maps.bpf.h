/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The load balancer's maps. lb.bpf.o is the only object that declares them; the daemon
 * pins them under <pinPath>/maps/ and reads and writes them through daemon/src/lb/. Keys
 * and values are the structs of lb.h; max_entries are defaults (Deployment mapSizes). */
#ifndef EMON_LB_MAPS_BPF_H
#define EMON_LB_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lb.h"

/* VIP (address, port, protocol) -> slot, mode, live Maglev table */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMON_LB_MAX_VIPS);
	/* An update swaps in a new element: a reader never sees half a value (table flips). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct emon_lb_vip_key);
	__type(value, struct emon_lb_vip);
} emon_lb_vips SEC(".maps");

/* (slot * 2 + ring) * EMON_LB_RING_SIZE + flow hash % EMON_LB_RING_SIZE -> backend id */
struct {
	/* Two tables per VIP: the daemon fills the idle one, then flips emon_lb_vips.ring. */
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

/* destination port (host order) -> number of VIPs on it (0: pass without further lookups) */
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

/* 0 -> runtime settings (NAT port range, promotion age, drop tables in use, next-hop gen) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_lb_config);
} emon_lb_cfg SEC(".maps");

/* VIP slot -> its declaration, for user space to rebuild it after a restart (data path: unused) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct emon_lb_vipcfg);
} emon_lb_vipcfg SEC(".maps");

#endif /* EMON_LB_MAPS_BPF_H */
