// SPDX-License-Identifier: Apache-2.0
// The benches that build hosts run their body in a fresh test Lab (namespaces, veths,
// pins, processes), destroyed on return, on error and on SIGINT/SIGTERM.
import { Lab } from '../../test/helpers/lab.js';

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
  try {
    await body(lab);
  } finally {
    await destroy();
  }
}
