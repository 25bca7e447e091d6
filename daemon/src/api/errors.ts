// SPDX-License-Identifier: Apache-2.0
// Every error on its way to a client, mapped once, beside the error table
// (contract/errors.ts): an AppError as it is, a kernel failure (SystemError, BpfError) as `Kernel` with
// the operation, object and errno, anything else as `Internal` (to be logged: it is a bug).
// The original stays available as `cause`. Adapters format the result for their wire.
import { AppError } from '../errors.js';
import { SystemError } from '../sys/errors.js';
import { CaptureError, type CaptureErrorCode } from '../capture/errors.js';
import type { ErrorName } from '../contract/errors.js';

/** The capture domain's error codes in the table. */
const CAPTURE_ERRORS: Record<CaptureErrorCode, ErrorName> = {
  PCAP_MISSING: 'NotAvailable', BAD_FILTER: 'BadFilter', FILTER_UNSUPPORTED: 'FilterUnsupported', BAD_SNAPLEN: 'InvalidParams',
  TOO_MANY_SESSIONS: 'TooManySessions', PCAPNG: 'Internal',
};

export function toApiError(err: unknown): { error: AppError; internal: boolean } {
  if (err instanceof AppError) return { error: err, internal: false };
  if (err instanceof CaptureError) {
    const e = new AppError(CAPTURE_ERRORS[err.code], err.message, err.code === 'BAD_FILTER' ? { field: 'params.expression' } : undefined);
    (e as Error).cause = err;
    return { error: e, internal: err.code === 'PCAPNG' };
  }
  if (err instanceof SystemError) {
    const e = new AppError('Kernel', err.message, { op: err.op, object: err.object, errno: err.errnoName });
    (e as Error).cause = err;
    return { error: e, internal: false };
  }
  const e = new AppError('Internal');
  (e as Error).cause = err;
  return { error: e, internal: true };
}

/**
 * Runs API validators (which name fields `params.X`) for a transport that names them
 * otherwise: D-Bus's `filter.pid` (prefix "filter"), or a positional argument `vip`
 * (prefix "").
 */
export function withFieldPrefix<T>(prefix: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AppError && typeof err.data?.field === 'string' && err.data.field.startsWith('params')) {
      const rest = err.data.field.slice('params'.length);
      const field = prefix ? prefix + rest : rest.replace(/^\./, '') || 'arguments';
      throw new AppError(err.kind, err.message.replace(err.data.field, field), { ...err.data, field });
    }
    throw err;
  }
}
