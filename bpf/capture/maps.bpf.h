/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The capture path's maps. capture.bpf.o defines them; the daemon pins them with the
 * capture component and passes their fds to the engine program it generates. The monitor's
 * maps (emon_pkt_meta, emon_hooks) come from the classifier's pins. */
#ifndef EMON_CAPTURE_MAPS_BPF_H
#define EMON_CAPTURE_MAPS_BPF_H

#include "capture.h"
#include "monitor/maps.bpf.h"

/* 0 -> this CPU's match mask (engine -> delivery) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emon_cap_state);
} emon_cap_state SEC(".maps");

/* EMON_CAP_PROG_DELIVER -> tc_cap_deliver (the engine tail-calls it when a session matched) */
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

/* session slot -> what delivery and tc_mirror_out do for it */
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

/* session slot -> mirror rate limiter state (shared by the CPUs) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_CAP_SESSIONS);
	__type(key, __u32);
	__type(value, struct emon_cap_rate);
} emon_cap_rate SEC(".maps");

/* session slot -> the session's declaration as user space wrote it (JSON): mirrors are
 * restored from it after a daemon restart. Never read by a program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMON_CAP_SESSIONS);
	__type(key, __u32);
	__type(value, __u8[EMON_CAP_SPEC_BYTES]);
} emon_cap_spec SEC(".maps");

/* CPU -> perf event ring: captured packets (emon_cap_record + bytes), one ring per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
} emon_cap_events SEC(".maps");

#endif /* EMON_CAPTURE_MAPS_BPF_H */
