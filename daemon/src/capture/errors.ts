// SPDX-License-Identifier: Apache-2.0
// One error class for the capture domain, each with a stable code. The API layer maps
// the codes to its error table (proposed rows in api-types.ts); kernel and libbpf failures
// stay BpfError.

export type CaptureErrorCode =
  /** libpcap0.8 is not installed. */
  | 'PCAP_MISSING'
  /** The filter expression does not compile (libpcap's reason in the message). */
  | 'BAD_FILTER'
  /** The compiled filter uses something the in-kernel engine does not run. */
  | 'FILTER_UNSUPPORTED'
  | 'BAD_SNAPLEN'
  /** Too many sessions, or a program over the verifier's limits. */
  | 'TOO_MANY_SESSIONS'
  /** A pcapng block could not be written (bad input to the writer). */
  | 'PCAPNG';

export class CaptureError extends Error {
  override readonly name = 'CaptureError';
  readonly code: CaptureErrorCode;
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: CaptureErrorCode, message: string, opts: { cause?: unknown; detail?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.detail = opts.detail;
  }
}
