/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Process events: exec and exit (bpf/procs.bpf.c), so that flows can name the program
 * and its parent, and `ebpfmonctl events` can show them. */
#ifndef EMON_PROCS_H
#define EMON_PROCS_H

#include "monitor/common.h"

#define EMON_FILENAME_LEN 256
#define EMON_ARGS_LEN     256  /* first arguments, NUL-separated, truncated */

/* EMON_EV_EXEC */
struct emon_event_exec {
	struct emon_event_hdr hdr;
	__u32 tgid;
	__u32 ppid;         /* parent's tgid */
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char  comm[EMON_COMM_LEN];
	__u16 filename_len; /* bytes used in filename, NUL excluded */
	__u16 args_len;     /* bytes used in args */
	__u8  args_truncated;
	__u8  _pad[3];
	char  filename[EMON_FILENAME_LEN];
	char  args[EMON_ARGS_LEN];
};

/* EMON_EV_EXIT: a process (thread group leader) exited. */
struct emon_event_exit {
	struct emon_event_hdr hdr;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 exit_code;    /* exit status (code << 8 | signal), as wait(2) reports it */
	__u64 start_ns;     /* process start, CLOCK_BOOTTIME */
	char  comm[EMON_COMM_LEN];
};

#endif /* EMON_PROCS_H */
