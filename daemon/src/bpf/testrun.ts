// SPDX-License-Identifier: Apache-2.0
// BPF_PROG_TEST_RUN's options, shared by the LB's XDP runner (lb/testrun.ts) and the
// monitor's batch flow reader (monitor/flowread.ts).
import { field as f, type StructSpec } from './layout.js';

/**
 * struct bpf_test_run_opts of libbpf 1.1 (<bpf/bpf.h>), what bpf_prog_test_run_opts()
 * takes. A user-space struct, so no BTF carries it: test/unit/daemon/bpf/testrun.test.ts
 * checks this layout against the installed header with the C compiler (offsetof).
 */
export const TEST_RUN_OPTS = {
  name: 'bpf_test_run_opts', size: 80, header: 'bpf/bpf.h',
  fields: {
    sz: f(0, 8), data_in: f(8, 8), data_out: f(16, 8), data_size_in: f(24, 4), data_size_out: f(28, 4), ctx_in: f(32, 8),
    ctx_out: f(40, 8), ctx_size_in: f(48, 4), ctx_size_out: f(52, 4), retval: f(56, 4), repeat: f(60, 4), duration: f(64, 4),
    flags: f(68, 4), cpu: f(72, 4), batch_size: f(76, 4),
  },
} as const satisfies Omit<StructSpec, 'object'> & { header: string };
