/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The flow table alone, for objects that use no other monitor map (flowread.bpf.c), so
 * that loading them reopens only this pin. maps.bpf.h includes it for the others. */
#ifndef EMON_MONITOR_FLOWMAP_BPF_H
#define EMON_MONITOR_FLOWMAP_BPF_H

#include "flows.h"

/* flow key -> counters and owner of every flow seen on a monitored interface */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct emon_flow_key);
	__type(value, struct emon_flow);
} emon_flows SEC(".maps");

#endif
