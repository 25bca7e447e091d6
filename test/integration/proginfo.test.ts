// SPDX-License-Identifier: Apache-2.0
// progInfo() (bpf_obj_get_info_by_fd, decoded at UAPI offsets) against bpftool's own
// reading of the same programs, with recursion misses made on purpose: a fixture program
// (test/fixtures/bpf/recursion.bpf.c) sends this process a signal from inside a
// tracepoint program, and the kernel skips the program on the signal tracepoint. That is
// how the classic inet_sock_set_state tracepoint lost TCP closes, and why `status` counts
// recursion misses (loss.probeMisses).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { progInfo } from '../../daemon/src/bpf/info.js';
import { sh } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const FIXTURE = path.join(ROOT, 'build/bpf/fixtures/recursion.bpf.o');
const CALLS = 200;

describe('bpf_prog_info', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject | undefined;
  const links: L.Ptr[] = [];

  before(() => {
    requireTool('bpftool');
    obj = BpfObject.open(FIXTURE);
    obj.load();
    const tgid = Buffer.alloc(4);
    tgid.writeUInt32LE(process.pid);
    obj.map('emon_rec_cfg').update(Buffer.alloc(4), tgid);
    for (const prog of ['inner', 'outer']) {
      const link = L.bpf_program__attach(obj.program(prog));
      assert.ok(link, `attaching ${prog}`);
      links.push(link);
    }
  });
  after(() => {
    for (const l of links) L.bpf_link__destroy(l);
    obj?.close();
  });

  const runs = (i: number) => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    return Number(obj!.map('emon_rec_runs').lookup(key)!.readBigUInt64LE(0));
  };
  const bpftool = async (id: number) => JSON.parse((await sh('bpftool', ['prog', 'show', 'id', String(id), '--json'])).stdout) as Record<string, unknown>;

  test('recursion misses: the program the kernel skipped counts the runs it missed, as bpftool reads them', async () => {
    const innerFd = obj!.progFd('inner');
    const before1 = progInfo(innerFd).recursionMisses;
    for (let i = 0; i < CALLS; i++) void process.ppid; // getppid(2) each time
    const outerRuns = runs(0);
    assert.ok(outerRuns >= CALLS, `outer ran ${outerRuns} times for ${CALLS} getppid calls`);
    assert.equal(runs(1), 0, 'inner never ran inside outer');
    const info = progInfo(innerFd);
    assert.ok(info.recursionMisses - before1 >= BigInt(outerRuns), `misses ${info.recursionMisses - before1} for ${outerRuns} nested runs`);
    const truth = await bpftool(info.id);
    assert.equal(truth.name, info.name);
    assert.equal(truth.tag, info.tag);
    assert.equal(BigInt(truth.recursion_misses as number), progInfo(innerFd).recursionMisses);
    // The same signal sent outside any BPF program does reach inner.
    process.kill(process.pid, 'SIGURG');
    assert.equal(runs(1), 1, 'inner runs when nothing else is running');
  });
});
