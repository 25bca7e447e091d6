// SPDX-License-Identifier: Apache-2.0
// PROPOSED contract types for capture and mirror sessions (issue 13), for the lead to move
// into the single contract module when the API is wired. Types and constants only; nothing
// here is registered anywhere yet. Field names follow the house rule "one name per
// concept": `pid` is a process id (tgid), `interface` an interface name, `direction`
// 'in' | 'out' as in flows, counters named as in bpf/capture.h (emon_cap_counters).

// --- selectors, shared by capture and mirror ----------------------------------------------

export interface SessionSelector {
  /** Process ids (every thread of each). A user may name only their own processes. */
  pids?: number[];
  /** Command names as the kernel keeps them (comm, at most 15 bytes). */
  comms?: string[];
  /** A user name or a uid. */
  user?: string | number;
  /** A systemd unit (expanded to its cgroup and the cgroups below it when the session starts). */
  unit?: string;
  /** A cgroup v2 path, relative to the cgroup2 mount (e.g. "/system.slice/nginx.service"). */
  cgroup?: string;
  /** Interface names; absent or empty: every monitored interface. */
  interfaces?: string[];
  direction?: 'in' | 'out';
  /** pcap-filter(7) expression, as tcpdump takes it; '' or absent: every packet. */
  expression?: string;
}

// --- capture ----------------------------------------------------------------------------

/** capture.start: the daemon streams pcapng to the connection that asked (or to the file
 * descriptor the client passed), until capture.stop, the count, the duration, or the
 * client going away. */
export interface CaptureStartParams extends SessionSelector {
  /** Bytes kept of each packet (tcpdump -s); default 262144. */
  snaplen?: number;
  /** Stop after this many packets (-c). */
  count?: number;
  /** Stop after this many seconds (--duration). */
  durationSec?: number;
  /** Interface Statistics Blocks while streaming, every this many seconds (default 5; 0: only at the end). */
  statsIntervalSec?: number;
}

export interface CaptureStartResult {
  session: string; // opaque id, e.g. "cap-7"
  /** What was resolved from the selector, as the kernel will use it. */
  pids: number[];
  uids: number[];
  cgroupIds: string[]; // u64 as decimal strings
  interfaces: Array<{ name: string; ifindex: number; linkType: 'ethernet' | 'raw' }>;
  /** Link types on which the expression does not exist (e.g. `arp` on a tun device): those interfaces never match. */
  expressionMissingOn: string[];
  snaplen: number;
}

export interface CaptureStopParams {
  session: string;
}

/** Counters of one session (also in capture.stats, status and the final ISB). */
export interface SessionCounters {
  /** Packets the selectors and the expression accepted. */
  matched: number;
  matchedBytes: number;
  /** Capture: copies committed to the kernel ring. Mirror: clones sent. */
  delivered: number;
  deliveredBytes: number;
  /** Capture: copies the kernel could not make (ring full: the reader was behind). */
  dropped: number;
  /** Packets cut to snaplen. */
  truncated: number;
  /** Mirror: clones or redirects the kernel refused. */
  failed: number;
  /** Mirror: packets over the session's rate limit (not mirrored). */
  rateLimited: number;
  /** Capture: packets written to the client (after the kernel; differs from delivered only while in flight). */
  written: number;
}

export interface CaptureSessionView {
  session: string;
  owner: { uid: number; pid: number }; // the client that started it
  startedAt: string; // ISO 8601
  selector: SessionSelector;
  snaplen: number;
  counters: SessionCounters;
}

export interface CaptureStopResult {
  session: string;
  counters: SessionCounters;
}

export interface CaptureListResult {
  sessions: CaptureSessionView[];
}

// --- mirror -------------------------------------------------------------------------------

export type MirrorEncap = 'vxlan' | 'gre';

export interface MirrorSpec extends SessionSelector {
  name: string; // [a-z0-9-]{1,32}, unique
  /** Collector address (IPv4 or IPv6); the outer packets go there. */
  to: string;
  encap: MirrorEncap; // default 'vxlan'
  /** VXLAN network identifier (default 1) or GRE key (absent: no key). */
  vni?: number;
  /** Bytes of each frame mirrored (default: the whole frame). */
  snaplen?: number;
  /** Packets per second at most; over it, counted in rateLimited. */
  ratePps?: number;
}

export interface MirrorAddParams extends MirrorSpec {}
export interface MirrorAddResult {
  name: string;
  interfaces: Array<{ name: string; ifindex: number }>;
}
export interface MirrorRemoveParams {
  name: string;
}
export interface MirrorStatsParams {
  name?: string;
}
export interface MirrorView {
  spec: MirrorSpec;
  /** Where the mirror stands: 'active', or why not ('collector unreachable', 'no such interface'...). */
  state: string;
  counters: SessionCounters;
  /** From the configuration file (kept) or added at run time (kept too: pinned). */
  source: 'config' | 'api';
}
export interface MirrorListResult {
  mirrors: MirrorView[];
}

/** Proposed JSON-RPC method names (one place, as rpc/protocol.ts declares the others). */
export const CAPTURE_METHODS = {
  captureStart: 'capture.start',
  captureStop: 'capture.stop',
  captureList: 'capture.list',
  mirrorAdd: 'mirror.add',
  mirrorRemove: 'mirror.remove',
  mirrorList: 'mirror.list',
  mirrorStats: 'mirror.stats',
} as const;

/**
 * Proposed D-Bus surface: org.ebpfmon1.Capture on /org/ebpfmon1/Capture.
 *   AddMirror(a{sv} spec) -> (s name)                  polkit org.ebpfmon1.mirror
 *   RemoveMirror(s name)                                polkit org.ebpfmon1.mirror
 *   ListMirrors() -> (aa{sv})
 *   GetMirrorStats(s name) -> (a{st} counters)
 *   StartCapture(a{sv} selector, h fd) -> (s session)  pcapng written to the passed fd
 *   StopCapture(s session)
 *   signal SessionCounters(s session, a{st} counters)  every statsIntervalSec
 * Field names inside a{sv}/a{st} are the JSON names above.
 */
export const CAPTURE_DBUS = { iface: 'org.ebpfmon1.Capture', path: '/org/ebpfmon1/Capture' } as const;

/** Proposed error rows for rpc/errors.ts (the 3xxx block, after the load balancer's 2xxx), from CaptureError codes (capture/errors.ts). */
export const CAPTURE_ERRORS = {
  BadFilter: { code: 3001, dbus: 'org.ebpfmon1.Error.BadFilter', from: 'BAD_FILTER' },
  FilterUnsupported: { code: 3002, dbus: 'org.ebpfmon1.Error.FilterUnsupported', from: 'FILTER_UNSUPPORTED' },
  TooManySessions: { code: 3003, dbus: 'org.ebpfmon1.Error.TooManySessions', from: 'TOO_MANY_SESSIONS' },
  NotYourProcess: { code: 3004, dbus: 'org.ebpfmon1.Error.NotYourProcess', from: null },
  CaptureUnavailable: { code: 3005, dbus: 'org.ebpfmon1.Error.CaptureUnavailable', from: 'PCAP_MISSING' },
} as const;
