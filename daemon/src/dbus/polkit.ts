// SPDX-License-Identifier: Apache-2.0
// polkit: org.freedesktop.PolicyKit1.Authority.CheckAuthorization for the caller's bus
// name, the way systemd and fwupd do it. A polkit that cannot be reached, or answers with
// an error (an action it does not know), means no: a change is never allowed by default.
import dbus, { type MessageBus } from 'dbus-next';
import { POLKIT } from '../contract/dbus.js';
import { withTimeout } from './bus.js';

export interface AuthorizeOptions {
  /** The caller set ALLOW_INTERACTIVE_AUTHORIZATION: polkit may ask for a password. */
  interactive?: boolean;
}

/** Decides whether `sender` (a unique bus name) may perform polkit action `action`. */
export type Authorize = (sender: string, action: string, opts?: AuthorizeOptions) => Promise<boolean>;

/** An authentication dialog may take a while; a plain check must not. */
const TIMEOUT_MS = { interactive: 120_000, plain: 10_000 };

/**
 * Asks polkit on `bus`. Resolves true only when polkit says the caller is authorized;
 * rejects when polkit is unreachable or fails (callers deny then).
 */
export async function polkitCheck(bus: MessageBus, sender: string, action: string, opts: AuthorizeOptions = {}): Promise<boolean> {
  const msg = new dbus.Message({
    destination: POLKIT.name,
    path: POLKIT.path,
    interface: POLKIT.iface,
    member: 'CheckAuthorization',
    signature: '(sa{sv})sa{ss}us',
    body: [['system-bus-name', { name: new dbus.Variant('s', sender) }], action, {}, opts.interactive ? POLKIT.allowUserInteraction : 0, ''],
  });
  const reply = await withTimeout(bus.call(msg), opts.interactive ? TIMEOUT_MS.interactive : TIMEOUT_MS.plain, 'polkit CheckAuthorization');
  const result = reply?.body[0] as [boolean, boolean, Record<string, string>] | undefined;
  return result?.[0] === true;
}
