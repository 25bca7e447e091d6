// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Process events: exec (who started what, with which arguments, under which parent) and
 * exit. The daemon keeps a process table from them so that flows name the program and
 * its parent, and `ebpfmonctl events` shows them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "monitor/helpers.bpf.h"
#include "procs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct emon_event_exec *unused_event_exec __attribute__((unused));
struct emon_event_exit *unused_event_exit __attribute__((unused));

/* sched_process_exec fires once the new program is in place, in its context: comm and
 * the argument pages are the new program's. */
SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct emon_config *cfg = config_get();
	struct emon_event_exec *e;
	__u64 uid_gid = bpf_get_current_uid_gid();
	unsigned long arg_start, arg_end, len;
	long n;

	e = event_reserve(sizeof(*e), EMON_EV_EXEC);
	if (!e)
		return 0;
	{
		__u32 tid;

		task_ids(task, &e->tgid, &tid);
	}
	if (!e->tgid) {
		/* not in the daemon's pid namespace: invisible to its users */
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->ppid = parent_tgid(task);
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;

	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
				      (void *)ctx + (ctx->__data_loc_filename & 0xFFFF));
	e->filename_len = n > 0 ? n - 1 : 0;

	e->args_len = 0;
	e->args_truncated = 0;
	if (!cfg || (cfg->flags & EMON_CFG_EXEC_ARGS)) {
		arg_start = BPF_CORE_READ(task, mm, arg_start);
		arg_end = BPF_CORE_READ(task, mm, arg_end);
		len = arg_end > arg_start ? arg_end - arg_start : 0;
		if (len > EMON_ARGS_LEN) {
			len = EMON_ARGS_LEN;
			e->args_truncated = 1;
		}
		/* Mask needed to calm the verifier: len is already <= EMON_ARGS_LEN. */
		len &= (EMON_ARGS_LEN * 2 - 1);
		if (len > EMON_ARGS_LEN)
			len = EMON_ARGS_LEN;
		if (len && !bpf_probe_read_user(e->args, len, (void *)arg_start))
			e->args_len = len;
	}
	stat_inc(EMON_STAT_EXEC_EVENTS);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* sched_process_exit fires per thread; only the thread group leader's exit ends the
 * process as user space knows it. */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct emon_event_exit *e;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if ((__u32)pid_tgid != pid_tgid >> 32)
		return 0;
	e = event_reserve(sizeof(*e), EMON_EV_EXIT);
	if (!e)
		return 0;
	{
		__u32 tid;

		task_ids(task, &e->tgid, &tid);
	}
	if (!e->tgid) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->ppid = parent_tgid(task);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->start_ns = task_start_boottime(task);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	stat_inc(EMON_STAT_EXIT_EVENTS);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
