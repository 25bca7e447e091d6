// SPDX-License-Identifier: Apache-2.0
// Loads BPF objects with the project's loader and prints what loaded, as one JSON line:
// [{file, ok, programs: [{name, section, fd}]} | {file, ok: false, error}]. The harness
// test runs it inside the container as a confined transient service, so that it gets
// exactly what a unit gets (nspawn's seccomp filter and capabilities, the unit's bounding
// set): loading proves CAP_BPF, CAP_PERFMON and the bpf() syscall filter work there.
import { BpfObject } from '../../../daemon/src/bpf/object.js';

type Outcome = { file: string; ok: true; programs: Array<{ name: string; section: string; fd: number }> } | { file: string; ok: false; error: string };

const results: Outcome[] = [];
for (const file of process.argv.slice(2)) {
  let obj: BpfObject | null = null;
  try {
    obj = BpfObject.open(file);
    obj.load();
    const loaded = obj;
    results.push({ file, ok: true, programs: loaded.programs().map((p) => ({ name: p.name, section: p.section, fd: loaded.progFd(p.name) })) });
  } catch (e) {
    results.push({ file, ok: false, error: (e as Error).message });
  } finally {
    obj?.close();
  }
}
console.log(JSON.stringify(results));
process.exitCode = results.every((r) => r.ok) ? 0 : 3;
