// SPDX-License-Identifier: Apache-2.0
/* Loads a BPF object (nothing pinned or attached; everything is closed on exit) and prints,
 * per program, one JSON line: ELF instructions, the verifier's statistics (log level 4),
 * and the loaded program's translated and JITed sizes. When the load fails, the object is
 * opened again with a full verifier log (level 1) and its last lines are the "error".
 * A C helper rather than koffi: the second kernel's guest (test/e2e/qemu) runs it too,
 * and libbpf's per-program log buffers are one call each here.
 *
 *   verifier-stats OBJECT.bpf.o */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define MAX_PROGS 16
#define STATS_LOG (64 << 10)
#define FULL_LOG (64 << 20)

static char stats[MAX_PROGS][STATS_LOG];

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else if ((unsigned char)*s >= 0x20)
			putchar(*s);
	}
	putchar('"');
}

/* The last `lines` lines of `log`. */
static const char *tail(const char *log, int lines)
{
	const char *p = log + strlen(log);

	while (p > log && (p[-1] == '\n'))
		p--;
	while (p > log && lines > 0) {
		p--;
		if (*p == '\n')
			lines--;
	}
	return p == log ? p : p + 1;
}

static int full_log_error(const char *file)
{
	struct bpf_object *obj = bpf_object__open_file(file, NULL);
	struct bpf_program *p;
	char *log = calloc(1, FULL_LOG);

	if (!obj || !log)
		return 1;
	bpf_object__for_each_program(p, obj) {
		if (bpf_program__autoload(p)) {
			bpf_program__set_log_buf(p, log, FULL_LOG);
			bpf_program__set_log_level(p, 1);
		}
	}
	if (bpf_object__load(obj)) {
		printf("{\"error\":");
		json_str(tail(log, 20));
		printf("}\n");
	}
	bpf_object__close(obj);
	free(log);
	return 1;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *p;
	int n = 0, err;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJECT.bpf.o\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		printf("{\"error\":\"cannot open %s\"}\n", argv[1]);
		return 1;
	}
	bpf_object__for_each_program(p, obj) {
		if (n < MAX_PROGS) {
			bpf_program__set_log_buf(p, stats[n], STATS_LOG);
			bpf_program__set_log_level(p, 4);
		}
		n++;
	}
	err = bpf_object__load(obj);
	n = 0;
	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		unsigned long processed = 0, states = 0, peak = 0, us = 0;
		const char *s;

		if (n >= MAX_PROGS)
			break;
		s = strstr(stats[n], "verification time");
		if (s)
			sscanf(s, "verification time %lu usec", &us);
		s = strstr(stats[n], "processed ");
		if (s)
			sscanf(s, "processed %lu insns (limit %*u) max_states_per_insn %*u total_states %lu peak_states %lu",
			       &processed, &states, &peak);
		if (!err && bpf_program__fd(p) >= 0)
			bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len);
		printf("{\"prog\":");
		json_str(bpf_program__name(p));
		printf(",\"loaded\":%s,\"elfInsns\":%zu,\"processed\":%lu,\"states\":%lu,\"peakStates\":%lu,"
		       "\"verifyUs\":%lu,\"xlatedInsns\":%u,\"jitedBytes\":%u}\n",
		       err ? "false" : "true", bpf_program__insn_cnt(p), processed, states, peak, us,
		       info.xlated_prog_len / 8, info.jited_prog_len);
		n++;
	}
	bpf_object__close(obj);
	return err ? full_log_error(argv[1]) : 0;
}
