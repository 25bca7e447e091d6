// SPDX-License-Identifier: Apache-2.0
// How the API declares a method once for every transport: who may call it, how its params
// are validated (naming `params.X` in errors; D-Bus renames the prefix), and what it does.
// Adapters run validate -> authorize (per `access`) -> run, so a bad argument is refused
// before anyone is asked for authorization.
import type { MethodName, ResultOf } from '../contract/methods.js';
import type { Caller } from './caller.js';

/** `read`: any caller (results scoped by uid where they are per-user); `admin`: root, the
 * admin group, or (D-Bus) polkit authorization. */
export type Access = 'read' | 'admin';

export interface MethodDef<M extends MethodName, V = unknown> {
  access: Access;
  validate(raw: unknown, caller: Caller): V;
  run(params: V, caller: Caller): Promise<ResultOf<M>> | ResultOf<M>;
}

/** Methods the API layer serves for every transport (subscriptions and streams are each transport's own). */
/** `capture.start` streams on the transport's own channel (api/capture.ts captureStart). */
export type ApiMethodName = Exclude<MethodName, 'events.subscribe' | 'events.unsubscribe' | 'capture.start'>;

/**
 * The table as a transport that dispatches by name sees it: each entry's params type erased.
 * Sound only for validate() -> run() on the same entry (what the JSON-RPC and D-Bus adapters
 * do); a caller with params of its own uses api/index.ts MethodTable, which keeps each type.
 */
export type MethodsByName = { [M in ApiMethodName]: MethodDef<M, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Declares one method with its params type inferred from its validator. */
export function method<M extends MethodName, V>(def: MethodDef<M, V>): MethodDef<M, V> {
  return def;
}
