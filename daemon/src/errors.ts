// SPDX-License-Identifier: Apache-2.0
// The error a client is meant to see: a name from the contract's table (contract/errors.ts)
// and structured data naming the input at fault. Domain code throws it for domain
// failures (UnknownVip, VipExists...); the API layer turns every other error into one
// (api/errors.ts toApiError), and the adapters format it for JSON-RPC or D-Bus.
import { ERRORS, type ErrorData, type ErrorName } from './contract/errors.js';

/** An error meant for a client: carries a name from ERRORS and structured data. */
export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(readonly kind: ErrorName, message?: string, readonly data?: ErrorData) {
    super(message ?? ERRORS[kind].message);
  }

  get code(): number {
    return ERRORS[this.kind].code;
  }

  get dbusName(): string {
    return ERRORS[this.kind].dbus;
  }
}

/**
 * A value for an error message, safe whatever the client sent: strings are cut, and
 * arrays and objects are described, never serialised (a hostile, deeply nested value
 * would overflow the stack of JSON.stringify).
 */
export function describeValue(value: unknown): { text: string; echo: unknown } {
  if (typeof value === 'string') {
    const shown = value.length > 80 ? `${value.slice(0, 80)}...` : value;
    return { text: JSON.stringify(shown), echo: shown };
  }
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return { text: String(value), echo: value };
  if (value === undefined) return { text: 'nothing', echo: undefined };
  if (Array.isArray(value)) return { text: `an array of ${value.length}`, echo: undefined };
  return { text: `a${typeof value === 'object' ? 'n object' : ` ${typeof value}`}`, echo: undefined };
}

/** InvalidParams naming the field, the value received and what was expected. */
export function invalidParam(field: string, value: unknown, expected: string): AppError {
  const { text, echo } = describeValue(value);
  return new AppError('InvalidParams', `${field}: expected ${expected}, got ${text}`, { field, value: echo, expected });
}
