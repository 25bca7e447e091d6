// SPDX-License-Identifier: Apache-2.0
// Cache conventions of the qemu harness, the same as the nspawn harness's
// (test/e2e/nspawn/rootfs.ts): everything lives in $EBPFMON_TEST_CACHE (default
// /var/cache/ebpfmon-test), each artifact is named by a hash of its recipe, one process
// builds a key at a time (flock on `<name>.lock`), work in progress is named
// `<name>.tmp-<pid>` and renamed into place when complete (a dead builder's leftovers are
// removed by the next one), and keys unused for 30 days are pruned.
//
//   qemu-kernel-<key>/          the unpacked kernel package: vmlinux, config, lib/modules
//   qemu-kernel-<key>.json      which package and version, when it was built
//   qemu-initramfs-<key>.cpio   busybox + the modules needed to mount the root and the shares
//   qemu-rootfs-<key>.ext4      the guest's root filesystem (attached with snapshot=on)
//   qemu-rootfs-<key>.json      what is in it
//   qemu-*.lock                 one builder per key
//   rootfs-<key>.tar.zst/.json  the debootstrap tree the image is made from (nspawn's ensureRootfs)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { flock, LOCK_EX, LOCK_NB } from '../../../daemon/src/sys/libc.js';
import { HarnessError, pidAlive, run, type Logger, type RunOptions, type RunResult } from '../nspawn/command.js';

export { cacheDir } from '../nspawn/rootfs.js';

/** Progress lines on stderr, with the time since the process started. */
export const qemuLog: Logger = (line) => {
  process.stderr.write(`[qemu ${(performance.now() / 1000).toFixed(1).padStart(7)}s] ${line}\n`);
};

/**
 * The nspawn harness's HarnessError (and its `run()`) say "nspawn harness:"; errors of this
 * harness are the same class (so `waitUntil` and callers treat them alike) but say where
 * they come from.
 */
export function relabel<T>(e: T): T {
  if (e instanceof HarnessError) e.message = e.message.replace(/^nspawn harness: /, 'qemu harness: ');
  return e;
}

export function qemuError(step: string, summary: string, details: ConstructorParameters<typeof HarnessError>[2] = {}): HarnessError {
  return relabel(new HarnessError(step, summary, details));
}

/** `run()` from the nspawn harness (bounded, diagnosable), with this harness's label on errors. */
export async function qrun(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  try {
    return await run(cmd, args, opts);
  } catch (e) {
    throw relabel(e);
  }
}

export function recipeKey(recipe: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
}

export function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export interface HeldLock {
  release(): void;
}

/** flock(2) on `file`, polled so that the event loop never blocks; the kernel drops it if we die. */
export async function acquireLock(file: string, what: string, timeoutMs: number, log: Logger): Promise<HeldLock> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  const deadline = performance.now() + timeoutMs;
  let nextNotice = performance.now();
  while (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    if (performance.now() > deadline) {
      fs.closeSync(fd);
      throw qemuError(`waiting for the ${what} cache lock`, `${file} still held after ${(timeoutMs / 60_000).toFixed(0)} min by pid ${readOr(file).trim() || '?'}`);
    }
    if (performance.now() >= nextNotice) {
      log(`${what}: waiting for ${file} (pid ${readOr(file).trim() || '?'} is building it)`);
      nextNotice = performance.now() + 15_000;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  return { release: () => fs.closeSync(fd) };
}

/** Removes `<prefix>*.tmp-<pid>` entries of `dir` whose process is gone. */
export function removeStaleTemps(dir: string, prefix: string): void {
  for (const e of readdirOr(dir)) {
    const m = /\.tmp-(\d+)$/.exec(e);
    if (m && e.startsWith(prefix) && !pidAlive(Number(m[1]))) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
  }
}

/** Marks a cache entry as used (pruning goes by mtime). */
export function touch(file: string): void {
  const now = new Date();
  try {
    fs.utimesSync(file, now, now);
  } catch {
    /* gone: the caller rebuilds it */
  }
}

/**
 * Removes `qemu-<kind>-<key>*` entries other than `keep` whose main entry was not used for
 * 30 days. `main` is the suffix that carries the use time (touched on every use).
 */
export function pruneUnused(dir: string, kind: string, keep: string, main: string, log: Logger): void {
  const cutoff = Date.now() - 30 * 24 * 3600_000;
  const re = new RegExp(`^qemu-${kind}-([0-9a-f]{16})${main.replace(/\./g, '\\.')}$`);
  for (const e of readdirOr(dir)) {
    const m = re.exec(e);
    if (!m || m[1] === keep) continue;
    if (fs.statSync(path.join(dir, e)).mtimeMs > cutoff) continue;
    log(`${kind}: pruning cache ${m[1]} (unused for 30 days)`);
    for (const f of readdirOr(dir)) if (f.startsWith(`qemu-${kind}-${m[1]}`)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  }
}

export function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

export function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => fs.existsSync(path.join(d, tool)));
}

export function requireHostTools(step: string, tools: string[]): void {
  const missing = tools.filter((t) => !onPath(t));
  if (missing.length) throw qemuError(step, `missing on this machine: ${missing.join(', ')} (run scripts/setup.sh test)`);
}

export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
