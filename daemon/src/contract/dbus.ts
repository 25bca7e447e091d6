// SPDX-License-Identifier: Apache-2.0
// The D-Bus API as data: every name ebpfmon uses on the bus (bus name, object paths,
// interfaces, members, the polkit action, the freedesktop names the service talks to),
// then every member's signature, argument names and one line of documentation. The
// service dispatches by it, introspection is generated from it, and tests compare
// docs/org.ebpfmon1.xml and the bus policy against it. Error names: errors.ts. Field
// names inside the a{sv} dictionaries are the JSON-RPC ones (flows.ts, lb.ts):
// test/unit/daemon/dbus/names.test.ts checks that they agree.

export const BUS_NAME = 'org.ebpfmon1';

export const MANAGER_PATH = '/org/ebpfmon1';
export const MANAGER_IFACE = 'org.ebpfmon1.Manager';
export const LB_PATH = '/org/ebpfmon1/lb';
export const LB_IFACE = 'org.ebpfmon1.LoadBalancer';
export const CAPTURE_PATH = '/org/ebpfmon1/capture';
export const CAPTURE_IFACE = 'org.ebpfmon1.Capture';

/** polkit action that guards every changing LoadBalancer method (packaging/polkit/org.ebpfmon1.policy). */
export const POLKIT_ACTION_MANAGE_LB = 'org.ebpfmon1.manage-lb';
/** polkit action that guards AddMirror and RemoveMirror (mirrors send copies of the host's traffic elsewhere). */
export const POLKIT_ACTION_MANAGE_MIRRORS = 'org.ebpfmon1.manage-mirrors';

export const MANAGER_METHOD = {
  GetFlows: 'GetFlows',
  GetProcesses: 'GetProcesses',
  GetTopTalkers: 'GetTopTalkers',
  GetHistory: 'GetHistory',
  GetDnsQueries: 'GetDnsQueries',
  GetHttpRequests: 'GetHttpRequests',
  GetProcessTotals: 'GetProcessTotals',
  GetIdentity: 'GetIdentity',
  Subscribe: 'Subscribe',
  Unsubscribe: 'Unsubscribe',
} as const;

export const MANAGER_PROPERTY = {
  Version: 'Version',
  StartedAt: 'StartedAt',
  Interfaces: 'Interfaces',
  SeesAllUsers: 'SeesAllUsers',
  FlowCount: 'FlowCount',
  ProcessCount: 'ProcessCount',
  TxBytes: 'TxBytes',
  RxBytes: 'RxBytes',
  RingbufFull: 'RingbufFull',
  FlowsEvicted: 'FlowsEvicted',
  SignalsDropped: 'SignalsDropped',
  TxBytesPerSec: 'TxBytesPerSec',
  RxBytesPerSec: 'RxBytesPerSec',
} as const;

export const MANAGER_SIGNAL = {
  ProcessStarted: 'ProcessStarted',
  ProcessStopped: 'ProcessStopped',
  BandwidthChanged: 'BandwidthChanged',
  RatesChanged: 'RatesChanged',
} as const;

/** Keys of ProcessStarted's `details` (absent when not known). */
export const PROCESS_STARTED_DETAILS = ['exe', 'protocol', 'remoteAddr', 'remotePort', 'remoteGeo'] as const;

export const LB_METHOD = {
  ListVips: 'ListVips',
  GetStats: 'GetStats',
  ListDropRules: 'ListDropRules',
  AddVip: 'AddVip',
  RemoveVip: 'RemoveVip',
  AddBackend: 'AddBackend',
  RemoveBackend: 'RemoveBackend',
  DrainBackend: 'DrainBackend',
  AddDropRule: 'AddDropRule',
  RemoveDropRule: 'RemoveDropRule',
} as const;

export const LB_PROPERTY = {
  Available: 'Available',
} as const;

/** org.ebpfmon1.Capture: mirror sessions (issue 13), adapters over mirror.* and capture.list. */
export const CAPTURE_METHOD = {
  AddMirror: 'AddMirror',
  RemoveMirror: 'RemoveMirror',
  ListMirrors: 'ListMirrors',
  GetMirrorStats: 'GetMirrorStats',
  ListCaptures: 'ListCaptures',
} as const;

