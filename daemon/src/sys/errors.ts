// SPDX-License-Identifier: Apache-2.0
// A system call on some object failed: the message reads like `mounting bpffs at /x:
// EINVAL (pin path is not on a bpf filesystem); use a pinPath under /sys/fs/bpf`. The
// kernel-facing layers throw it (bpf/errors.ts BpfError is the libbpf flavour); the API
// layer turns it into the `Kernel` error clients see (api/errors.ts).
import { errnoName } from './errno.js';

export class SystemError extends Error {
  override name = 'SystemError';
  readonly op: string;
  readonly object: string;
  readonly target: string | undefined;
  /** Positive errno, or 0 when the failure has no errno. */
  readonly errno: number;
  readonly errnoName: string;
  readonly detail: string | undefined;

  constructor(op: string, object: string, errno: number, opts: { target?: string; detail?: string; hint?: string; context?: string } = {}) {
    const e = Math.abs(errno);
    const where = opts.target ? `${object} ${op === 'attaching' ? 'to' : op === 'detaching' ? 'from' : 'at'} ${opts.target}` : object;
    let msg = `${op} ${where}: ${e ? errnoName(e) : 'failed'}`;
    if (opts.detail) msg += ` (${opts.detail})`;
    if (opts.hint) msg += `; ${opts.hint}`;
    super(opts.context ? `${opts.context}: ${msg}` : msg);
    this.op = op;
    this.object = object;
    this.target = opts.target;
    this.errno = e;
    this.errnoName = e ? errnoName(e) : '';
    this.detail = opts.detail;
  }
}
