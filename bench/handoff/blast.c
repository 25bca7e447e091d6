// SPDX-License-Identifier: Apache-2.0
// Sends <count> writes of <size> bytes as fast as it can and prints the mean time per call:
//   blast udp <addr> <port> <count> <size>   sendto() on an unconnected UDP socket
//   blast tcp <addr> <port> <count> <size>   write() on a connected TCP socket (TCP_NODELAY off)
// prints {"calls":N,"nsPerCall":X,"pid":P}. The per-call cost of a send hook shows as the
// difference to a run without it (bench/handoff/main.ts).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	static char buf[65536];
	int fd, tcp, count, size;
	long long t0, t1;

	if (argc != 6) {
		fprintf(stderr, "usage: blast udp|tcp <addr> <port> <count> <size>\n");
		return 2;
	}
	tcp = strcmp(argv[1], "tcp") == 0;
	a.sin_port = htons(atoi(argv[3]));
	count = atoi(argv[4]);
	size = atoi(argv[5]);
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1 || size > (int)sizeof(buf))
		return 2;
	fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0 || (tcp && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)) {
		perror("blast");
		return 1;
	}
	t0 = now_ns();
	for (int i = 0; i < count; i++) {
		ssize_t n = tcp ? write(fd, buf, size) : sendto(fd, buf, size, 0, (struct sockaddr *)&a, sizeof(a));

		if (n != size) {
			perror("blast: send");
			return 1;
		}
	}
	t1 = now_ns();
	printf("{\"calls\":%d,\"nsPerCall\":%.1f,\"pid\":%d}\n", count, (double)(t1 - t0) / count, getpid());
	close(fd);
	return 0;
}
