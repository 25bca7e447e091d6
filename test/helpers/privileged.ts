// SPDX-License-Identifier: Apache-2.0
// Privileged tests run as root. As a normal user they skip; as root they must run, and a
// missing prerequisite (a tool, a kernel feature) fails them instead of skipping:
// test/run.ts fails the whole run when anything skips as root.
import { execFileSync } from 'node:child_process';

export const IS_ROOT = process.getuid?.() === 0;

/** Options for node:test: `test('name', privileged(), async () => ...)`. */
export function privileged(extra: { timeout?: number; concurrency?: number } = {}): { skip?: string; timeout?: number; concurrency?: number } {
  if (IS_ROOT) return { ...extra };
  return { ...extra, skip: 'needs root (run the suite as root: sudo npm test)' };
}

/** Throws (never skips) when a tool the test relies on is missing. */
export function requireTool(...tools: string[]): void {
  for (const tool of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is not installed: run scripts/setup.sh test (the test command does this)`);
    }
  }
}
