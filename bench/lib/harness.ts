// SPDX-License-Identifier: Apache-2.0
// What the benches need around the measurement: C helpers compiled
// into a temp dir at run time, child processes tracked by pid and killed on any exit, medians.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import './help.js';

export { compileC, ROOT } from '../../test/helpers/cc.js';

const children = new Set<ChildProcess>();
const cleanups: Array<() => void> = [];

function cleanupAll(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
}

let installed = false;
/** Runs `fn` once on any way out: normal exit, uncaught error, SIGINT/SIGTERM. */
export function onExit(fn: () => void): void {
  cleanups.push(fn);
  if (installed) return;
  installed = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanupAll();
      process.exit(130);
    });
  }
}

/** A temp dir removed on exit. */
export function tempDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-bench-${tag}-`));
  onExit(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Child {
  proc: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number>;
  /** Resolves when a stdout line equals `line`; rejects if the process exits first or after `timeoutMs`. */
  waitLine(line: string, timeoutMs: number): Promise<void>;
  /** Parses the last stdout line as JSON. */
  lastJson<T>(): T;
}

/**
 * Spawns a helper with `fd` (open in this process) handed down as its fd 3, so that BPF
 * objects reach it without pins. Tracked by pid and killed if the bench exits first.
 * `ownSession`: the helper gets its own session (setsid), hence its own scheduler
 * autogroup, as an event source elsewhere on the machine would have; otherwise a busy
 * helper shares this process's CPU share under load.
 */
export function spawnHelper(bin: string, args: string[], fd: number, opts: { ownSession?: boolean } = {}): Child {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe', fd], detached: opts.ownSession ?? false });
  children.add(proc);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code, signal) => {
      children.delete(proc);
      if (code !== 0) reject(new Error(`${path.basename(bin)} exited with ${code ?? signal}: ${err.trim()}`));
      else resolve(0);
    });
  });
  exited.catch(() => {}); // observed by callers that care
  return {
    proc,
    stdout: () => out,
    exited,
    waitLine: (line, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const t0 = Date.now();
        const tick = (): void => {
          if (out.split('\n').includes(line)) return resolve();
          if (proc.exitCode !== null || proc.signalCode !== null) return reject(new Error(`${path.basename(bin)} exited before '${line}': ${err.trim()}`));
          if (Date.now() - t0 > timeoutMs) return reject(new Error(`${path.basename(bin)}: no '${line}' after ${timeoutMs} ms`));
          setTimeout(tick, 2);
        };
        tick();
      }),
    lastJson: <T>() => {
      const lines = out.trim().split('\n');
      return JSON.parse(lines[lines.length - 1]!) as T;
    },
  };
}

/**
 * The daemon to start from another checkout (`--baseline DIR`, built): its bundle, as this
 * build's daemon and the package run (daemon/bundle.mjs), or the compiled modules of a
 * checkout from before the bundle; throws when neither is there. Until December 2026 the
 * benches started a baseline's modules: the same code, not the same program for V8, so a
 * comparison measured the two forms as well as the two builds (unprofiled, within noise at
 * 10k connections/s; under the V8 profiler, the modules' main thread far above the bundle's).
 */
export function baselineDaemonMain(checkout: string): string {
  const dir = path.join(path.resolve(checkout), 'build/js/daemon/src');
  const main = [path.join(dir, 'ebpfmon.js'), path.join(dir, 'main.js')].find((f) => fs.existsSync(f));
  if (!main) throw new Error(`--baseline ${checkout}: no ${path.join(dir, 'ebpfmon.js')} (build that checkout first)`);
  return main;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `--name=value` or `--name value` -> number, else the default. */
export function numArg(name: string, def: number): number {
  const argv = process.argv.slice(2);
  const num = (s: string) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name}: expected a number, got ${JSON.stringify(s)} (--help for the options)`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === `--${name}` && argv[i + 1] !== undefined) return num(argv[i + 1]!);
    if (a.startsWith(`--${name}=`)) return num(a.slice(name.length + 3));
  }
  return def;
}

/** One-line description of the machine for the report. */
export function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}`;
}

/** One module of this build and, with `--baseline DIR` (another checkout, built), the same
 * module of that build, for benches that run both in one process: `[name, module]` pairs,
 * this build first. `rel`: the module's path under build/js. */
export async function moduleBuilds<M>(rel: string, baseline: string | undefined): Promise<Array<[string, M]>> {
  const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  const out: Array<[string, M]> = [['this build', (await import(path.join(here, rel))) as M]];
  if (baseline) out.push([`baseline (${baseline})`, (await import(path.join(path.resolve(baseline), 'build/js', rel))) as M]);
  return out;
}

/** A table row: the label, each build's figure, and this build's over the baseline's. */
export function ratioRow(label: string, figures: number[], digits = 2): string[] {
  return [label, ...figures.map((v) => v.toFixed(digits)), ...(figures.length > 1 ? [(figures[0]! / figures[1]!).toFixed(2)] : [])];
}
