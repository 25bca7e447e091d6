// SPDX-License-Identifier: Apache-2.0
// The C baseline for bench/ringbuf: libbpf's ring_buffer consuming the fixture's events,
// checking each one as the TypeScript handler does (sequence in order, check word), until
// SIGTERM; then one last consume and one JSON line. The ring's map fd is inherited.
//
//   consumer <map_fd> timer <interval_us>   ring_buffer__consume() every interval
//   consumer <map_fd> poll                  ring_buffer__poll() (epoll wake-ups)
//   consumer <map_fd> once                  one timed ring_buffer__consume() of what is
//                                           already there (the backlog capacity)
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include "monitor/common.h"
#include "ringbuf_producer.h"

struct tally {
	uint64_t events, bad, gaps, backwards, next_seq;
	int started;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct tally *t = ctx;
	const struct rbp_event *e = data;

	if (len != sizeof(*e) || e->check != (e->seq ^ RBP_CHECK_MAGIC)) {
		t->bad++;
		return 0;
	}
	if (t->started && e->seq != t->next_seq) {
		if (e->seq > t->next_seq)
			t->gaps += e->seq - t->next_seq;
		else
			t->backwards++;
	}
	t->next_seq = e->seq + 1;
	t->started = 1;
	t->events++;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s <map_fd> timer <interval_us> | poll | once\n", argv[0]);
		return 2;
	}
	int fd = atoi(argv[1]);
	int timer = strcmp(argv[2], "timer") == 0;
	long interval_us = argc > 3 ? atol(argv[3]) : 1000;
	struct tally t = {0};
	/* no SA_RESTART: SIGTERM must interrupt epoll_wait and nanosleep */
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct ring_buffer *rb = ring_buffer__new(fd, on_event, &t, NULL);

	if (!rb) {
		fprintf(stderr, "consumer: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	if (strcmp(argv[2], "once") == 0) {
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		int n = ring_buffer__consume(rb);

		clock_gettime(CLOCK_MONOTONIC, &b);
		if (n < 0) {
			fprintf(stderr, "consumer: %s\n", strerror(-n));
			return 1;
		}
		printf("{\"events\":%llu,\"bad\":%llu,\"backwards\":%llu,\"ns\":%lld}\n",
		       (unsigned long long)t.events, (unsigned long long)t.bad, (unsigned long long)t.backwards,
		       (long long)(b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec));
		ring_buffer__free(rb);
		return 0;
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		int n;

		if (timer) {
			struct timespec ts = { .tv_sec = interval_us / 1000000, .tv_nsec = (interval_us % 1000000) * 1000 };

			n = ring_buffer__consume(rb);
			nanosleep(&ts, NULL);
		} else {
			n = ring_buffer__poll(rb, 100);
		}
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "consumer: %s\n", strerror(-n));
			return 1;
		}
	}
	ring_buffer__consume(rb);
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	unsigned long long cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
				    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
	printf("{\"events\":%llu,\"bad\":%llu,\"gaps\":%llu,\"backwards\":%llu,\"nextSeq\":%llu,\"cpuNs\":%llu}\n",
	       (unsigned long long)t.events, (unsigned long long)t.bad, (unsigned long long)t.gaps,
	       (unsigned long long)t.backwards, (unsigned long long)t.next_seq, cpu_ns);
	ring_buffer__free(rb);
	return 0;
}
