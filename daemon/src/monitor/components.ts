// SPDX-License-Identifier: Apache-2.0
// The monitor's BPF components and their probes, in load order: flows creates the
// shared maps, sockets, procs, scan and handoff reuse them. Program names match bpf/*.bpf.c.
import type { ComponentDef } from '../bpf/deployment.js';

export const PROG = {
  tcIngress: 'tc_ingress',
  tcEgress: 'tc_egress',
  /** Start-up scan alternatives (bpf/scan.bpf.c), in the order they are tried. */
  scanTaskFile: 'iter_task_sockets',
  scanTaskFileCore: 'iter_task_sockets_core',
  scanInodes: 'iter_task_inodes',
  scanTcp: 'iter_tcp_sockets',
  scanUdp: 'iter_udp_sockets',
  stateChange: 'btf_inet_sock_set_state',
  /** Handles the state changes the kernel skipped the primary for (it never counts as lost). */
  stateChangeBackup: 'btf_inet_sock_set_state_backup',
  /** Sockets that change hands (bpf/handoff.bpf.c), one pair per alternative. */
  handoffBtfSend: 'btf_sock_send_length',
  handoffBtfRecv: 'btf_sock_recv_length',
  handoffFexit: ['fexit_inet_sendmsg', 'fexit_inet6_sendmsg', 'fexit_inet_recvmsg', 'fexit_inet6_recvmsg'],
  handoffTpSend: 'tp_sock_send_length',
  handoffTpRecv: 'tp_sock_recv_length',
} as const;

export const MAP = {
  flows: 'emon_flows',
  owners: 'emon_owners',
  tuples: 'emon_tuples',
  binds: 'emon_binds',
  /** A bit per local port: set once emon_tuples or emon_binds held an owner for it (ownerports.ts). */
  ownerPorts: 'emon_owner_ports',
  frags: 'emon_frags',
  events: 'emon_events',
  stats: 'emon_stats',
  config: 'emon_config',
  ifaces: 'emon_ifaces',
  /** The classifier's hook chain: stage programs by slot, and the per-packet hand-over. */
  hooks: 'emon_hooks',
  pktMeta: 'emon_pkt_meta',
  scanInodes: 'emon_scan_inos',
  handoffs: 'emon_handoffs',
  handoffStats: 'emon_hostats',
  /** Keys of changed flows, and the daemon's epoch for them (monitor/dirty.ts). */
  dirty: 'emon_dirty',
  epoch: 'emon_epoch',
} as const;

export const FLOWS: ComponentDef = {
  name: 'flows',
  file: 'flows.bpf.o',
  groups: [
    {
      capability: 'classifier',
      required: true,
      alternatives: [
        { id: 'tc', label: 'tc clsact ingress+egress', attach: [{ prog: PROG.tcIngress, kind: 'tc' }, { prog: PROG.tcEgress, kind: 'tc' }] },
      ],
    },
  ],
};

/** The same classifier without the dirty-flow ring (bpf/flows_walk.bpf.c): deployed when
 * a kernel refuses flows.bpf.o; the daemon then walks the flow table (monitor/dirty.ts). */
export const FLOWS_WALK: ComponentDef = { ...FLOWS, file: 'flows_walk.bpf.o' };

const cgroup = (prog: string) => ({ prog, kind: 'cgroup' as const });

