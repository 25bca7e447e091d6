// SPDX-License-Identifier: Apache-2.0
// Privileged tests run as root. As a normal user they skip; as root they must run, and a
// missing prerequisite (a tool, a kernel feature) fails them instead of skipping:
// test/run.ts fails the whole run when anything skips as root.
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

export const IS_ROOT = process.getuid?.() === 0;

/**
 * How much slower than this machine the tests run: the second-kernel guest runs under
 * software emulation (test/e2e/qemu/guest.ts sets EBPFMON_TEST_TIME_SCALE), where starting a
 * daemon takes ten times as long. Timeouts scale; what the tests assert does not.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.EBPFMON_TEST_TIME_SCALE) || 1);

/** A timeout in milliseconds, scaled for the machine the tests run on. */
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}

/**
 * Set in the second-kernel guest (test/e2e/kernel-6.1.test.ts): it is there to find what
 * another kernel does differently, under emulation where each daemon start costs 8-15 s.
 * Tests of user space alone (configuration errors, libbpf's reading of a file) are the same
 * code on both kernels and run on the host only; tests that scale with a count use a
 * smaller one there (see `secondKernelCount`).
 */
export const SECOND_KERNEL = process.env.EBPFMON_SECOND_KERNEL === '1';

/**
 * `hostOnlyTest` is node:test's `test` on the host and registers nothing in the second-kernel
 * guest (not a skip: the runner fails any skip as root). For tests that touch no kernel
 * interface, so that the guest's time goes to the ones that do.
 */
export const hostOnlyTest: typeof test = SECOND_KERNEL ? ((() => Promise.resolve()) as unknown as typeof test) : test;

/** `host` on the host, `guest` in the second-kernel guest. */
export function secondKernelCount(host: number, guest: number): number {
  return SECOND_KERNEL ? guest : host;
}

/** Options for node:test: `test('name', privileged(), async () => ...)`. */
export function privileged(extra: { timeout?: number; concurrency?: number } = {}): { skip?: string; timeout?: number; concurrency?: number } {
  const opts = extra.timeout === undefined ? { ...extra } : { ...extra, timeout: scaled(extra.timeout) };
  if (IS_ROOT) return opts;
  return { ...opts, skip: 'needs root (run the suite as root: sudo npm test)' };
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
