// SPDX-License-Identifier: Apache-2.0
// One-off check (not a test file): the capture engine's property test and the delivery
// program on Debian 12's 6.1 kernel, in the qemu guest of test/e2e/kernel-6.1.test.ts.
//   sudo node build/js/test/e2e/qemu/capture-61.js
// Prints the guest's report and exits with its status.
import { prepareGuest, runInGuest } from './guest.js';

const guest = await prepareGuest();
const r = await runInGuest(`set -u
uname -r
EBPFMON_CAPTURE_QUICK=1 node build/js/test/run.js integration/capture-engine 2>&1 | tail -25
a="\${PIPESTATUS[0]}"
node build/js/test/e2e/qemu/capture-path-check.js
b=$?
exit $((a + b))`, { guest, timeoutMs: 20 * 60_000 });
process.stdout.write(`${r.stdout}\n${r.stderr.slice(-3000)}\nexit ${r.code}\n`);
process.exit(r.code === 0 ? 0 : 1);
