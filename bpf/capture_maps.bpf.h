/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The capture path's maps, shared (through pins, as the monitor's are) by the classifier,
 * the generated engine program (which gets their fds) and the delivery program. */
#ifndef EMON_CAPTURE_MAPS_BPF_H
#define EMON_CAPTURE_MAPS_BPF_H

#include "capture.h"

/* 0 -> this CPU's hand-off slot (classifier -> engine -> delivery) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_cap_meta);
} emon_cap_meta SEC(".maps");

/* EMON_CAP_PROG_* -> the engine and the delivery program (empty: no session) */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, EMON_CAP_PROGS);
	__type(key, __u32);
	__type(value, __u32);
} emon_cap_progs SEC(".maps");

/* 0 -> the sessions by kind, and the copy length */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_cap_conf);
} emon_cap_conf SEC(".maps");

/* session slot -> what delivery does for it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_CAP_SESSIONS);
	__type(key, __u32);
	__type(value, struct emon_cap_session);
} emon_cap_sess SEC(".maps");

/* session slot -> per-CPU counters (no atomics: each CPU owns its slot) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMON_CAP_SESSIONS);
	__type(key, __u32);
	__type(value, struct emon_cap_counters);
} emon_cap_stats SEC(".maps");

/* CPU -> perf event ring: captured packets (emon_cap_record + bytes), one ring per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
} emon_cap_events SEC(".maps");

/* captured packets through one shared ring buffer instead (measured alternative, see
 * docs/capture.md) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} emon_cap_ring SEC(".maps");

#endif /* EMON_CAPTURE_MAPS_BPF_H */
