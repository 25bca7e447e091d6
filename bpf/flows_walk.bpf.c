// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The classifier without the dirty-flow ring (monitor/helpers.bpf.h dirty_tick): the
 * daemon's fallback when a kernel refuses flows.bpf.o. Not a copy: the same source, one
 * define. With it the daemon walks the flow table for processes.list and the owner index,
 * as before the ring existed (status: monitor.flowIndex.mode). */
#define EMON_NO_DIRTY
#include "flows.bpf.c"
