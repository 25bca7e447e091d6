// SPDX-License-Identifier: Apache-2.0
/* The C baseline for bench/query: opens the daemon's pinned emon_flows by path and walks
 * it with BPF_MAP_LOOKUP_BATCH, `chunk` entries per call, counting the flows whose owner
 * tgid is `pid` (the filter `ebpfmonctl flows --pid` applies; no JSON). One JSON line.
 * Key and value sizes come from the map itself; the owner's tgid offset in the value from
 * the bench (daemon/src/monitor/wire.ts), so a layout change cannot leave this behind.
 *
 *   dump <pinned map path> <chunk> <pid> <tgid offset in the value>
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include "../lib/clock.h"

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s <pinned map> <chunk> <pid> <tgid offset>\n", argv[0]);
		return 2;
	}
	uint64_t t0 = now_ns();
	int fd = bpf_obj_get(argv[1]);
	uint32_t chunk = (uint32_t)atoi(argv[2]), pid = (uint32_t)strtoul(argv[3], NULL, 10);
	uint32_t tgid_off = (uint32_t)atoi(argv[4]);
	struct bpf_map_info info = { 0 };
	uint32_t info_len = sizeof(info);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &info_len)) {
		fprintf(stderr, "dump: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	const size_t ks = info.key_size, vs = info.value_size;
	uint8_t *keys = calloc(chunk, ks), *vals = calloc(chunk, vs);
	uint8_t *in = calloc(1, ks), *out = calloc(1, ks);
	void *inp = NULL;
	uint64_t entries = 0, matched = 0;

	if (!keys || !vals || !in || !out || tgid_off + 4 > vs) {
		fprintf(stderr, "dump: out of memory, or tgid offset %u outside a %zu-byte value\n", tgid_off, vs);
		return 1;
	}
	for (;;) {
		uint32_t count = chunk;
		int err = bpf_map_lookup_batch(fd, inp, out, keys, vals, &count, NULL);

		if (err && err != -ENOENT) {
			if (err == -ENOSPC) { /* a bucket bigger than the chunk: grow, retry */
				chunk *= 2;
				keys = realloc(keys, (size_t)chunk * ks);
				vals = realloc(vals, (size_t)chunk * vs);
				if (!keys || !vals)
					return 1;
				continue;
			}
			fprintf(stderr, "dump: bpf_map_lookup_batch: %s\n", strerror(-err));
			return 1;
		}
		for (uint32_t i = 0; i < count; i++) {
			uint32_t tgid;

			memcpy(&tgid, vals + (size_t)i * vs + tgid_off, sizeof(tgid));
			matched += tgid == pid;
		}
		entries += count;
		if (err == -ENOENT)
			break;
		memcpy(in, out, ks);
		inp = in;
	}
	printf("{\"entries\":%llu,\"matched\":%llu,\"ns\":%llu}\n", (unsigned long long)entries, (unsigned long long)matched,
	       (unsigned long long)(now_ns() - t0));
	return 0;
}
