// SPDX-License-Identifier: Apache-2.0
// Packet capture and mirror sessions (issue 13): `capture.start` (the connection then
// carries the pcapng stream), `capture.stop`, `capture.list`, `mirror.add`, `mirror.remove`,
// `mirror.list`, `mirror.stats`; D-Bus org.ebpfmon1.Capture; `ebpfmonctl capture` and
// `ebpfmonctl mirror`. docs/capture.md explains the model.

/** Which direction of a packet, from this host's point of view (as `tcpdump -Q`). */
export const CAPTURE_DIRECTIONS = ['in', 'out'] as const;
export type CaptureDirection = (typeof CAPTURE_DIRECTIONS)[number];

/** How mirrored frames travel to the collector. */
export const MIRROR_ENCAPS = ['vxlan', 'gre'] as const;
export type MirrorEncap = (typeof MIRROR_ENCAPS)[number];

/** The UDP port of VXLAN (IANA). */
export const VXLAN_PORT = 4789;
/** Capture and mirror sessions at once, all users together (one bit each in the kernel). */
export const MAX_CAPTURE_SESSIONS = 32;
/** Bytes kept of each packet unless asked otherwise (tcpdump's default). */
export const DEFAULT_SNAPLEN = 262144;
/** How long a captured packet may wait in the kernel's ring before the daemon writes it
 * (capture.start `latencyMs`): 250 ms unless asked, as Wireshark's dumpcap reads (tcpdump
 * reads every 1000 ms); at least 10, at most 1000. A full ring's worth of packets is read at
 * once whatever the bound; what it bounds is how often the daemon wakes up for the packets
 * below that mark, and each wakeup costs CPU whether a packet waits or not
 * (docs/capture.md "Latency"). */
export const CAPTURE_LATENCY_MS = { default: 250, min: 10, max: 1000 } as const;

/** What selects packets, shared by capture and mirror sessions. Everything given must
 * match (AND); a list matches any of its items (OR). */
export interface CaptureSelector {
  /** Process ids (every thread of each). A user may name only their own processes. */
  pids?: number[];
  /** Command names as the kernel keeps them (comm, at most 15 bytes). */
  comms?: string[];
  /** A user name or a uid: packets of that user's processes. */
  user?: string | number;
  /** A systemd unit (`nginx` or `nginx.service`): its cgroup and the cgroups below it, as
   * they are when the session starts. */
  unit?: string;
  /** A cgroup v2 path relative to the cgroup2 mount (`/system.slice/nginx.service`): it
   * and the cgroups below it, as they are when the session starts. */
  cgroup?: string;
  /** A container as the identity service names it (docs/identity.md): its id (12 to 64
   * hex digits: a prefix will do), its name, a Kubernetes pod's name, `namespace/pod` or
   * pod UID: the cgroups whose owner is that container, as they are when the session starts. */
  container?: string;
  /** A desktop app: its Flatpak id, snap name or .desktop id, or its name: its cgroups, as
   * they are when the session starts. With `container` or `app`, `unit` and `cgroup` narrow
   * the same cgroups (all must match). */
  app?: string;
  /** Interface names; absent or empty: every monitored interface. */
  interfaces?: string[];
  direction?: CaptureDirection;
  /** A pcap-filter(7) expression, as tcpdump takes it; absent or '': every packet. */
  expression?: string;
}

export interface CaptureStartParams extends CaptureSelector {
  /** On the JSON-RPC socket: must be true, the client's acknowledgement that every byte
   * after the reply is the pcapng stream. */
  stream: true;
  /** Bytes kept of each packet (tcpdump -s; 0 or absent: 262144). */
  snaplen?: number;
  /** Stop after this many packets (-c). */
  count?: number;
  /** Stop after this many seconds (--duration). */
  durationSec?: number;
  /** Interface Statistics Blocks while streaming, every this many seconds (default 5; 0: only at the end). */
  statsIntervalSec?: number;
  /** The longest a packet waits in the kernel before the daemon writes it, in ms
   * (CAPTURE_LATENCY_MS: default 250, 10-1000). The daemon reads every session's packets
   * together: the shortest bound of the sessions open is the one kept. */
  latencyMs?: number;
  /** Take over a session after the daemon restarted (the client lost its connection):
   * the daemon kept selecting for it in the kernel, and counts what the client missed. */
  resume?: CaptureResume;
  /** A descriptor number of the calling process, open for writing (a regular file, a FIFO
   * or pipe, a stream socket): the daemon takes a duplicate of it (pidfd_getfd) and writes
   * the pcapng into it itself; the connection then carries only `capture.progress` and
   * `capture.ended` lines. When the daemon cannot take it (pidfd_getfd refused), the
   * result says `delivery: "stream"` and why, and the pcapng follows on the connection as
   * without `fd`. Absent: the stream. */
  fd?: number;
  /** fd delivery: `capture.progress` lines on the connection while packets are written
   * (default true). A client writing into a regular file can count its packets there
   * itself (after a daemon restart too) and asks for none: each line wakes it. */
  progress?: boolean;
}