export const CAPTURE_PROPERTY = {
  Available: 'Available',
} as const;

export type ManagerMethod = keyof typeof MANAGER_METHOD;
export type ManagerProperty = keyof typeof MANAGER_PROPERTY;
export type ManagerSignal = keyof typeof MANAGER_SIGNAL;
export type LbMethod = keyof typeof LB_METHOD;
export type LbProperty = keyof typeof LB_PROPERTY;
export type CaptureMethod = keyof typeof CAPTURE_METHOD;
export type CaptureProperty = keyof typeof CAPTURE_PROPERTY;

/** The bus itself and the standard interfaces. */
export const FDO = {
  name: 'org.freedesktop.DBus',
  path: '/org/freedesktop/DBus',
  iface: 'org.freedesktop.DBus',
  properties: 'org.freedesktop.DBus.Properties',
  introspectable: 'org.freedesktop.DBus.Introspectable',
  peer: 'org.freedesktop.DBus.Peer',
} as const;

export const POLKIT = {
  name: 'org.freedesktop.PolicyKit1',
  path: '/org/freedesktop/PolicyKit1/Authority',
  iface: 'org.freedesktop.PolicyKit1.Authority',
  /** CheckAuthorization flag: the caller may be asked for a password. */
  allowUserInteraction: 1,
} as const;

export const ANNOTATION = {
  emitsChangedSignal: 'org.freedesktop.DBus.Property.EmitsChangedSignal',
  docString: 'org.freedesktop.DBus.DocString',
} as const;

/**
 * D-Bus's own errors for the standard Properties interface. Like UnknownMethod (which the
 * error table maps MethodNotFound to), they are protocol errors every D-Bus client knows,
 * so they keep their freedesktop names instead of an org.ebpfmon1.Error.* one.
 */
export const FDO_ERROR = {
  UnknownProperty: 'org.freedesktop.DBus.Error.UnknownProperty',
  PropertyReadOnly: 'org.freedesktop.DBus.Error.PropertyReadOnly',
  UnknownInterface: 'org.freedesktop.DBus.Error.UnknownInterface',
  ServiceUnknown: 'org.freedesktop.DBus.Error.ServiceUnknown',
  NameHasNoOwner: 'org.freedesktop.DBus.Error.NameHasNoOwner',
  AccessDenied: 'org.freedesktop.DBus.Error.AccessDenied',
  LimitsExceeded: 'org.freedesktop.DBus.Error.LimitsExceeded',
} as const;

/** Message header flag (D-Bus spec): the caller lets the service ask for a password. */
export const FLAG_ALLOW_INTERACTIVE_AUTHORIZATION = 0x4;
/** Message header flag: the caller wants no reply. */
export const FLAG_NO_REPLY_EXPECTED = 0x1;

// --- the interfaces ----------------------------------------------------------------

export interface ArgSpec {
  name: string;
  type: string;
}

export interface MethodSpec {
  in: ArgSpec[];
  out: ArgSpec[];
  doc: string;
  /** Changes state: needs root, the admin group or polkit authorization. */
  changes?: boolean;
}

/** org.freedesktop.DBus.Property.EmitsChangedSignal: 'const' never changes; 'false' changes without a signal. */
export type EmitsChanged = 'true' | 'invalidates' | 'const' | 'false';

export interface PropertySpec {
  type: string;
  doc: string;
  emitsChanged: EmitsChanged;
}

export interface SignalSpec {
  args: ArgSpec[];
  doc: string;
}

export interface InterfaceSpec<M extends string = string, P extends string = string, S extends string = string> {
  name: string;
  doc: string;
  methods: Record<M, MethodSpec>;
  properties: Record<P, PropertySpec>;
  signals: Record<S, SignalSpec>;
}

const arg = (name: string, type: string): ArgSpec => ({ name, type });