export const SOCKETS: ComponentDef = {
  name: 'sockets',
  file: 'sockets.bpf.o',
  groups: [
    {
      capability: 'tcp-state',
      required: true,
      alternatives: [
        // A classic tracepoint program is skipped while any other kprobe/tracepoint program
        // runs on the CPU (bpf_prog_active), and TCP closes happen in softirqs that interrupt
        // them: tp_btf first, with a backup for the changes the kernel skips the primary
        // for (bpf/sockets.bpf.c).
        {
          id: 'tp-btf',
          label: 'tp_btf/inet_sock_set_state',
          attach: [{ prog: PROG.stateChange, kind: 'auto' }, { prog: PROG.stateChangeBackup, kind: 'auto' }],
        },
        { id: 'tracepoint', label: 'tracepoint sock:inet_sock_set_state', attach: [{ prog: 'handle_inet_sock_set_state', kind: 'tracepoint', category: 'sock', name: 'inet_sock_set_state' }] },
      ],
    },
    {
      capability: 'socket-owner',
      required: false,
      alternatives: [{ id: 'cgroup', label: 'cgroup/sock_create + cgroup/sock_release', attach: [cgroup('handle_sock_create'), cgroup('handle_sock_release')] }],
    },
    {
      capability: 'connect',
      required: false,
      alternatives: [{ id: 'cgroup', label: 'cgroup/connect4 + cgroup/connect6', attach: [cgroup('handle_connect4'), cgroup('handle_connect6')] }],
    },
    {
      capability: 'udp-send',
      required: false,
      alternatives: [{ id: 'cgroup', label: 'cgroup/sendmsg4 + cgroup/sendmsg6', attach: [cgroup('handle_sendmsg4'), cgroup('handle_sendmsg6')] }],
    },
    {
      capability: 'bind',
      required: false,
      alternatives: [{ id: 'cgroup', label: 'cgroup/post_bind4 + cgroup/post_bind6', attach: [cgroup('handle_post_bind4'), cgroup('handle_post_bind6')] }],
    },
    {
      capability: 'accept',
      required: false,
      alternatives: [
        // Cheapest and most complete (io_uring accepts too), where fexit is allowed.
        { id: 'fexit', label: 'fexit/inet_csk_accept', attach: [{ prog: 'fexit_inet_csk_accept', kind: 'auto' }], requires: { struct: 'proto_accept_arg' } },
        { id: 'fexit-old', label: 'fexit/inet_csk_accept (pre-6.10 signature)', attach: [{ prog: 'fexit_inet_csk_accept_old', kind: 'auto' }], requires: { noStruct: 'proto_accept_arg' } },
        {
          id: 'tracepoint',
          label: 'tracepoint syscalls:sys_exit_accept4 + sys_exit_accept',
          attach: [
            { prog: 'tp_sys_exit_accept4', kind: 'tracepoint', category: 'syscalls', name: 'sys_exit_accept4' },
            { prog: 'tp_sys_exit_accept', kind: 'tracepoint', category: 'syscalls', name: 'sys_exit_accept' },
          ],
        },
      ],
    },
  ],
};

const iter = (prog: string) => ({ prog, kind: 'iter' as const });

/** Labels of the scan alternatives (the monitor runs the one deployed). */
export const SCAN = {
  taskFile: 'iter/task_file',
  taskFileCore: 'iter/task_file (CO-RE reads, no trusted socket pointer)',
  joined: 'iter/tcp + iter/udp joined with iter/task_file by socket inode',
  proc: '/proc/net + /proc/<pid>/fd (user space)',
} as const;

/** Sockets that predate the daemon: run once at every start (bpf/scan.bpf.c). A separate
 * object, so a verifier that refuses a scan program never makes the socket probes reload. */
export const SCAN_COMPONENT: ComponentDef = {
  name: 'scan',
  file: 'scan.bpf.o',
  groups: [
    {
      capability: 'socket-scan',
      required: false,
      alternatives: [
        { id: 'task-file', label: SCAN.taskFile, attach: [iter(PROG.scanTaskFile)] },
        { id: 'task-file-core', label: SCAN.taskFileCore, attach: [iter(PROG.scanTaskFileCore)] },
        { id: 'tcp-udp-iter', label: SCAN.joined, attach: [iter(PROG.scanInodes), iter(PROG.scanTcp), iter(PROG.scanUdp)] },
        // Needs nothing from the verifier: what `ss -p` does.
        { id: 'proc', label: SCAN.proc, attach: [] },
      ],
    },
  ],
};

