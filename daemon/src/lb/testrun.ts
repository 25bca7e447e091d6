// SPDX-License-Identifier: Apache-2.0
// BPF_PROG_TEST_RUN for XDP programs: run a program on a frame and get back its verdict,
// the frame as it left, and the in-kernel time per run. Used by the LB's tests (to check
// translations byte for byte) and by bench/lb (per-packet cost, and the live-frames
// traffic generator). bpf_fib_lookup inside a test run resolves in the caller's network
// namespace, so callers run this inside the balancer's namespace.
import koffi from 'koffi';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { readUint, writeU64, writeUint } from '../bpf/layout.js';
import { TEST_RUN_OPTS } from '../bpf/testrun.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../bpf/uapi.js';
import { XDP_MD } from './wire.js';

export const XDP_ACTION = { 0: 'aborted', 1: 'drop', 2: 'pass', 3: 'tx', 4: 'redirect' } as Record<number, string>;

export interface XdpRunResult {
  retval: number;
  action: string;
  /** The frame after the program (empty in live-frames mode). */
  data: Buffer;
  /** Average in-kernel ns per repetition. */
  durationNs: number;
}

export interface XdpRunOptions {
  repeat?: number;
  /** struct xdp_md.ingress_ifindex: the interface the frame "arrived" on (fib lookups, XDP_TX). */
  ingressIfindex?: number;
  /** BPF_F_TEST_XDP_LIVE_FRAMES: XDP_TX/REDIRECT really transmit, XDP_PASS enters the stack. */
  live?: boolean;
  batchSize?: number;
}


const addr = (b: Buffer): bigint => BigInt(koffi.address(b));

/** Reusable runner: buffers live in explicit ArrayBuffers (V8 never moves them; koffi takes their addresses). */
export class XdpTestRunner {
  private readonly opts = Buffer.from(new ArrayBuffer(TEST_RUN_OPTS.size));
  private readonly ctx = Buffer.from(new ArrayBuffer(XDP_MD.size));
  private readonly out = Buffer.from(new ArrayBuffer(4096));
  private input = Buffer.from(new ArrayBuffer(4096));

  constructor(readonly progFd: number, readonly name = 'xdp program') {}

  run(frame: Buffer, o: XdpRunOptions = {}): XdpRunResult {
    if (frame.length > this.input.length) throw new RangeError(`frame of ${frame.length} bytes is larger than ${this.input.length}`);
    const O = TEST_RUN_OPTS.fields;
    const X = XDP_MD.fields;
    frame.copy(this.input, 0);
    this.opts.fill(0);
    this.ctx.fill(0);
    writeU64(this.opts, O.sz, BigInt(TEST_RUN_OPTS.size));
    writeU64(this.opts, O.data_in, addr(this.input));
    writeUint(this.opts, O.data_size_in, frame.length);
    if (!o.live) {
      writeU64(this.opts, O.data_out, addr(this.out));
      writeUint(this.opts, O.data_size_out, this.out.length);
    }
    // xdp_md: data and data_end are offsets here (data_end = frame length).
    writeUint(this.ctx, X.data, 0);
    writeUint(this.ctx, X.data_end, frame.length);
    writeUint(this.ctx, X.ingress_ifindex, o.ingressIfindex ?? 0);
    if (o.ingressIfindex) {
      writeU64(this.opts, O.ctx_in, addr(this.ctx));
      writeUint(this.opts, O.ctx_size_in, XDP_MD.size);
    }
    // `int repeat`: always positive here, so its bytes are the unsigned ones.
    writeUint(this.opts, O.repeat, o.repeat ?? 1);
    if (o.live) {
      writeUint(this.opts, O.flags, BPF_F_TEST_XDP_LIVE_FRAMES);
      writeUint(this.opts, O.batch_size, o.batchSize ?? 64);
    }
    const ret = L.bpf_prog_test_run_opts(this.progFd, this.opts);
    if (ret < 0) throw new BpfError('running', this.name, -ret, { detail: 'BPF_PROG_TEST_RUN' });
    const retval = readUint(this.opts, TEST_RUN_OPTS.fields.retval);
    const outLen = o.live ? 0 : readUint(this.opts, TEST_RUN_OPTS.fields.data_size_out);
    return {
      retval,
      action: XDP_ACTION[retval] ?? String(retval),
      data: Buffer.from(this.out.subarray(0, outLen)),
      durationNs: readUint(this.opts, TEST_RUN_OPTS.fields.duration),
    };
  }
}