export const MANAGER_SPEC: InterfaceSpec<ManagerMethod, ManagerProperty, ManagerSignal> = {
  name: MANAGER_IFACE,
  doc: 'Flows and per-process traffic seen by ebpfmon, scoped to the caller: root and members of the ebpfmon group see every user, others their own uid.',
  methods: {
    [MANAGER_METHOD.GetFlows]: {
      in: [arg('filter', 'a{sv}')],
      out: [arg('flows', 'aa{sv}')],
      doc: 'Flows visible to the caller, filtered by pid (u), comm (s), uid (u), remoteAddr (s, CIDR), localAddr (s, CIDR), port (u), protocol (s), interface (s), includeClosed (b), sort (s), limit (u, 1..10000, default 1000), and by owner identity: unit (s), container (s), app (s), cgroup (s, a path or an ancestor), and where the remote address is: country (s), asn (u), label (s).',
    },
    [MANAGER_METHOD.GetProcesses]: {
      in: [],
      out: [arg('processes', 'aa{sv}')],
      doc: 'Cumulative traffic per process visible to the caller, busiest first (at most 10000), with the top 5 places its flows go to (places).',
    },
    [MANAGER_METHOD.GetTopTalkers]: {
      in: [arg('limit', 'u')],
      out: [arg('top', 'aa{sv}')],
      doc: 'Processes visible to the caller ranked by bytes per second over the last second (limit 1..1000); the first call after a quiet period waits one second for a rate.',
    },
    [MANAGER_METHOD.GetHistory]: {
      in: [arg('filter', 'a{sv}')],
      out: [arg('summary', 'a{sv}'), arg('rows', 'aa{sv}')],
      doc: 'Flow history visible to the caller, as JSON-RPC history.query: filter keys since (s), until (s), pid (u), comm (s), user (u or s), unit (s), remote (s, CIDR), name (s, glob), by (s: process, remote, name, hour, day) and limit (u, 1..10000, default 100); summary holds the window, totals and source, rows the flows or groups.',
    },
    [MANAGER_METHOD.GetDnsQueries]: {
      in: [arg('filter', 'a{sv}')],
      out: [arg('queries', 'aa{sv}')],
      doc: 'DNS queries of the processes visible to the caller, newest first (JSON-RPC dns.list), filtered by pid (u), uid (u), name (s, glob) and limit (u, 1..10000, default 1000); NotAvailable when l7.dns is off.',
    },
    [MANAGER_METHOD.GetHttpRequests]: {
      in: [arg('filter', 'a{sv}')],
      out: [arg('requests', 'aa{sv}')],
      doc: 'HTTP/1.x requests of the processes visible to the caller, newest first (JSON-RPC http.list), filtered by pid (u), uid (u), host (s, glob), status (s, 404 or 5xx), method (s), tls (b) and limit (u, 1..10000, default 1000); NotAvailable when l7.http is off.',
    },
    [MANAGER_METHOD.GetProcessTotals]: {
      in: [arg('params', 'a{sv}')],
      out: [arg('processes', 'aa{sv}'), arg('groups', 'aa{sv}')],
      doc: 'processes.list: cumulative traffic per process visible to the caller with its identity, filtered by uid (u), unit (s), container (s), app (s), cgroup (s), at most limit (u, 1..10000) processes; with by (s: unit, container or app) also the totals per group (empty otherwise).',
    },
    [MANAGER_METHOD.GetIdentity]: {
      in: [arg('params', 'a{sv}')],
      out: [arg('identity', 'a{sv}')],
      doc: 'identity.get: the cgroup, unit, slice, container, app and process tree of pid (u, one of the caller\'s own unless it sees every user) or of cgroupId (t, root and the ebpfmon group only).',
    },
    [MANAGER_METHOD.Subscribe]: {
      in: [],
      out: [],
      doc: 'Start receiving ProcessStarted, ProcessStopped, BandwidthChanged and RatesChanged, sent to this connection only and scoped like the methods, until Unsubscribe or disconnection.',
    },
    [MANAGER_METHOD.Unsubscribe]: {
      in: [],
      out: [],
      doc: 'Stop the signals started by Subscribe (NotFound if this connection is not subscribed).',
    },
  },
  properties: {
    [MANAGER_PROPERTY.Version]: { type: 's', emitsChanged: 'const', doc: 'The daemon version.' },
    [MANAGER_PROPERTY.StartedAt]: { type: 's', emitsChanged: 'const', doc: 'When the daemon started (ISO 8601, UTC).' },
    [MANAGER_PROPERTY.Interfaces]: { type: 'as', emitsChanged: 'false', doc: 'Network interfaces monitored now.' },
    [MANAGER_PROPERTY.SeesAllUsers]: { type: 'b', emitsChanged: 'false', doc: 'True when the caller sees every user (root or the ebpfmon group), false when it sees its own uid only.' },
    [MANAGER_PROPERTY.FlowCount]: { type: 't', emitsChanged: 'false', doc: 'Open flows visible to the caller.' },
    [MANAGER_PROPERTY.ProcessCount]: { type: 'u', emitsChanged: 'false', doc: 'Processes with traffic visible to the caller.' },
    [MANAGER_PROPERTY.TxBytes]: { type: 't', emitsChanged: 'false', doc: 'Bytes sent by the processes visible to the caller (cumulative).' },
    [MANAGER_PROPERTY.RxBytes]: { type: 't', emitsChanged: 'false', doc: 'Bytes received by the processes visible to the caller (cumulative).' },
    [MANAGER_PROPERTY.RingbufFull]: { type: 't', emitsChanged: 'false', doc: 'Events the kernel could not queue (ring buffer full; status loss.ringbufFull), all users.' },
    [MANAGER_PROPERTY.FlowsEvicted]: { type: 't', emitsChanged: 'false', doc: 'Flows the kernel table evicted before ebpfmon collected them, all users.' },
    [MANAGER_PROPERTY.SignalsDropped]: { type: 't', emitsChanged: 'false', doc: 'Signals not sent: ProcessStarted/ProcessStopped beyond a subscriber\'s budget (100 a second), or any signal while the bus connection was backed up.' },
    [MANAGER_PROPERTY.TxBytesPerSec]: { type: 't', emitsChanged: 'false', doc: 'Bytes per second sent by the processes visible to the caller, over the last second (RatesChanged tells subscribers when it changes).' },
    [MANAGER_PROPERTY.RxBytesPerSec]: { type: 't', emitsChanged: 'false', doc: 'Bytes per second received by the processes visible to the caller, over the last second.' },
  },
  signals: {
    [MANAGER_SIGNAL.ProcessStarted]: {
      args: [arg('pid', 'u'), arg('comm', 's'), arg('uid', 'u'), arg('details', 'a{sv}')],
      doc: 'A process started talking: its first connection (connect or accept), or its first traffic in the flow table. details: exe (s), protocol (s), remoteAddr (s), remotePort (u), remoteGeo (a{sv}), each when known.',
    },
    [MANAGER_SIGNAL.ProcessStopped]: {
      args: [arg('pid', 'u'), arg('comm', 's'), arg('uid', 'u'), arg('txBytes', 't'), arg('rxBytes', 't')],
      doc: 'A process stopped talking: its last connection closed or it exited; the bytes it moved while talking.',
    },
    [MANAGER_SIGNAL.BandwidthChanged]: {
      args: [arg('top', 'aa{sv}')],
      doc: 'The subscriber\'s top talkers (as GetTopTalkers(10)) when they changed; at most once a second.',
    },
    [MANAGER_SIGNAL.RatesChanged]: {
      args: [arg('txBytesPerSec', 't'), arg('rxBytesPerSec', 't')],
      doc: 'Bytes per second sent and received by the processes visible to the subscriber (TxBytesPerSec, RxBytesPerSec), when they changed; at most once a second.',
    },
  },
};

