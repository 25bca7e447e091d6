// SPDX-License-Identifier: Apache-2.0
// The error for everything that crosses into libbpf or the kernel's BPF calls: a
// SystemError whose message reads like `attaching tc_ingress to ebm0: EPERM`; `detail`
// carries the verifier's or libbpf's explanation when there is one.
import { SystemError } from '../sys/errors.js';

export type BpfOp =
  | 'opening' | 'loading' | 'attaching' | 'detaching' | 'pinning' | 'unpinning'
  | 'reopening' | 'reading' | 'updating' | 'deleting' | 'creating' | 'mounting'
  | 'querying' | 'running' | 'mapping' | 'resizing' | 'finding';

export class BpfError extends SystemError {
  override name = 'BpfError';
  readonly code = 'BPF_ERROR';
  declare readonly op: BpfOp;

  constructor(op: BpfOp, object: string, errno: number, opts: { target?: string; detail?: string; hint?: string; context?: string } = {}) {
    super(op, object, errno, opts);
  }
}

/** libbpf int convention: negative errno on failure. Returns the value when >= 0. */
export function check(ret: number, op: BpfOp, object: string, opts?: { target?: string; detail?: string }): number {
  if (ret < 0) throw new BpfError(op, object, -ret, opts);
  return ret;
}
