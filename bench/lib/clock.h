/* SPDX-License-Identifier: Apache-2.0 */
/* CLOCK_MONOTONIC in ns, for the benches' C helpers. */
#ifndef EBPFMON_BENCH_CLOCK_H
#define EBPFMON_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#endif
