// SPDX-License-Identifier: Apache-2.0
// Flows read by key, READ_BATCH at a time, through bpf/flowread.bpf.c (issue 17): the keys
// go into the slots of an mmapped array, one BPF_PROG_TEST_RUN of read_flows looks each up
// in emon_flows and copies what it finds next to it, and the values are read from the same
// pages. One syscall per batch instead of one per flow: a lookup syscall costs about 1.8 us
// here from C and 2.5-3 us through koffi, the batch about 0.1-0.2 us per flow
// (docs/benchmarks.md "Flows read in batches"). Without it (the kernel refused the program,
// or a run failed) the flow table reads one flow per lookup, as before (flows.ts).
import koffi from 'koffi';
import * as L from '../bpf/libbpf.js';
import { BpfError } from '../bpf/errors.js';
import { readUint, writeU64 } from '../bpf/layout.js';
import type { BpfMap } from '../bpf/maps.js';
import { TEST_RUN_OPTS } from '../bpf/testrun.js';
import { ERRNO } from '../sys/errno.js';
import { lastErrno, MAP_SHARED, mmap, munmap, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import { keyBytes } from './ownerindex.js';
import { FLOW, FLOW_KEY, READ_BATCH, READ_BUF, READ_SLOT } from './wire.js';

const PAGE = 4096;
const SLOTS = READ_BUF.fields.slots.offset;
const VAL = READ_SLOT.fields.val.offset;
const FOUND_WORD = (SLOTS + READ_SLOT.fields.found.offset) / 4;
const SLOT_WORDS = READ_SLOT.size / 4;

export class FlowBatchReader {
  static readonly BATCH = READ_BATCH;
  private readonly ptr: bigint;
  private readonly len: number;
  /** The mapping as 32-bit words: [0] count, [1] done, a slot's `found` at FOUND_WORD + j * SLOT_WORDS. */
  private readonly words: Uint32Array;
  /** Per slot: its key's bytes, and its value's. */
  private readonly keys: Buffer[] = [];
  private readonly vals: Uint8Array[] = [];
  private readonly opts = Buffer.from(new ArrayBuffer(TEST_RUN_OPTS.size));
  private closed = false;

  constructor(private readonly progFd: number, private readonly buf: BpfMap) {
    if (buf.info.valueSize !== READ_BUF.size || buf.info.maxEntries !== 1) {
      throw new BpfError('mapping', buf.name, ERRNO.EINVAL, { detail: `value size ${buf.info.valueSize}, expected ${READ_BUF.size}` });
    }
    this.len = Math.ceil(READ_BUF.size / PAGE) * PAGE;
    const p = mmap(null, this.len, PROT_READ | PROT_WRITE, MAP_SHARED, buf.fd, 0);
    if (p === null || p === (1n << 64n) - 1n) throw new BpfError('mapping', buf.name, lastErrno(), { detail: 'read slots' });
    this.ptr = p;
    const ab = koffi.view(p, this.len);
    this.words = new Uint32Array(ab, 0, this.len >> 2);
    for (let j = 0; j < READ_BATCH; j++) {
      const at = SLOTS + j * READ_SLOT.size;
      this.keys.push(Buffer.from(ab, at, FLOW_KEY.size));
      this.vals.push(new Uint8Array(ab, at + VAL, FLOW.size));
    }
    writeU64(this.opts, TEST_RUN_OPTS.fields.sz, BigInt(TEST_RUN_OPTS.size));
  }

  /**
   * Reads `keys[from]` .. `keys[from + n - 1]` (n at most READ_BATCH, keys as
   * ownerindex.ts keyString() makes them) into the slots. Throws a BpfError when the run
   * fails; then nothing in the slots is to be trusted.
   */
  read(keys: readonly string[], from: number, n: number): void {
    if (this.closed) throw new BpfError('running', 'read_flows', ERRNO.EBADF, { detail: 'reader closed' });
    if (n > READ_BATCH) throw new RangeError(`at most ${READ_BATCH} flows per read, not ${n}`);
    for (let j = 0; j < n; j++) keyBytes(keys[from + j]!, this.keys[j]);
    this.words[0] = n;
    this.words[1] = 0;
    const ret = L.bpf_prog_test_run_opts(this.progFd, this.opts);
    if (ret < 0) throw new BpfError('running', 'read_flows', -ret, { detail: 'BPF_PROG_TEST_RUN' });
    const rv = readUint(this.opts, TEST_RUN_OPTS.fields.retval);
    if (rv !== 0 || this.words[1] !== n) {
      throw new BpfError('running', 'read_flows', ERRNO.EIO, { detail: `returned ${rv} after ${this.words[1]} of ${n} flows` });
    }
  }

  /** Slot j after read(): whether its flow was there, its value copied into `vb`; its
   * key's bytes into `kb` when given (read() converted the key already). */
  take(j: number, vb: Uint8Array, kb?: Uint8Array): boolean {
    kb?.set(this.keys[j]!);
    if (this.words[FOUND_WORD + j * SLOT_WORDS] === 0) return false;
    vb.set(this.vals[j]!);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    munmap(this.ptr, this.len);
  }
}
