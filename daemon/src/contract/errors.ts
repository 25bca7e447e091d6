// SPDX-License-Identifier: Apache-2.0
// The one table of errors ebpfmon's interfaces return. JSON-RPC uses `code` (application
// codes lie outside -32768..-32000; InvalidParams and MethodNotFound are JSON-RPC's own);
// D-Bus uses `dbus` (org.ebpfmon1.Error.<Name>); the CLI maps them to exit codes.
// docs/errors.md lists them, and a unit test checks that the table and the document agree.

export const ERRORS = {
  // JSON-RPC's own
  ParseError: { code: -32700, dbus: 'org.ebpfmon1.Error.ParseError', message: 'invalid JSON' },
  InvalidRequest: { code: -32600, dbus: 'org.ebpfmon1.Error.InvalidRequest', message: 'not a valid JSON-RPC request' },
  MethodNotFound: { code: -32601, dbus: 'org.freedesktop.DBus.Error.UnknownMethod', message: 'unknown method' },
  InvalidParams: { code: -32602, dbus: 'org.ebpfmon1.Error.InvalidArgs', message: 'invalid parameters' },
  // access and limits
  PermissionDenied: { code: 1001, dbus: 'org.ebpfmon1.Error.PermissionDenied', message: 'permission denied' },
  TooManyClients: { code: 1002, dbus: 'org.ebpfmon1.Error.TooManyClients', message: 'too many clients' },
  TooManySubscriptions: { code: 1003, dbus: 'org.ebpfmon1.Error.TooManySubscriptions', message: 'too many subscriptions on this connection' },
  MessageTooLarge: { code: 1004, dbus: 'org.ebpfmon1.Error.MessageTooLarge', message: 'message too large' },
  NotFound: { code: 1005, dbus: 'org.ebpfmon1.Error.NotFound', message: 'no such object' },
  Busy: { code: 1006, dbus: 'org.ebpfmon1.Error.Busy', message: 'busy, try again' },
  // daemon and kernel
  Internal: { code: 1100, dbus: 'org.ebpfmon1.Error.Internal', message: 'internal error' },
  Kernel: { code: 1101, dbus: 'org.ebpfmon1.Error.Kernel', message: 'the kernel refused the operation' },
  NotAvailable: { code: 1102, dbus: 'org.ebpfmon1.Error.NotAvailable', message: 'feature not available on this machine or configuration' },
  // load balancer
  VipExists: { code: 2001, dbus: 'org.ebpfmon1.Error.VipExists', message: 'VIP already exists' },
  UnknownVip: { code: 2002, dbus: 'org.ebpfmon1.Error.UnknownVip', message: 'no such VIP' },
  BackendExists: { code: 2003, dbus: 'org.ebpfmon1.Error.BackendExists', message: 'backend already exists for this VIP' },
  UnknownBackend: { code: 2004, dbus: 'org.ebpfmon1.Error.UnknownBackend', message: 'no such backend for this VIP' },
  TooManyBackends: { code: 2005, dbus: 'org.ebpfmon1.Error.TooManyBackends', message: 'too many backends' },
  TooManyVips: { code: 2006, dbus: 'org.ebpfmon1.Error.TooManyVips', message: 'too many VIPs' },
  DropRuleExists: { code: 2007, dbus: 'org.ebpfmon1.Error.DropRuleExists', message: 'drop rule already exists' },
  UnknownDropRule: { code: 2008, dbus: 'org.ebpfmon1.Error.UnknownDropRule', message: 'no such drop rule' },
  // capture and mirror sessions
  BadFilter: { code: 3001, dbus: 'org.ebpfmon1.Error.BadFilter', message: 'the filter expression does not compile' },
  FilterUnsupported: { code: 3002, dbus: 'org.ebpfmon1.Error.FilterUnsupported', message: 'the filter expression cannot run in the kernel' },
  TooManySessions: { code: 3003, dbus: 'org.ebpfmon1.Error.TooManySessions', message: 'too many capture and mirror sessions' },
  MirrorExists: { code: 3004, dbus: 'org.ebpfmon1.Error.MirrorExists', message: 'a mirror with this name already exists' },
  UnknownMirror: { code: 3005, dbus: 'org.ebpfmon1.Error.UnknownMirror', message: 'no such mirror' },
  NoRoute: { code: 3006, dbus: 'org.ebpfmon1.Error.NoRoute', message: 'no route to the collector' },
} as const;

export type ErrorName = keyof typeof ERRORS;

/** What went wrong with which input: `{ field: 'params.pid', value: -1, expected: 'an integer >= 0' }`. */
export interface ErrorData {
  field?: string;
  value?: unknown;
  expected?: string;
  [k: string]: unknown;
}
