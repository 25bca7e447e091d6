// SPDX-License-Identifier: Apache-2.0
// Names shared by every part of the contract: one spelling per concept, on the socket, on
// D-Bus, in `ebpfmonctl --json`, in the configuration and in docs/.
//
// Conventions: points in time are ISO 8601 strings (UTC) named `<what>At`; durations are
// milliseconds named `<what>Ms`; byte and packet counts are `txBytes`/`rxBytes`,
// `txPackets`/`rxPackets` from this host's point of view; a transport protocol is
// `protocol`, an address family `family`.

export const FAMILIES = ['ipv4', 'ipv6'] as const;
export type Family = (typeof FAMILIES)[number];

/** Protocols with a name; any other IP protocol is its number as a string ("47"). */
export const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'udplite'] as const;
export type ProtocolName = (typeof PROTOCOLS)[number];
/** IANA protocol numbers of the named protocols. */
export const PROTOCOL_NUMBERS: Readonly<Record<ProtocolName, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132, udplite: 136 };

/** Who sent a flow's first packet, seen from this host. */
export const DIRECTIONS = ['unknown', 'outbound', 'inbound'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/**
 * How the owner of a socket was learned (bpf/monitor/common.h enum emon_how, in order):
 * the process that created, connected, accepted, bound or first sent on it; `proc` the
 * start-up scan (the socket predates the daemon); `kernel` the kernel's own traffic (no
 * process); `user` the only process that sends and receives on it, though another created,
 * connected, accepted or bound it (socket activation, SCM_RIGHTS, fork: docs/identity.md);
 * `none` not known.
 */
export const ATTRIBUTIONS = ['none', 'socket', 'connect', 'accept', 'bind', 'send', 'proc', 'kernel', 'user'] as const;
export type AttributedBy = (typeof ATTRIBUTIONS)[number];

/** The command shown for the kernel's own traffic (`attributedBy: "kernel"`). */
export const KERNEL_COMM = '[kernel]';

/** TCP socket states (include/net/tcp_states.h numbering, lower case). */
export const TCP_STATES = ['', 'established', 'syn_sent', 'syn_recv', 'fin_wait1', 'fin_wait2', 'time_wait', 'closed', 'close_wait', 'last_ack', 'listen', 'closing', 'syn_recv'] as const;

/** TCP flag names, in the order `tcpFlags` lists them, with their header bits. */
export const TCP_FLAGS = [[0x02, 'SYN'], [0x10, 'ACK'], [0x08, 'PSH'], [0x01, 'FIN'], [0x04, 'RST'], [0x20, 'URG'], [0x40, 'ECE'], [0x80, 'CWR']] as const;
export type TcpFlag = (typeof TCP_FLAGS)[number][1];

/** A probe capability and the alternative that runs (status.probes, status.l7.probes). */
export interface ProbeStatus {
  /** What the probe gives ebpfmon, e.g. `accept`. */
  capability: string;
  /** Label of the alternative in use, or null when none could be used. */
  active: string | null;
  /** Alternatives that were tried before (or instead of) the active one, and why they were not used. */
  inactive: Array<{ label: string; reason: string }>;
}
