// SPDX-License-Identifier: Apache-2.0
/* The C baseline for bench/query: opens the daemon's pinned emon_flows by path and walks
 * it with BPF_MAP_LOOKUP_BATCH, `chunk` entries per call, counting the flows whose owner
 * tgid is `pid` (the filter `ebpfmonctl flows --pid` applies; no JSON). One JSON line.
 *
 *   dump <pinned map path> <chunk> <pid>
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include "../lib/clock.h"

#define KEY_SIZE 40
#define VALUE_SIZE 128
#define OWNER_TGID 72 /* struct emon_flow: owner at 72, tgid first */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <pinned map> <chunk> <pid>\n", argv[0]);
		return 2;
	}
	uint64_t t0 = now_ns();
	int fd = bpf_obj_get(argv[1]);
	uint32_t chunk = (uint32_t)atoi(argv[2]), pid = (uint32_t)strtoul(argv[3], NULL, 10);
	uint8_t *keys = calloc(chunk, KEY_SIZE), *vals = calloc(chunk, VALUE_SIZE);
	uint8_t in[KEY_SIZE], out[KEY_SIZE];
	void *inp = NULL;
	uint64_t entries = 0, matched = 0;

	if (fd < 0 || !keys || !vals) {
		fprintf(stderr, "dump: %s: %s\n", argv[1], strerror(fd < 0 ? -fd : ENOMEM));
		return 1;
	}
	for (;;) {
		uint32_t count = chunk;
		int err = bpf_map_lookup_batch(fd, inp, out, keys, vals, &count, NULL);

		if (err && err != -ENOENT) {
			if (err == -ENOSPC) { /* a bucket bigger than the chunk: grow, retry */
				chunk *= 2;
				keys = realloc(keys, (size_t)chunk * KEY_SIZE);
				vals = realloc(vals, (size_t)chunk * VALUE_SIZE);
				if (!keys || !vals)
					return 1;
				continue;
			}
			fprintf(stderr, "dump: bpf_map_lookup_batch: %s\n", strerror(-err));
			return 1;
		}
		for (uint32_t i = 0; i < count; i++) {
			uint32_t tgid;

			memcpy(&tgid, vals + (size_t)i * VALUE_SIZE + OWNER_TGID, sizeof(tgid));
			matched += tgid == pid;
		}
		entries += count;
		if (err == -ENOENT)
			break;
		memcpy(in, out, sizeof(in));
		inp = in;
	}
	printf("{\"entries\":%llu,\"matched\":%llu,\"ns\":%llu}\n", (unsigned long long)entries, (unsigned long long)matched,
	       (unsigned long long)(now_ns() - t0));
	return 0;
}
