// SPDX-License-Identifier: Apache-2.0
// Paced ring-buffer producer for bench/ringbuf: runs the `produce` program of
// test/fixtures/bpf/ringbuf_producer.bpf.c with BPF_PROG_TEST_RUN, `batch` events per
// run, at `rate` events/s (0: as fast as it can) for `duration_ms`, then prints one JSON
// line. The program fd is inherited from the bench (no pins).
//
//   producer <prog_fd> <rate> <batch> <duration_ms>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include "../lib/clock.h"
#include "monitor/common.h"
#include "ringbuf_producer.h"

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s <prog_fd> <rate> <batch> <duration_ms>\n", argv[0]);
		return 2;
	}
	int fd = atoi(argv[1]);
	double rate = atof(argv[2]);
	unsigned batch = (unsigned)atoi(argv[3]);
	uint64_t dur_ns = strtoull(argv[4], NULL, 10) * 1000000ull;
	struct rbp_args args = {0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
	uint64_t calls = 0, events = 0, failed = 0, max_behind = 0;
	/* Pacing by absolute deadlines: a late wake-up is made up by the next runs, so the
	 * long-run rate is the target (or the producer's ceiling, reported as such). */
	double period_ns = rate > 0 ? batch * 1e9 / rate : 0;
	uint64_t t0 = now_ns(), end = t0 + dur_ns, t;

	if (batch == 0 || batch > RBP_MAX_PER_RUN) {
		fprintf(stderr, "batch must be 1..%u\n", RBP_MAX_PER_RUN);
		return 2;
	}
	while ((t = now_ns()) < end) {
		if (period_ns > 0) {
			uint64_t due = t0 + (uint64_t)(calls * period_ns);

			if (due > t) {
				struct timespec ts = { .tv_sec = due / 1000000000ull, .tv_nsec = due % 1000000000ull };

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			} else if (t - due > max_behind) {
				max_behind = t - due;
			}
		}
		args.count = batch;
		int err = bpf_prog_test_run_opts(fd, &opts);

		if (err) {
			fprintf(stderr, "producer: BPF_PROG_TEST_RUN: %s\n", strerror(-err));
			return 1;
		}
		calls++;
		events += batch;
		failed += args.failed;
	}
	printf("{\"calls\":%llu,\"events\":%llu,\"failed\":%llu,\"elapsedNs\":%llu,\"maxBehindNs\":%llu}\n",
	       (unsigned long long)calls, (unsigned long long)events, (unsigned long long)failed,
	       (unsigned long long)(now_ns() - t0), (unsigned long long)max_behind);
	return 0;
}
