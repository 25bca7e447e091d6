// SPDX-License-Identifier: Apache-2.0
// The in-kernel filter engines under test, behind one shape: load a compiled expression,
// run one frame, get the verdict the kernel computed (the program's return value).
import path from 'node:path';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { checkProgram } from '../../daemon/src/capture/cbpf.js';
import { ROOT } from './cc.js';
import type { CbpfProgram } from '../../daemon/src/capture/pcap.js';
import { loadSchedCls } from '../../daemon/src/capture/progload.js';
import { verdictProgram } from '../../daemon/src/capture/translate.js';
import type { TcTestRunner } from '../../bench/classifier/testrun.js';

export interface LoadedEngine {
  run(runner: TcTestRunner, frame: Buffer): number;
  close(): void;
}

export interface EngineUnderTest {
  name: string;
  /** libpcap optimizer settings to test (unoptimized code has other shapes: dead code, scratch memory). */
  optimizeModes: readonly boolean[];
  load(prog: CbpfProgram, base: number): LoadedEngine;
}

function translated(name: string, directAccess: boolean, optimizeModes: readonly boolean[]): EngineUnderTest {
  return {
    name,
    optimizeModes,
    load(prog, base) {
      const p = loadSchedCls('emon_cap_test', verdictProgram(checkProgram(prog), { base, directAccess }));
      return {
        run: (runner, frame) => runner.run(p.fd, p.name, frame, 1).retval >>> 0,
        close: () => p.close(),
      };
    },
  };
}

export const ENGINES: EngineUnderTest[] = [
  translated('translated to eBPF (direct packet access)', true, [true, false]),
  translated('translated to eBPF (bpf_skb_load_bytes only)', false, [true]),
];

/** test/fixtures/bpf/cap_interp.bpf.c: the instructions go into its map; one object for all. */
const CI_MAX_INSNS = 512;
let interp: BpfObject | null = null;
function interpreter(): EngineUnderTest {
  return {
    name: 'interpreted in BPF C (bpf_loop, instructions in a map)',
    optimizeModes: [true, false],
    load(prog, base) {
      // Backward jumps (protochain): bpf_loop bounds the steps.
      const insns = checkProgram(prog);
      if (!interp) {
        interp = BpfObject.open(path.join(ROOT, 'build/bpf/fixtures/cap_interp.bpf.o'));
        interp.load();
      }
      if (insns.length > CI_MAX_INSNS) throw new Error(`${insns.length} instructions: the interpreter takes ${CI_MAX_INSNS}`);
      const v = Buffer.alloc(8 + 8 * CI_MAX_INSNS);
      v.writeUInt32LE(insns.length, 0);
      v.writeUInt32LE(base, 4);
      prog.insns.copy(v, 8);
      interp.map('emon_ci_code').update(Buffer.alloc(4), v);
      const fd = interp.progFd('tc_ci_verdict');
      return {
        run: (runner, frame) => runner.run(fd, 'tc_ci_verdict', frame, 1).retval >>> 0,
        close: () => {},
      };
    },
  };
}

ENGINES.push(interpreter());
