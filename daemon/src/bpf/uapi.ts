// SPDX-License-Identifier: Apache-2.0
// Kernel UAPI numbers (include/uapi/linux/bpf.h) used from user space.

export const BPF_MAP_TYPE = {
  HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6,
  LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11, ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13,
  DEVMAP: 14, RINGBUF: 27,
} as const;

export const BPF_PROG_TYPE_NAMES: Record<number, string> = {
  1: 'socket_filter', 2: 'kprobe', 3: 'sched_cls', 4: 'sched_act', 5: 'tracepoint', 6: 'xdp',
  7: 'perf_event', 8: 'cgroup_skb', 9: 'cgroup_sock', 13: 'sock_ops', 17: 'raw_tracepoint',
  18: 'cgroup_sock_addr', 26: 'tracing', 29: 'lsm', 31: 'syscall',
};

export const BPF_LINK_TYPE_NAMES: Record<number, string> = {
  1: 'raw_tracepoint', 2: 'tracing', 3: 'cgroup', 4: 'iter', 5: 'netns', 6: 'xdp',
  7: 'perf_event', 8: 'kprobe_multi', 9: 'struct_ops', 10: 'netfilter', 11: 'tcx',
  12: 'uprobe_multi', 13: 'netkit',
};

/** Map update flags. */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** bpf_enable_stats() type: per-program run_time_ns / run_cnt. */
export const BPF_STATS_RUN_TIME = 0;

/** Test-run flags. */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;

/** enum bpf_attach_type values used with bpf_link_create(). */
export const BPF_TRACE_ITER = 28;
export const BPF_XDP = 37;

/** XDP attach flags. */
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
