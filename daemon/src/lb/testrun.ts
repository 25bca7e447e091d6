// SPDX-License-Identifier: Apache-2.0
// BPF_PROG_TEST_RUN for XDP programs: run a program on a frame and get back its verdict,
// the frame as it left, and the in-kernel time per run. Used by the LB's tests (to check
// translations byte for byte) and by bench/lb (per-packet cost, and the live-frames
// traffic generator). bpf_fib_lookup inside a test run resolves in the caller's network
// namespace, so callers run this inside the balancer's namespace.
import koffi from 'koffi';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../bpf/uapi.js';

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

const OPTS_SIZE = 80; // struct bpf_test_run_opts, libbpf 1.1 (last field batch_size)
const XDP_MD_SIZE = 24; // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex

/** Reusable runner: buffers live in explicit ArrayBuffers (V8 never moves them; koffi takes their addresses). */
export class XdpTestRunner {
  private readonly opts = Buffer.from(new ArrayBuffer(OPTS_SIZE));
  private readonly ctx = Buffer.from(new ArrayBuffer(XDP_MD_SIZE));
  private readonly out = Buffer.from(new ArrayBuffer(4096));
  private input = Buffer.from(new ArrayBuffer(4096));

  constructor(readonly progFd: number, readonly name = 'xdp program') {}

  run(frame: Buffer, o: XdpRunOptions = {}): XdpRunResult {
    if (frame.length > this.input.length) throw new RangeError(`frame of ${frame.length} bytes is larger than ${this.input.length}`);
    frame.copy(this.input, 0);
    this.opts.fill(0);
    this.ctx.fill(0);
    this.opts.writeBigUInt64LE(BigInt(OPTS_SIZE), 0);
    this.opts.writeBigUInt64LE(BigInt(koffi.address(this.input)), 8);
    this.opts.writeUInt32LE(frame.length, 24);
    if (!o.live) {
      this.opts.writeBigUInt64LE(BigInt(koffi.address(this.out)), 16);
      this.opts.writeUInt32LE(this.out.length, 28);
    }
    // xdp_md: data and data_end are offsets here (data_end = frame length).
    this.ctx.writeUInt32LE(0, 0);
    this.ctx.writeUInt32LE(frame.length, 4);
    this.ctx.writeUInt32LE(o.ingressIfindex ?? 0, 12);
    if (o.ingressIfindex) {
      this.opts.writeBigUInt64LE(BigInt(koffi.address(this.ctx)), 32);
      this.opts.writeUInt32LE(XDP_MD_SIZE, 48);
    }
    this.opts.writeInt32LE(o.repeat ?? 1, 60);
    if (o.live) {
      this.opts.writeUInt32LE(BPF_F_TEST_XDP_LIVE_FRAMES, 68);
      this.opts.writeUInt32LE(o.batchSize ?? 64, 76);
    }
    const ret = L.bpf_prog_test_run_opts(this.progFd, this.opts);
    if (ret < 0) throw new BpfError('running', this.name, -ret, { detail: 'BPF_PROG_TEST_RUN' });
    const retval = this.opts.readUInt32LE(56);
    const outLen = o.live ? 0 : this.opts.readUInt32LE(28);
    return {
      retval,
      action: XDP_ACTION[retval] ?? String(retval),
      data: Buffer.from(this.out.subarray(0, outLen)),
      durationNs: this.opts.readUInt32LE(64),
    };
  }
}
