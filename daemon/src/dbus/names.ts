// SPDX-License-Identifier: Apache-2.0
// Every D-Bus name ebpfmon uses, declared once: the bus name, object paths, interfaces,
// members, the polkit action, and the freedesktop names the service talks to. The member
// signatures and their documentation live in schema.ts; error names in rpc/errors.ts.

export const BUS_NAME = 'org.ebpfmon1';

export const MANAGER_PATH = '/org/ebpfmon1';
export const MANAGER_IFACE = 'org.ebpfmon1.Manager';
export const LB_PATH = '/org/ebpfmon1/lb';
export const LB_IFACE = 'org.ebpfmon1.LoadBalancer';

/** polkit action that guards every changing LoadBalancer method (packaging/polkit/org.ebpfmon1.policy). */
export const POLKIT_ACTION_MANAGE_LB = 'org.ebpfmon1.manage-lb';

export const MANAGER_METHOD = {
  GetFlows: 'GetFlows',
  GetProcesses: 'GetProcesses',
  GetTopTalkers: 'GetTopTalkers',
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
  EventsLost: 'EventsLost',
  FlowsEvicted: 'FlowsEvicted',
  SignalsDropped: 'SignalsDropped',
} as const;

export const MANAGER_SIGNAL = {
  ProcessStarted: 'ProcessStarted',
  ProcessStopped: 'ProcessStopped',
  BandwidthChanged: 'BandwidthChanged',
} as const;

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

export type ManagerMethod = keyof typeof MANAGER_METHOD;
export type ManagerProperty = keyof typeof MANAGER_PROPERTY;
export type ManagerSignal = keyof typeof MANAGER_SIGNAL;
export type LbMethod = keyof typeof LB_METHOD;
export type LbProperty = keyof typeof LB_PROPERTY;

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
