// SPDX-License-Identifier: Apache-2.0
// A root shell on the serial console of a fresh 6.1 guest, for debugging on the second
// kernel (the project is mounted read-only at its own path, /usr/bin/node is the host's):
//
//   sudo node build/js/test/e2e/qemu/shell.js                      just a shell
//   sudo node build/js/test/e2e/qemu/shell.js 'node build/js/test/run.js integration/flows'
//                                                                  run that first, then the shell
//
// Kernel messages share the console. `exit` (or Ctrl-D) powers the guest off; Ctrl-A x kills
// qemu. Writes go to a snapshot of the image and vanish with the guest; files written to
// $EBPFMON_GUEST_OUT are printed after it (and kept with EBPFMON_TEST_KEEP=1). Bounded to 4 h.
import { prepareGuest, runInGuest } from './guest.js';

const first = process.argv.slice(2).join(' ');
const guest = await prepareGuest();
process.stderr.write('qemu: the guest console follows; `exit` powers it off, Ctrl-A x kills qemu\n');
const r = await runInGuest(`${first ? `${first}\necho "ebpfmon-guest: exit status $?"\n` : ''}exec bash -l`, {
  guest,
  interactive: true,
  timeoutMs: 4 * 3600_000,
  bootTimeoutMs: 5 * 60_000,
});
for (const [name, text] of Object.entries(r.files)) process.stdout.write(`--- $EBPFMON_GUEST_OUT/${name}\n${text}`);
process.exitCode = r.code;
