// SPDX-License-Identifier: Apache-2.0
// C helpers (load generators, raw senders) compiled at run time into a temp dir, for the
// tests and the benches (bench/lib/harness.ts re-exports these).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, from build/js/{test,bench}/<dir>/. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Compiles one C helper with gcc -O2 against libbpf; returns the binary's path. */
export function compileC(src: string, outDir: string, includeDirs: string[] = []): string {
  const out = path.join(outDir, path.basename(src, '.c'));
  const args = ['-O2', '-Wall', ...includeDirs.flatMap((d) => ['-I', d]), '-o', out, src, '-lbpf'];
  try {
    execFileSync('gcc', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer };
    throw new Error(`gcc ${src} failed (is libbpf-dev installed? scripts/setup.sh): ${e.stderr?.toString() ?? err}`);
  }
  return out;
}
