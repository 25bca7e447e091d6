// SPDX-License-Identifier: Apache-2.0
// The in-kernel filter engines under test, behind one shape: load a compiled expression,
// run one frame, get the verdict the kernel computed (the program's return value).
import { checkProgram } from '../../daemon/src/capture/cbpf.js';
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
