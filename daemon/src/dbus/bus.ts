// SPDX-License-Identifier: Apache-2.0
// Small pieces around dbus-next: connecting with a deadline, bounded calls, and turning
// ebpfmon's errors into D-Bus errors (names from the one table in contract/errors.ts).
import dbus, { DBusError, type MessageBus } from 'dbus-next';
import { toApiError } from '../api/index.js';

/** Rejects when `p` takes longer than `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * A connection to the bus at `address` (a D-Bus address such as
 * "unix:path=/run/dbus/system_bus_socket"), or to the system bus when none is given.
 * Resolves once the bus answered Hello.
 */
export async function connectBus(address: string | undefined, timeoutMs = 10_000): Promise<MessageBus> {
  const bus = address ? dbus.sessionBus({ busAddress: address }) : dbus.systemBus();
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        bus.once('connect', () => resolve());
        bus.once('error', (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))));
      }),
      timeoutMs, `connecting to ${address || 'the system bus'}`,
    );
  } catch (err) {
    try {
      bus.disconnect();
    } catch {
      /* never connected */
    }
    throw err;
  }
  return bus;
}

/** The D-Bus error a client gets for `err`: AppError by its table name, kernel errors as Kernel, anything else Internal. */
export function toDBusError(err: unknown): { error: DBusError; internal: boolean } {
  if (err instanceof DBusError) return { error: err, internal: false };
  const { error, internal } = toApiError(err);
  return { error: new DBusError(error.dbusName, error.message), internal };
}