/** How a session's pcapng reaches the client's file: `fd` the daemon writes into the
 * client's own descriptor; `stream` the bytes follow on the connection. */
export const CAPTURE_DELIVERIES = ['fd', 'stream'] as const;
export type CaptureDelivery = (typeof CAPTURE_DELIVERIES)[number];

/** Notifications on a capture.start connection in `fd` delivery (one JSON line each). */
export const CAPTURE_NOTIFICATIONS = { progress: 'capture.progress', ended: 'capture.ended' } as const;

/** `capture.progress`: packets written into the client's descriptor so far (every
 * connection of the session), sent at most a few times a second while it grows. */
export interface CaptureProgressNotification {
  session: string;
  written: number;
}

/** `capture.ended`: the daemon wrote the last blocks (the final statistics) and closed
 * its duplicate: the file is complete. `error` when writing failed (EPIPE: the reader
 * went away; ENOSPC...), then the statistics may be missing. */
export interface CaptureEndedNotification {
  session: string;
  counters: CaptureCounters;
  error?: string;
}

/** capture.start's `resume`: which session, and what the client has of it. */
export interface CaptureResume {
  /** The session's id (CaptureStartResult.session). */
  session: string;
  /** CaptureStartResult.instance of the daemon the client last streamed from. */
  instance: string;
  /** Enhanced Packet Blocks the client received of this session so far (every connection). */
  received: number;
}

/** How long a restarted daemon keeps selecting for a capture session whose client has not
 * come back (then the session ends). The CLI's --reconnect default is as long. */
export const CAPTURE_RESUME_GRACE_SEC = 60;

/** An interface a session selects on, as the kernel sees it. */
export interface CaptureInterface {
  name: string;
  ifindex: number;
  /** `ethernet`: frames from the link-layer header on; `raw`: from the IP header (tun, wireguard). */
  linkType: 'ethernet' | 'raw';
}

/**
 * The reply to `capture.start`. On the JSON-RPC socket, every byte after this reply's line
 * is the pcapng stream (docs/api.md "capture.start"): the client half-closes the
 * connection to stop (the daemon then writes the last statistics and closes), and closing
 * it ends the session at once.
 */
export interface CaptureStartResult {
  session: string;
  /** What the selector resolved to, as the kernel uses it. */
  pids: number[];
  /** Only packets of these users' processes (a caller outside the ebpfmon group: its own uid). */
  uids: number[];
  /** cgroup v2 ids (decimal strings: they exceed 2^53). */
  cgroupIds: string[];
  interfaces: CaptureInterface[];
  /** Interfaces on which the expression does not exist (`arp` on a raw-IP device): nothing matches there. */
  expressionMissingOn: string[];
  snaplen: number;
  /** The format of the stream that follows. */
  format: 'pcapng';
  /** This daemon's capture instance (changes when the daemon restarts): resume names it. */
  instance: string;
  /** True when this continues a session of a previous daemon (`resume`); the stream then
   * starts a new pcapng section, and its statistics count from the session's start. */
  resumed: boolean;
  /** Where the pcapng goes (see CaptureStartParams.fd). */
  delivery: CaptureDelivery;
  /** Why `stream` when the client offered a descriptor (pidfd_getfd refused...), or that it did not offer one. */
  deliveryReason?: string;
}

/** A capture session's counts: everything the kernel matched is captured or dropped, and
 * everything captured is written or counted in clientDropped. */
export interface CaptureCounters {
  /** Packets the selectors and the expression accepted. */
  matched: number;
  matchedBytes: number;
  /** Copies the kernel queued for the daemon. */
  captured: number;
  capturedBytes: number;
  /** Copies the kernel could not queue: the daemon's ring was full. */
  dropped: number;
  /** Copies the daemon read but did not send: the client read too slowly. */
  clientDropped: number;
  /** Packets written to the stream. */
  written: number;
  /** Of those, packets cut to the snap length. */
  truncated: number;
  /** Copies the kernel queued that never reached the client because the daemon restarted
   * (in the old daemon's buffers or rings when it died, or read before the client came
   * back). Packets matched while no daemon read the rings are in `dropped`. */
  lostInRestart: number;
}

export interface CaptureStopParams {
  session: string;
}

export interface CaptureSessionView {
  session: string;
  /** The client that started it. */
  uid: number;
  pid: number | null;
  startedAt: string;
  selector: CaptureSelector;
  snaplen: number;
  delivery: CaptureDelivery;
  deliveryReason?: string;
  counters: CaptureCounters;
}

export interface CaptureStopResult {
  session: string;
  counters: CaptureCounters;
}

