// SPDX-License-Identifier: Apache-2.0
// One error class for everything that crosses into libbpf or the kernel. The message
// reads like `attaching tc_ingress to ebm0: EPERM`; `detail` carries the verifier's or
// libbpf's explanation when there is one.
import { errnoName } from '../sys/errno.js';

export type BpfOp =
  | 'opening' | 'loading' | 'attaching' | 'detaching' | 'pinning' | 'unpinning'
  | 'reopening' | 'reading' | 'updating' | 'deleting' | 'creating' | 'mounting'
  | 'querying' | 'running' | 'mapping' | 'resizing' | 'finding';

export class BpfError extends Error {
  override readonly name = 'BpfError';
  readonly code = 'BPF_ERROR';
  readonly op: BpfOp;
  readonly object: string;
  readonly target: string | undefined;
  /** Positive errno, or 0 when the failure has no errno (a missing program name). */
  readonly errno: number;
  readonly errnoName: string;
  readonly detail: string | undefined;

  constructor(op: BpfOp, object: string, errno: number, opts: { target?: string; detail?: string; hint?: string } = {}) {
    const e = Math.abs(errno);
    const where = opts.target ? `${object} ${op === 'attaching' ? 'to' : op === 'detaching' ? 'from' : 'at'} ${opts.target}` : object;
    const cause = e ? errnoName(e) : 'failed';
    let msg = `${op} ${where}: ${cause}`;
    if (opts.detail) msg += ` (${opts.detail})`;
    if (opts.hint) msg += `; ${opts.hint}`;
    super(msg);
    this.op = op;
    this.object = object;
    this.target = opts.target;
    this.errno = e;
    this.errnoName = e ? errnoName(e) : '';
    this.detail = opts.detail;
  }
}

/** libbpf int convention: negative errno on failure. Returns the value when >= 0. */
export function check(ret: number, op: BpfOp, object: string, opts?: { target?: string; detail?: string }): number {
  if (ret < 0) throw new BpfError(op, object, -ret, opts);
  return ret;
}
