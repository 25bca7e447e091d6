// SPDX-License-Identifier: Apache-2.0
// Runs one command in a fresh 6.1 guest and prints its output and exit status, for
// debugging the harness or a test on the second kernel:
//
//   sudo node build/js/test/e2e/qemu/run.js 'uname -r; bpftool prog show | head'
//   sudo EBPFMON_TEST_KEEP=1 node build/js/test/e2e/qemu/run.js 'node build/js/test/run.js integration/flows'
//
// The command runs as root in the project directory (read-only; EBPFMON_QEMU_PROJECT=<dir>
// shares another built copy instead); files it writes to $EBPFMON_GUEST_OUT are printed
// after it. EBPFMON_QEMU_TIMEOUT_S bounds the command (default 900).
import { prepareGuest, runInGuest } from './guest.js';
import { secs } from './cache.js';
import { GUEST_L7_PACKAGES } from './image.js';

const command = process.argv.slice(2).join(' ') || 'uname -a';
// EBPFMON_QEMU_PACKAGES: more Debian packages in the guest's image (an image of their own),
// comma-separated; `l7` stands for what test/e2e/l7.test.ts needs (GUEST_L7_PACKAGES).
const extra = (process.env.EBPFMON_QEMU_PACKAGES ?? '').split(',').filter(Boolean).flatMap((p) => (p === 'l7' ? GUEST_L7_PACKAGES : [p]));
const guest = await prepareGuest({ extraPackages: extra });
const r = await runInGuest(command, {
  guest,
  ...(process.env.EBPFMON_QEMU_PROJECT ? { projectRoot: process.env.EBPFMON_QEMU_PROJECT } : {}),
  timeoutMs: Number(process.env.EBPFMON_QEMU_TIMEOUT_S ?? 900) * 1000,
  onOutput: (line, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(`${line}\n`),
});
for (const [name, text] of Object.entries(r.files)) process.stdout.write(`--- $EBPFMON_GUEST_OUT/${name}\n${text}`);
process.stderr.write(`exit ${r.code}; prepare ${secs(guest.ms)}, boot ${secs(r.timings.bootMs)}, command ${secs(r.timings.commandMs)}, total ${secs(r.timings.totalMs)}, attempts ${r.attempts}\n`);
process.exitCode = r.code;