export interface CaptureListResult {
  /** The caller's own sessions (root and the ebpfmon group: everyone's). */
  sessions: CaptureSessionView[];
}

// --- mirror -------------------------------------------------------------------------------

/** A mirror session: matching packets, whole frames from the link-layer header, both
 * directions, copied to a collector in a VXLAN or GRE (transparent Ethernet) tunnel. */
export interface MirrorSpec extends CaptureSelector {
  /** 1 to 32 characters: letters, digits, `-`, `_`, `.`; unique. */
  name: string;
  /** Collector address (IPv4 or IPv6). */
  to: string;
  /** Default vxlan. */
  encap?: MirrorEncap;
  /** VXLAN network identifier (0..16777215, default 1) or GRE key (default 0). */
  vni?: number;
  /** Bytes kept of each frame (default: the whole frame). */
  snaplen?: number;
  /** Packets per second at most (over it: counted in rateLimited; default: no limit). */
  ratePps?: number;
}

export type MirrorAddParams = MirrorSpec;

export interface MirrorCounters {
  /** Packets the selectors and the expression accepted. */
  matched: number;
  matchedBytes: number;
  /** Copies handed to the tunnel (inner frame bytes). */
  mirrored: number;
  mirroredBytes: number;
  /** Copies cut to the session's snaplen, or to fit the path (tooBig over IPv6). */
  truncated: number;
  /** Matched packets over ratePps: not mirrored. */
  rateLimited: number;
  /** Copies the kernel refused to clone or to put in the tunnel. */
  failed: number;
  /** Copies larger than the path to the collector: sent as outer IPv4 fragments, or cut to
   * fit over IPv6 (then also `truncated`). */
  tooBig: number;
}

export interface MirrorView extends Required<Pick<MirrorSpec, 'name' | 'to' | 'encap' | 'vni'>> {
  spec: MirrorSpec;
  /** `active`, or why frames do not reach the collector now (`no route to 198.18.0.9`). */
  state: string;
  /** From the configuration file, or added with mirror.add (both kept across restarts). */
  source: 'config' | 'api';
  createdAt: string;
  /** The tunnel device the copies leave through. */
  device: string;
  /** Path MTU to the collector, as last looked up (null: no route). */
  pathMtu: number | null;
  interfaces: CaptureInterface[];
  counters: MirrorCounters;
}

export interface MirrorNameParams {
  name: string;
}

export interface MirrorRemoveResult {
  name: string;
  counters: MirrorCounters;
}

export interface MirrorStatsParams {
  /** One mirror; absent: all. */
  name?: string;
}

export interface MirrorListResult {
  mirrors: MirrorView[];
}

export interface MirrorStatsResult {
  mirrors: Array<{ name: string; state: string; counters: MirrorCounters }>;
}

// --- status -------------------------------------------------------------------------------

/** `status.capture`: what runs, and every loss. */
export interface CaptureStatus {
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  /** How expressions run: `generated eBPF (translated from libpcap's classic BPF)`. */
  engine: string;
  /** How captured packets reach the daemon: `perf event rings, N pages per CPU`. */
  delivery: string;
  /** What reads the rings and lays out the pcapng: `native (PATH)` (the C drain, one call
   * per drain) or `typescript (why not native)`. */
  drain?: string;
  /** While the rings are read: how long a packet may wait in them below the wakeup mark,
   * in ms (the shortest `latencyMs` of the sessions open). */
  readerLatencyMs?: number;
  /** Per encapsulation: the device it uses, or why it cannot be used on this kernel. */
  encaps: Record<MirrorEncap, {
    available: boolean;
    device: string | null;
    reason?: string;
    /** While a mirror uses the device: what its transmit refused or dropped since it was
     * made (the kernel's tx_errors and tx_dropped), copies the programs counted as
     * mirrored that never left. */
    txErrors?: number;
    txDropped?: number;
  }>;
  sessions: Array<{ session: string; uid: number; delivery: CaptureDelivery; deliveryReason?: string; latencyMs: number; counters: CaptureCounters }>;
  mirrors: Array<{ name: string; state: string; counters: MirrorCounters }>;
  /** Totals over every session since the daemon started (mirrors: since they were added). */
  loss: {
    /** Capture copies the kernel could not queue (ring full). */
    dropped: number;
    /** Capture copies not sent to slow clients. */
    clientDropped: number;
    /** Capture copies lost because the daemon restarted under a session (resumed ones). */
    lostInRestart: number;
    /** Records the perf rings lost (PERF_RECORD_LOST; the same drops as `dropped`, counted by the kernel). */
    ringLost: number;
    mirrorFailed: number;
    mirrorRateLimited: number;
    mirrorTooBig: number;
    /** The tunnel devices' transmit errors and drops (encaps[*].txErrors + txDropped) of the
     * devices mirrors use now: copies counted as mirrored that never left. */
    mirrorDeviceRefused: number;
  };
}
