// SPDX-License-Identifier: Apache-2.0
// The application layer's BPF components, deployed into the monitor's pin directory after
// the monitor's (their objects reuse its maps by pin: emon_flows, emon_owners, emon_config,
// emon_hooks, emon_pkt_meta...). Every group is optional: a program the verifier refuses
// leaves that part of L7 off and says why in status; it never stops the daemon.
import type { AttachSpec, ComponentDef } from '../bpf/component.js';

export const L7_PROG = { flow: 'tc_l7_flow', tap: 'tc_l7_tap' } as const;
export const L7_MAP = { events: 'emon_l7_events', stats: 'emon_l7_stats', scratch: 'emon_l7_scratch' } as const;
export const SSL_MAP = { events: 'emon_ssl_events', stats: 'emon_ssl_stats', calls: 'emon_ssl_calls', conns: 'emon_ssl_conns', busy: 'emon_ssl_busy' } as const;

/** Each hooked OpenSSL function with its entry and return programs (bpf/ssl.bpf.c).
 * SSL_write and SSL_read are required; the _ex variants exist from OpenSSL 1.1.1 on. */
export const SSL_FUNCTIONS = [
  { name: 'SSL_write', entry: 'uprobe_ssl_write', ret: 'uretprobe_ssl_write', required: true },
  { name: 'SSL_read', entry: 'uprobe_ssl_read', ret: 'uretprobe_ssl_read', required: true },
  { name: 'SSL_write_ex', entry: 'uprobe_ssl_write_ex', ret: 'uretprobe_ssl_write_ex', required: false },
  { name: 'SSL_read_ex', entry: 'uprobe_ssl_read_ex', ret: 'uretprobe_ssl_read_ex', required: false },
] as const;

/** The socket tracepoints of ssl.bpf.c (the connection's socket, learned during an SSL call). */
export const SSL_SOCKET_PROGS = ['tp_sock_send_length', 'tp_sock_recv_length'] as const;

/** Capabilities as `status.probes` and `probes.disable` name them (`<capability>/<id>`). */
export const L7_CAPABILITY = { flows: 'l7-flows', dnsTap: 'l7-dns-tap', tlsPlaintext: 'tls-plaintext', tlsSocket: 'tls-socket' } as const;

/** bpf/l7.bpf.c: the L7 stage of the classifier's hook chain and the loopback DNS tap. */
export const L7_COMPONENT: ComponentDef = {
  name: 'l7',
  file: 'l7.bpf.o',
  groups: [
    {
      capability: L7_CAPABILITY.flows,
      required: false,
      alternatives: [{ id: 'hook', label: 'classifier hook chain, slot 0 (tc_l7_flow)', attach: [{ prog: L7_PROG.flow, kind: 'tc' }] }],
    },
    {
      capability: L7_CAPABILITY.dnsTap,
      required: false,
      alternatives: [{ id: 'tc-lo', label: 'tc egress lo (tc_l7_tap)', attach: [{ prog: L7_PROG.tap, kind: 'tc' }] }],
    },
  ],
};

const uprobes: AttachSpec[] = SSL_FUNCTIONS.flatMap((f) => [{ prog: f.entry, kind: 'uprobe' as const }, { prog: f.ret, kind: 'uprobe' as const }]);

/** bpf/ssl.bpf.c: OpenSSL plaintext. The uprobes are attached per library file later
 * (l7/ssl/probes.ts); the socket tracepoints at deploy. Without the tracepoints (kernels
 * before 6.3 have no sock:sock_send_length) the plaintext comes without its socket. */
export const SSL_COMPONENT: ComponentDef = {
  name: 'ssl',
  file: 'ssl.bpf.o',
  groups: [
    {
      capability: L7_CAPABILITY.tlsPlaintext,
      required: false,
      alternatives: [{ id: 'uprobe', label: 'uprobes on libssl SSL_write/SSL_read (and _ex), per library file', attach: uprobes }],
    },
    {
      capability: L7_CAPABILITY.tlsSocket,
      required: false,
      alternatives: [{
        id: 'tracepoint',
        label: 'tracepoint sock:sock_send_length + sock_recv_length',
        attach: [
          { prog: SSL_SOCKET_PROGS[0], kind: 'tracepoint', category: 'sock', name: 'sock_send_length' },
          { prog: SSL_SOCKET_PROGS[1], kind: 'tracepoint', category: 'sock', name: 'sock_recv_length' },
        ],
      }],
    },
  ],
};
