// SPDX-License-Identifier: Apache-2.0
// Loads a program generated at run time (bpf_prog_load through libbpf), with the
// verifier's log captured so that a refusal names its reason. Returns the program fd;
// the caller owns it (close it, or hand it to a prog array and close it).
import koffi from 'koffi';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { close } from '../sys/libc.js';
import { INSN_SIZE } from './ebpf.js';

export const BPF_PROG_TYPE_SCHED_CLS = 3;
/** struct bpf_prog_load_opts (libbpf 1.1): sz @0, log_level @88, log_size @92, log_buf @96. */
const OPTS_SIZE = 104;
const LOG_SIZE = 1 << 20;

export interface LoadedProgram {
  fd: number;
  name: string;
  insns: number;
  close(): void;
}

/**
 * Loads `insns` as a sched_cls (TC) program named `name` (at most 15 characters). On a
 * refusal, the last meaningful verifier line becomes the error's detail and, when
 * `keepLog` is set, the whole log is attached as `verifierLog`.
 */
export function loadSchedCls(name: string, insns: Buffer, opts: { keepLog?: boolean } = {}): LoadedProgram {
  const count = insns.length / INSN_SIZE;
  const o = Buffer.from(new ArrayBuffer(OPTS_SIZE));
  o.writeBigUInt64LE(BigInt(OPTS_SIZE), 0);
  // First without a log (no cost); on failure again with one, to say why.
  let fd = L.bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, name, 'Dual BSD/GPL', insns, count, o);
  if (fd < 0) {
    const log = Buffer.from(new ArrayBuffer(LOG_SIZE));
    o.writeUInt32LE(1, 88);
    o.writeUInt32LE(LOG_SIZE, 92);
    o.writeBigUInt64LE(BigInt(koffi.address(log)), 96);
    const fd2 = L.bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, name, 'Dual BSD/GPL', insns, count, o);
    if (fd2 >= 0) {
      fd = fd2; // accepted the second time (a transient failure)
    } else {
      const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0)));
      const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
      const reason = [...lines].reverse().find((l) => !/^(processed \d+ insns|verification time|stack depth|\d+: )/.test(l));
      const err = new BpfError('loading', name, -fd, { detail: reason ? `${reason}; ${count} instructions` : `${count} instructions` });
      if (opts.keepLog) Object.assign(err, { verifierLog: text });
      throw err;
    }
  }
  let open = true;
  return {
    fd,
    name,
    insns: count,
    close: () => {
      if (open) close(fd);
      open = false;
    },
  };
}