export const LB_SPEC: InterfaceSpec<LbMethod, LbProperty, never> = {
  name: LB_IFACE,
  doc: 'The XDP load balancer. Anyone may read; changes need root, the ebpfmon-admin group or polkit authorization of org.ebpfmon1.manage-lb.',
  methods: {
    [LB_METHOD.ListVips]: { in: [], out: [arg('vips', 'aa{sv}')], doc: 'VIPs with their backends, as `ebpfmonctl lb list --json`.' },
    [LB_METHOD.GetStats]: { in: [], out: [arg('stats', 'a{sv}')], doc: 'Packet, drop and table counters, as `ebpfmonctl lb stats --json`.' },
    [LB_METHOD.ListDropRules]: { in: [], out: [arg('rules', 'aa{sv}')], doc: 'Drop rules with their counters.' },
    [LB_METHOD.AddVip]: {
      in: [arg('params', 'a{sv}')], out: [arg('added', 'a{sv}')], changes: true,
      doc: 'Add a VIP: vip (s, "ADDR:PORT/PROTO", required), mode (s, nat or dsr), interface (s), health (a{sv}: type s, port u, path s, intervalMs u, timeoutMs u, rise u, fall u).',
    },
    [LB_METHOD.RemoveVip]: { in: [arg('vip', 's')], out: [arg('removed', 'a{sv}')], changes: true, doc: 'Remove a VIP, its backends and its flows.' },
    [LB_METHOD.AddBackend]: {
      in: [arg('params', 'a{sv}')], out: [arg('added', 'a{sv}')], changes: true,
      doc: 'Add a backend: vip (s, required), backend (s, "ADDR[:PORT]", required), weight (u, 1..1000).',
    },
    [LB_METHOD.RemoveBackend]: { in: [arg('vip', 's'), arg('backend', 's')], out: [arg('removed', 'a{sv}')], changes: true, doc: 'Remove a backend now.' },
    [LB_METHOD.DrainBackend]: { in: [arg('vip', 's'), arg('backend', 's')], out: [arg('drained', 'a{sv}')], changes: true, doc: 'Send no new flows to a backend; existing flows stay.' },
    [LB_METHOD.AddDropRule]: { in: [arg('rule', 's')], out: [arg('added', 'a{sv}')], changes: true, doc: 'Drop matching packets: "CIDR", "udp:53", "icmp:echo-request", "proto:47"...' },
    [LB_METHOD.RemoveDropRule]: { in: [arg('rule', 's')], out: [arg('removed', 'a{sv}')], changes: true, doc: 'Remove a drop rule.' },
  },
  properties: {
    [LB_PROPERTY.Available]: { type: 'b', emitsChanged: 'const', doc: 'True when the load balancer is configured in this daemon; otherwise every method fails with NotAvailable.' },
  },
  signals: {} as Record<never, SignalSpec>,
};

