// SPDX-License-Identifier: Apache-2.0
// The C baseline for bench/flowread: every key of the map (collected with get_next_key,
// untimed) looked up once with bpf(BPF_MAP_LOOKUP_ELEM), in that order; the sum of the
// first 32-bit word of every value (the Node readers must agree), then one JSON line. The
// map fd is inherited from the bench.
//
//   lookup <map_fd> <key_size> <value_size>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include "../lib/clock.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <map_fd> <key_size> <value_size>\n", argv[0]);
		return 2;
	}
	int fd = atoi(argv[1]);
	size_t ks = (size_t)atoi(argv[2]), vs = (size_t)atoi(argv[3]);
	size_t cap = 1 << 16, n = 0;
	uint8_t *keys = malloc(cap * ks), *val = malloc(vs);
	if (!keys || !val)
		return 2;
	uint8_t *prev = NULL;
	while (1) {
		if (n == cap) {
			cap *= 2;
			keys = realloc(keys, cap * ks);
			if (!keys)
				return 2;
		}
		if (bpf_map_get_next_key(fd, prev ? keys + (n - 1) * ks : NULL, keys + n * ks))
			break;
		n++;
		prev = keys;
	}
	uint32_t sum = 0, found = 0;
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < n; i++) {
		if (bpf_map_lookup_elem(fd, keys + i * ks, val) == 0) {
			uint32_t w;
			memcpy(&w, val, 4);
			sum += w;
			found++;
		}
	}
	uint64_t ns = now_ns() - t0;
	printf("{\"entries\":%u,\"sum\":%u,\"ns\":%llu}\n", found, sum, (unsigned long long)ns);
	return 0;
}
