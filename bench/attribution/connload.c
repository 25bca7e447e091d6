// SPDX-License-Identifier: Apache-2.0
/* Load generator for bench/attribution: `workers` forked processes, each connecting to
 * the server, waiting for the server's close (read() == 0), and closing, in a loop, as
 * fast as it can or paced to rate/workers per second. Bounded by a connection count and
 * a wall-clock limit. Truth: each worker writes the local port of every connection it
 * completed to <outdir>/<pid>.ports (uint16 each, in order), so the bench knows which
 * pid made which connection without asking any tool. The parent prints one JSON line.
 *
 *   connload <server_ip> <port> <workers> <total> <rate_per_s, 0 = max> <max_ms> <outdir>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../lib/clock.h"

#define MAX_WORKERS 64
#define SLOW_CONNECT_NS 200000000ull /* a SYN retransmit or worse */

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000ull, .tv_nsec = t % 1000000000ull };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

struct result {
	uint64_t made, failed, slow;
};

static int worker(const struct sockaddr_in *srv, uint64_t quota, double rate, uint64_t start, uint64_t deadline,
		  const char *outdir, int resfd)
{
	uint16_t *ports = calloc(quota ? quota : 1, sizeof(*ports));
	struct result r = { 0 };
	char path[4096], buf[64];

	if (!ports)
		return 1;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sleep_until(start);
	for (uint64_t i = 0; i < quota; i++) {
		uint64_t t = now_ns();

		if (t > deadline)
			break;
		if (rate > 0) {
			uint64_t due = start + (uint64_t)((double)i * 1e9 / rate);

			if (due > t)
				sleep_until(due);
		}
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in local;
		socklen_t len = sizeof(local);
		uint64_t c0 = now_ns();

		if (fd < 0 || connect(fd, (const struct sockaddr *)srv, sizeof(*srv)) < 0 ||
		    getsockname(fd, (struct sockaddr *)&local, &len) < 0) {
			r.failed++;
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (now_ns() - c0 > SLOW_CONNECT_NS)
			r.slow++;
		/* The server closes first (its side keeps the TIME_WAIT, ours is free at once). */
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
		ports[r.made++] = ntohs(local.sin_port);
	}
	snprintf(path, sizeof(path), "%s/%d.ports", outdir, getpid());
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (out < 0 || write(out, ports, r.made * sizeof(*ports)) != (ssize_t)(r.made * sizeof(*ports)))
		return 1;
	close(out);
	if (write(resfd, &r, sizeof(r)) != sizeof(r))
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: %s <server_ip> <port> <workers> <total> <rate> <max_ms> <outdir>\n", argv[0]);
		return 2;
	}
	struct sockaddr_in srv = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	int workers = atoi(argv[3]);
	uint64_t total = strtoull(argv[4], NULL, 10);
	double rate = atof(argv[5]);
	uint64_t max_ms = strtoull(argv[6], NULL, 10);
	int fds[2];
	pid_t pids[MAX_WORKERS];

	if (inet_pton(AF_INET, argv[1], &srv.sin_addr) != 1 || workers < 1 || workers > MAX_WORKERS || pipe(fds) < 0) {
		fprintf(stderr, "connload: bad arguments\n");
		return 2;
	}
	uint64_t start = now_ns() + 50000000ull; /* every worker starts on the same tick */
	uint64_t deadline = start + max_ms * 1000000ull;

	for (int w = 0; w < workers; w++) {
		uint64_t quota = total / workers + ((uint64_t)w < total % workers);

		pids[w] = fork();
		if (pids[w] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[w] == 0) {
			close(fds[0]);
			_exit(worker(&srv, quota, rate / workers, start, deadline, argv[7], fds[1]));
		}
	}
	close(fds[1]);
	struct result sum = { 0 }, r;
	int bad = 0;

	for (int w = 0; w < workers; w++) {
		int st;

		if (read(fds[0], &r, sizeof(r)) == sizeof(r)) {
			sum.made += r.made;
			sum.failed += r.failed;
			sum.slow += r.slow;
		}
		waitpid(pids[w], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	uint64_t elapsed = now_ns() - start;
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	printf("{\"made\":%llu,\"failed\":%llu,\"slow\":%llu,\"badWorkers\":%d,\"elapsedNs\":%llu,\"cpuUs\":%llu,\"pids\":[",
	       (unsigned long long)sum.made, (unsigned long long)sum.failed, (unsigned long long)sum.slow, bad,
	       (unsigned long long)elapsed,
	       (unsigned long long)(ru.ru_utime.tv_sec * 1000000ull + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000ull + ru.ru_stime.tv_usec));
	for (int w = 0; w < workers; w++)
		printf("%s%d", w ? "," : "", pids[w]);
	printf("]}\n");
	return bad ? 1 : 0;
}
