// SPDX-License-Identifier: Apache-2.0
// The benches that build hosts run their body in a fresh test Lab (namespaces, veths,
// pins, processes), destroyed on return, on error, on SIGINT/SIGTERM, when stdout's reader
// goes away (`| head`: EPIPE) and on an exception thrown outside the body's promise.
import { Lab } from '../../test/helpers/lab.js';
import './help.js';

export async function withLab(bench: string, body: (lab: Lab) => Promise<void>): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${bench} needs root (BPF, namespaces)`);
  let lab: Lab | null = await Lab.create();
  const destroy = async () => {
    const l = lab;
    lab = null;
    await l?.destroy();
  };
  // Interrupted: kill the lab's processes, tear down its pins and namespaces, then exit.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void destroy().finally(() => process.exit(130)));
  // Node ignores SIGPIPE: a closed stdout is an EPIPE error on the next write, which would end
  // the process with the lab (and the bench's daemon) left behind.
  const onPipe = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') void destroy().finally(() => process.exit(141));
  };
  const onCrash = (err: unknown) => {
    process.stderr.write(`${bench}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    void destroy().finally(() => process.exit(1));
  };
  process.stdout.on('error', onPipe);
  process.once('uncaughtException', onCrash);
  try {
    await body(lab);
  } finally {
    process.stdout.off('error', onPipe);
    process.off('uncaughtException', onCrash);
    await destroy();
  }
}