export const CAPTURE_SPEC: InterfaceSpec<CaptureMethod, CaptureProperty, never> = {
  name: CAPTURE_IFACE,
  doc: 'Packet capture and mirror sessions (JSON-RPC mirror.* and capture.list). Anyone may read; adding or removing a mirror needs root, the ebpfmon-admin group or polkit authorization of org.ebpfmon1.manage-mirrors. Captures themselves stream pcapng and run on the socket (ebpfmonctl capture).',
  methods: {
    [CAPTURE_METHOD.AddMirror]: {
      in: [arg('params', 'a{sv}')], out: [arg('mirror', 'a{sv}')], changes: true,
      doc: 'mirror.add: name (s, required), to (s, collector address, required), encap (s: vxlan or gre), vni (u), snaplen (u), ratePps (u), and the selectors pids (au), comms (as), user (u or s), unit (s), cgroup (s), container (s), app (s), interfaces (as), direction (s: in or out), expression (s, pcap-filter).',
    },
    [CAPTURE_METHOD.RemoveMirror]: { in: [arg('name', 's')], out: [arg('removed', 'a{sv}')], changes: true, doc: 'mirror.remove: stop copying and remove the session; its last counters.' },
    [CAPTURE_METHOD.ListMirrors]: { in: [], out: [arg('mirrors', 'aa{sv}')], doc: 'mirror.list: every mirror session with its declaration, state, device, path MTU and counters.' },
    [CAPTURE_METHOD.GetMirrorStats]: { in: [arg('name', 's')], out: [arg('mirrors', 'aa{sv}')], doc: 'mirror.stats: name, state and counters of one mirror ("" for all).' },
    [CAPTURE_METHOD.ListCaptures]: { in: [], out: [arg('sessions', 'aa{sv}')], doc: 'capture.list: the capture sessions the caller may see (its own; root and the ebpfmon group: all) with their counters.' },
  },
  properties: {
    [CAPTURE_PROPERTY.Available]: { type: 'b', emitsChanged: 'const', doc: 'True when capture runs in this daemon; otherwise every method fails with NotAvailable (status.capture.reason says why).' },
  },
  signals: {} as Record<never, SignalSpec>,
};

export function inSignature(m: MethodSpec): string {
  return m.in.map((a) => a.type).join('');
}

export function outSignature(m: Pick<MethodSpec, 'out'> | { args: ArgSpec[] }): string {
  return ('out' in m ? m.out : m.args).map((a) => a.type).join('');
}
