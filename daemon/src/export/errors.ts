// SPDX-License-Identifier: Apache-2.0
// The exports' errors: bad settings, and ClickHouse's answers mapped once (here) into
// "retry later" or "this batch will never be accepted", keeping the original as `cause`.

export class ExportConfigError extends Error {
  override readonly name = 'ExportConfigError';
}

/**
 * ClickHouse exception codes (src/Common/ErrorCodes.cpp, stable since the 2016 releases)
 * that mean the rows themselves are refused: sending the same body again cannot succeed.
 */
const DATA_ERRORS = new Map<number, string>([
  [6, 'CANNOT_PARSE_TEXT'], [26, 'CANNOT_PARSE_QUOTED_STRING'], [27, 'CANNOT_PARSE_INPUT_ASSERTION_FAILED'],
  [38, 'CANNOT_PARSE_DATE'], [41, 'CANNOT_PARSE_DATETIME'], [49, 'LOGICAL_ERROR (bad enum value in old servers)'],
  [53, 'TYPE_MISMATCH'], [69, 'ARGUMENT_OUT_OF_BOUND'], [70, 'CANNOT_CONVERT_TYPE'], [72, 'CANNOT_PARSE_NUMBER'],
  [117, 'INCORRECT_DATA'], [131, 'TOO_LARGE_STRING_SIZE'],
]);
/** Unknown table or database: create the schema, then retry. */
const SCHEMA_MISSING = new Set([60, 81]);

export type ClickHouseErrorKind = 'network' | 'timeout' | 'schema' | 'data' | 'server';

export class ClickHouseError extends Error {
  override readonly name = 'ClickHouseError';
  constructor(
    message: string,
    readonly kind: ClickHouseErrorKind,
    /** ClickHouse's exception code, when the server answered with one. */
    readonly code: number | null,
    /** HTTP status, when the server answered. */
    readonly status: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Worth sending the same rows again later (everything but refused data). */
  get retryable(): boolean {
    return this.kind !== 'data';
  }
}

/**
 * An HTTP answer other than 200. Servers before 19.x say `Code: 60, e.displayText() = ...`,
 * later ones `Code: 60. DB::Exception: ...` and the X-ClickHouse-Exception-Code header.
 */
export function clickHouseHttpError(status: number, body: string, header: string | undefined, what: string): ClickHouseError {
  const code = header !== undefined && /^\d+$/.test(header) ? Number(header) : Number(/Code: (\d+)[,.]/.exec(body)?.[1] ?? NaN);
  const known = Number.isNaN(code) ? null : code;
  const text = body.trim().split('\n')[0]!.slice(0, 500) || `HTTP ${status}`;
  const kind: ClickHouseErrorKind = known !== null && SCHEMA_MISSING.has(known) ? 'schema' : known !== null && DATA_ERRORS.has(known) ? 'data' : 'server';
  return new ClickHouseError(`${what}: ${text}`, kind, known, status);
}

/** A failure below HTTP (refused, reset, DNS, TLS) or no answer in time. */
export function clickHouseNetworkError(err: Error & { code?: string }, what: string, timedOut: boolean): ClickHouseError {
  return new ClickHouseError(`${what}: ${timedOut ? 'no answer in time' : err.code ? `${err.code} (${err.message})` : err.message}`, timedOut ? 'timeout' : 'network', null, null, { cause: err });
}