export const PROCS: ComponentDef = {
  name: 'procs',
  file: 'procs.bpf.o',
  groups: [
    {
      capability: 'exec',
      required: false,
      alternatives: [{ id: 'tracepoint', label: 'tracepoint sched:sched_process_exec', attach: [{ prog: 'handle_exec', kind: 'tracepoint', category: 'sched', name: 'sched_process_exec' }] }],
    },
    {
      capability: 'exit',
      required: false,
      alternatives: [{ id: 'tracepoint', label: 'tracepoint sched:sched_process_exit', attach: [{ prog: 'handle_exit', kind: 'tracepoint', category: 'sched', name: 'sched_process_exit' }] }],
    },
  ],
};

/** Labels of the handoff alternatives (status.handoff.active is one of them). */
export const HANDOFF_PROBE = {
  capability: 'socket-user',
  btf: 'tp_btf/sock_send_length + sock_recv_length',
  fexit: 'fexit/inet_sendmsg, inet6_sendmsg, inet_recvmsg, inet6_recvmsg',
  tracepoint: 'tracepoint sock:sock_send_length + sock:sock_recv_length',
} as const;

/**
 * Sockets that change hands (bpf/handoff.bpf.c): traffic goes to the process that uses a
 * socket when another created, connected, accepted or bound it. Optional: without it,
 * owners keep the creator/connector rule. A separate object, so a verifier that refuses
 * it never makes the socket probes reload.
 */
export const HANDOFF_COMPONENT: ComponentDef = {
  name: 'handoff',
  file: 'handoff.bpf.o',
  groups: [
    {
      capability: HANDOFF_PROBE.capability,
      required: false,
      alternatives: [
        // A trusted socket pointer (direct loads, the cookie helper); Linux 6.3+.
        { id: 'tp-btf', label: HANDOFF_PROBE.btf, attach: [{ prog: PROG.handoffBtfSend, kind: 'auto' }, { prog: PROG.handoffBtfRecv, kind: 'auto' }] },
        // Kernels without those tracepoints that allow fexit (Debian 12's 6.1): the inet ops.
        { id: 'fexit', label: HANDOFF_PROBE.fexit, attach: PROG.handoffFexit.map((prog) => ({ prog, kind: 'auto' as const })) },
        {
          id: 'tracepoint',
          label: HANDOFF_PROBE.tracepoint,
          attach: [
            { prog: PROG.handoffTpSend, kind: 'tracepoint', category: 'sock', name: 'sock_send_length' },
            { prog: PROG.handoffTpRecv, kind: 'tracepoint', category: 'sock', name: 'sock_recv_length' },
          ],
        },
      ],
    },
  ],
};

/** Labels of the flow-read alternatives (status.flowIndex.reads says which one runs). */
export const FLOW_READ = {
  capability: 'flow-read',
  prog: 'read_flows',
  buffer: 'emon_readbuf',
  batch: 'syscall program read_flows: 256 flows per BPF_PROG_TEST_RUN',
  lookup: 'one bpf(BPF_MAP_LOOKUP_ELEM) per flow',
} as const;

/**
 * Flows read by key in batches (bpf/flowread.bpf.c): run on demand, attached nowhere. A
 * separate object reusing only emon_flows' pin, so a verifier that refuses it costs
 * nothing else; the alternative, a lookup syscall per flow, needs no program.
 */
export const FLOW_READ_COMPONENT: ComponentDef = {
  name: 'flowread',
  file: 'flowread.bpf.o',
  groups: [
    {
      capability: FLOW_READ.capability,
      required: false,
      alternatives: [
        { id: 'syscall', label: FLOW_READ.batch, attach: [{ prog: FLOW_READ.prog, kind: 'run' }] },
        { id: 'lookup', label: FLOW_READ.lookup, attach: [] },
      ],
    },
  ],
};

export const MONITOR_COMPONENTS = [FLOWS, SOCKETS, PROCS, SCAN_COMPONENT, HANDOFF_COMPONENT, FLOW_READ_COMPONENT] as const;
