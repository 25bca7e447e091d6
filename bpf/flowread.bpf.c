// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Batch reads of the flow table by key (issue 17). The daemon reads the flows the dirty
 * ring reported changed, the flows due for collection and the flows of one pid, each by its
 * key; one bpf(BPF_MAP_LOOKUP_ELEM) per flow costs about 1.8 us on this VM (a syscall alone
 * is about 1 us here), more than the lookup itself. The kernel has no batch lookup by key
 * (BPF_MAP_LOOKUP_BATCH walks buckets), so this program does it: the daemon writes up to
 * EMON_READ_BATCH keys into emon_readbuf (an mmapped array, no copy through a syscall),
 * runs read_flows once with BPF_PROG_TEST_RUN, and reads each slot's value and whether
 * the flow was there from the same pages.
 *
 * A separate object, so a verifier that refuses it costs nothing else: the daemon then
 * reads one flow per lookup syscall, as before (daemon/src/monitor/components.ts,
 * status monitor.flowIndex.reads).
 *
 * Differences from the syscall: a lookup from a program marks an LRU entry referenced (the
 * syscall's does not), so a flow the daemon reads is a little less likely to be the next
 * evicted. The flows read are ones that just changed or are about to be collected. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "monitor/flowmap.bpf.h"

/* Pinned like every monitor map: a change of this layout (or of the batch) is a change of
 * EMON_LAYOUT_VERSION (monitor/common.h). daemon/src/monitor/wire.ts mirrors it (READ_SLOT,
 * READ_BUF, READ_BATCH), checked against this object's BTF by test/unit/layout. */
#define EMON_READ_BATCH 256

/* found: 1 when the flow was there (val holds it), 0 when not. */
struct emon_read_slot {
	struct emon_flow_key key;
	__u32 found;
	__u32 _pad;
	struct emon_flow val;
};

struct emon_readbuf {
	__u32 count;    /* slots to read, set by the daemon */
	__u32 done;     /* slots read, set by the program */
	struct emon_read_slot slots[EMON_READ_BATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct emon_readbuf);
} emon_readbuf SEC(".maps");

SEC("syscall")
int read_flows(void *ctx)
{
	__u32 zero = 0;
	struct emon_readbuf *b = bpf_map_lookup_elem(&emon_readbuf, &zero);
	if (!b)
		return 1;
	__u32 n = b->count;
	__u32 i;
	for (i = 0; i < EMON_READ_BATCH && i < n; i++) {
		struct emon_read_slot *s = &b->slots[i];
		struct emon_flow *v = bpf_map_lookup_elem(&emon_flows, &s->key);
		if (v) {
			__builtin_memcpy(&s->val, v, sizeof(*v));
			s->found = 1;
		} else {
			s->found = 0;
		}
	}
	b->done = i;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
