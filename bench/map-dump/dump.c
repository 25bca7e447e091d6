// SPDX-License-Identifier: Apache-2.0
// The C baseline for bench/map-dump: one full BPF_MAP_LOOKUP_BATCH walk of a hash map,
// `chunk` entries per call, reading the same words of every entry as the TypeScript
// decode does (so the two checksums must match), then one JSON line. The map fd is
// inherited from the bench.
//
//   dump <map_fd> <key_size> <value_size> <chunk>
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
		fprintf(stderr, "usage: %s <map_fd> <key_size> <value_size> <chunk>\n", argv[0]);
		return 2;
	}
	int fd = atoi(argv[1]);
	uint32_t ks = (uint32_t)atoi(argv[2]), vs = (uint32_t)atoi(argv[3]), chunk = (uint32_t)atoi(argv[4]);
	uint32_t kw = ks / 4, vw = vs / 4;
	uint64_t t0 = now_ns();
	/* Buffers are allocated (and zeroed) inside the timed part, as forEachChunk does. */
	uint8_t *keys = calloc(chunk, ks), *vals = calloc(chunk, vs);
	uint8_t in[64], out[64];
	void *inp = NULL;
	uint64_t entries = 0, calls = 0;
	uint32_t sum = 0;

	if (!keys || !vals || vw < 8 || kw < 1) {
		fprintf(stderr, "dump: bad sizes or out of memory\n");
		return 2;
	}
	for (;;) {
		uint32_t count = chunk;
		int err = bpf_map_lookup_batch(fd, inp, out, keys, vals, &count, NULL);

		calls++;
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
			const uint32_t *k = (const uint32_t *)(keys + (size_t)i * ks);
			const uint32_t *v = (const uint32_t *)(vals + (size_t)i * vs);

			sum += k[0] + k[kw - 1] + v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
		}
		entries += count;
		if (err == -ENOENT)
			break;
		memcpy(in, out, sizeof(in));
		inp = in;
	}
	uint64_t t1 = now_ns();

	printf("{\"entries\":%llu,\"sum\":%u,\"calls\":%llu,\"ns\":%llu}\n", (unsigned long long)entries, sum,
	       (unsigned long long)calls, (unsigned long long)(t1 - t0));
	free(keys);
	free(vals);
	return 0;
}
