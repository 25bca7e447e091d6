// SPDX-License-Identifier: Apache-2.0
// The two interfaces as data: every member's signature, argument names and one line of
// documentation. The service dispatches by it, introspection is generated from it, and
// tests compare docs/org.ebpfmon1.xml and the bus policy against it.
import { LB_IFACE, LB_METHOD, LB_PROPERTY, MANAGER_IFACE, MANAGER_METHOD, MANAGER_PROPERTY, MANAGER_SIGNAL, type LbMethod, type LbProperty, type ManagerMethod, type ManagerProperty, type ManagerSignal } from './names.js';

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
      doc: 'Flows visible to the caller, filtered by pid (u), comm (s), uid (u), remoteAddr (s, CIDR), localAddr (s, CIDR), port (u), proto (s), interface (s), includeClosed (b), sort (s) and limit (u, 1..10000, default 1000).',
    },
    [MANAGER_METHOD.GetProcesses]: {
      in: [],
      out: [arg('processes', 'aa{sv}')],
      doc: 'Cumulative traffic per process visible to the caller, busiest first (at most 10000).',
    },
    [MANAGER_METHOD.GetTopTalkers]: {
      in: [arg('limit', 'u')],
      out: [arg('top', 'aa{sv}')],
      doc: 'Processes visible to the caller ranked by bytes per second over the last second (limit 1..1000); the first call after a quiet period waits one second for a rate.',
    },
    [MANAGER_METHOD.Subscribe]: {
      in: [],
      out: [],
      doc: 'Start receiving ProcessStarted, ProcessStopped and BandwidthChanged, sent to this connection only and scoped like the methods, until Unsubscribe or disconnection.',
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
    [MANAGER_PROPERTY.EventsLost]: { type: 't', emitsChanged: 'false', doc: 'Events the kernel could not queue (ring buffer full), all users.' },
    [MANAGER_PROPERTY.FlowsEvicted]: { type: 't', emitsChanged: 'false', doc: 'Flows the kernel table evicted before ebpfmon collected them, all users.' },
    [MANAGER_PROPERTY.SignalsDropped]: { type: 't', emitsChanged: 'false', doc: 'Signals not sent: ProcessStarted/ProcessStopped beyond a subscriber\'s budget (100 a second), or any signal while the bus connection was backed up.' },
  },
  signals: {
    [MANAGER_SIGNAL.ProcessStarted]: {
      args: [arg('pid', 'u'), arg('comm', 's'), arg('uid', 'u')],
      doc: 'A process started talking: its first connection (connect or accept), or its first traffic in the flow table.',
    },
    [MANAGER_SIGNAL.ProcessStopped]: {
      args: [arg('pid', 'u'), arg('comm', 's'), arg('uid', 'u'), arg('txBytes', 't'), arg('rxBytes', 't')],
      doc: 'A process stopped talking: its last connection closed or it exited; the bytes it moved while talking.',
    },
    [MANAGER_SIGNAL.BandwidthChanged]: {
      args: [arg('top', 'aa{sv}')],
      doc: 'The subscriber\'s top talkers (as GetTopTalkers(10)) when they changed; at most once a second.',
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

export function inSignature(m: MethodSpec): string {
  return m.in.map((a) => a.type).join('');
}

export function outSignature(m: Pick<MethodSpec, 'out'> | { args: ArgSpec[] }): string {
  return ('out' in m ? m.out : m.args).map((a) => a.type).join('');
}
