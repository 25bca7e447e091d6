// SPDX-License-Identifier: Apache-2.0
/* Server for bench/attribution: `workers` forked processes accept on one listening
 * socket and close each connection at once, so that the server side takes the TIME_WAIT
 * and the clients' ports are free again immediately. Prints "ready" once listening;
 * runs until killed (workers die with their parent).
 *
 *   acceptor <ip> <port> <workers>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <ip> <port> <workers>\n", argv[0]);
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	int one = 1, workers = atoi(argv[3]);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || ls < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0) {
		perror("acceptor");
		return 1;
	}
	for (int w = 0; w < workers; w++) {
		if (fork() == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;) {
				int c = accept(ls, NULL, NULL);

				if (c >= 0)
					close(c);
			}
		}
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
