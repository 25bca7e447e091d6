// SPDX-License-Identifier: Apache-2.0
// BPF_PROG_TEST_RUN for TC (sched_cls) programs: one frame, `repeat` runs, the kernel's
// own average ns per run. struct bpf_test_run_opts as /usr/include/bpf/bpf.h (libbpf 1.1)
// lays it out: size_t sz @0; data_in @8; data_out @16; u32 data_size_in @24;
// data_size_out @28; ctx_in @32; ctx_out @40; u32 ctx_size_in @48; ctx_size_out @52;
// retval @56; int repeat @60; duration @64; flags @68; cpu @72; batch_size @76; 80 bytes.
import koffi from 'koffi';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfError } from '../../daemon/src/bpf/errors.js';

const OPTS_SIZE = 80;
const OFF = { sz: 0, dataIn: 8, dataOut: 16, dataSizeIn: 24, dataSizeOut: 28, retval: 56, repeat: 60, duration: 64 } as const;

export interface RunResult {
  retval: number;
  /** Kernel-measured average per repetition (ns, integer). */
  durationNs: number;
}

/** Buffers live in explicit ArrayBuffers (V8 never moves them; koffi takes their addresses). */
export class TcTestRunner {
  private readonly opts = Buffer.from(new ArrayBuffer(OPTS_SIZE));
  private readonly input = Buffer.from(new ArrayBuffer(2048));

  run(progFd: number, name: string, frame: Buffer, repeat: number): RunResult {
    if (frame.length > this.input.length) throw new RangeError(`frame of ${frame.length} bytes is larger than ${this.input.length}`);
    frame.copy(this.input, 0);
    this.opts.fill(0);
    this.opts.writeBigUInt64LE(BigInt(OPTS_SIZE), OFF.sz);
    this.opts.writeBigUInt64LE(BigInt(koffi.address(this.input)), OFF.dataIn);
    this.opts.writeUInt32LE(frame.length, OFF.dataSizeIn);
    this.opts.writeInt32LE(repeat, OFF.repeat);
    const ret = L.bpf_prog_test_run_opts(progFd, this.opts);
    if (ret < 0) throw new BpfError('running', name, -ret, { detail: 'BPF_PROG_TEST_RUN' });
    return { retval: this.opts.readInt32LE(OFF.retval), durationNs: this.opts.readUInt32LE(OFF.duration) };
  }
}
