// SPDX-License-Identifier: Apache-2.0
// An exported object: its interface spec (schema.ts), a handler per method and a getter
// per property, each given the caller. dbus-next's own dispatch calls methods without the
// message, so it cannot tell who is calling; service.ts dispatches itself and uses
// dbus-next's Interface only for introspection (with argument names, annotations and
// documentation, which dbus-next's generated XML lacks).
import dbus from 'dbus-next';
import type { Credentials, Scope } from './callers.js';
import { ANNOTATION, type ArgSpec, type InterfaceSpec } from '../contract/dbus.js';
import { withFieldPrefix, type ApiMethodName, type Caller, type MethodTable, type MethodsByName } from '../api/index.js';

export interface CallContext {
  /** Unique bus name of the caller. */
  sender: string;
  creds: Credentials;
  scope: Scope;
  /** The uid filter for reads: undefined when the caller sees every uid. */
  uid: number | undefined;
  /** The caller as the API knows callers. */
  caller: Caller;
  /** Throws PermissionDenied unless the caller is root, in the admin group, or polkit authorizes `action`. */
  requireAuthorization(action: string): Promise<void>;
}

/**
 * How a member runs an API method: params built from the call's arguments (`prefix`: how
 * the member names them, "params" for an a{sv} argument, "" for positional ones), checked
 * in this order: `ready` (throws when the object's feature is not there), the arguments,
 * then authorization for admin methods (root, the admin group, or polkit's yes for
 * `action`), so a call that would fail never prompts for a password.
 */
export function apiCaller(methods: MethodTable, action: string, ready: () => void = () => undefined) {
  return async (ctx: CallContext, name: ApiMethodName, prefix: string, raw: () => unknown): Promise<unknown> => {
    const def = (methods as MethodsByName)[name];
    ready();
    const params = withFieldPrefix(prefix, () => def.validate(raw(), ctx.caller));
    if (def.access === 'admin') await ctx.requireAuthorization(action);
    return def.run(params, ctx.caller);
  };
}

export type MethodHandler = (ctx: CallContext, args: unknown[]) => unknown;
export type PropertyGetter = (ctx: CallContext) => unknown;

export interface ObjectImpl<M extends string = string, P extends string = string, S extends string = string> {
  path: string;
  spec: InterfaceSpec<M, P, S>;
  methods: Record<M, MethodHandler>;
  properties: Record<P, PropertyGetter>;
}

type XmlNode = { $: Record<string, string>; arg?: XmlNode[]; annotation?: XmlNode[] };

const annotation = (name: string, value: string): XmlNode => ({ $: { name, value } });
const doc = (text: string): XmlNode => annotation(ANNOTATION.docString, text);
const args = (list: ArgSpec[], direction?: 'in' | 'out'): XmlNode[] =>
  list.map((a): XmlNode => ({ $: direction ? { name: a.name, type: a.type, direction } : { name: a.name, type: a.type } }));

/** The introspection data of one interface spec, in dbus-next's (xml2js) shape. */
export function introspectionOf(spec: InterfaceSpec): Record<string, unknown> {
  return {
    $: { name: spec.name },
    annotation: [doc(spec.doc)],
    method: Object.entries(spec.methods).map(([name, m]) => ({ $: { name }, arg: [...args(m.in, 'in'), ...args(m.out, 'out')], annotation: [doc(m.doc)] })),
    property: Object.entries(spec.properties).map(([name, p]) => ({
      $: { name, type: p.type, access: 'read' },
      annotation: [annotation(ANNOTATION.emitsChangedSignal, p.emitsChanged), doc(p.doc)],
    })),
    signal: Object.entries(spec.signals).map(([name, s]) => ({ $: { name }, arg: args(s.args), annotation: [doc(s.doc)] })),
  };
}

/** Exported only so that Introspect lists the interface; calls never reach it. */
export class SpecInterface extends dbus.interface.Interface {
  constructor(private readonly spec: InterfaceSpec) {
    super(spec.name);
  }

  /** Called by dbus-next when building the Introspect answer. */
  $introspect(): Record<string, unknown> {
    return introspectionOf(this.spec);
  }
}
