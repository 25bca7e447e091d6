// SPDX-License-Identifier: Apache-2.0
/* bench/l7: HTTP/1.1 exchanges over OpenSSL between two SSL objects joined by a BIO pair
 * in one process (no sockets, no network: what is timed is OpenSSL and whatever is hooked
 * on SSL_write/SSL_read). Prints one line: exchanges, wall ns and CPU ns per exchange (the
 * process's own CPU: uprobe handling is charged to the probed process; wall time also holds
 * the time the consumer of the records took the CPU from it on this 2-core machine).
 *   ssl_loop <cert.pem> <key.pem> <exchanges> */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char REQ[] = "GET /api/v1/items/12345 HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
static char RES[1024 + 128];

static double now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "ssl_loop: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

int main(int argc, char **argv)
{
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;
	BIO *bc, *bs;
	char buf[4096];
	long n;
	int hl;

	if (argc != 4)
		die("usage: ssl_loop cert key exchanges");
	n = atol(argv[3]);
	hl = snprintf(RES, sizeof(RES), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n");
	memset(RES + hl, 'a', 1024);
	sctx = SSL_CTX_new(TLS_server_method());
	cctx = SSL_CTX_new(TLS_client_method());
	if (!sctx || !cctx || SSL_CTX_use_certificate_file(sctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1)
		die("contexts");
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	if (!BIO_new_bio_pair(&bc, 0, &bs, 0))
		die("bio pair");
	SSL_set_bio(cli, bc, bc);
	SSL_set_bio(srv, bs, bs);
	SSL_set_connect_state(cli);
	SSL_set_accept_state(srv);
	for (int i = 0; i < 100 && (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv)); i++) {
		SSL_do_handshake(cli);
		SSL_do_handshake(srv);
	}
	if (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv))
		die("handshake");
	double t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < n; i++) {
		int got = 0, want = hl + 1024;

		if (SSL_write(cli, REQ, sizeof(REQ) - 1) != (int)sizeof(REQ) - 1 || SSL_read(srv, buf, sizeof(buf)) != (int)sizeof(REQ) - 1)
			die("request");
		if (SSL_write(srv, RES, want) != want)
			die("response write");
		while (got < want) {
			int r = SSL_read(cli, buf, sizeof(buf));

			if (r <= 0)
				die("response read");
			got += r;
		}
	}
	double t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	printf("%ld %.1f %.1f\n", n, (t1 - t0) / n, (c1 - c0) / n);
	return 0;
}
