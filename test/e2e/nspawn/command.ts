// SPDX-License-Identifier: Apache-2.0
// Running host commands for the nspawn harness: every command is bounded by a timeout,
// and every failure becomes a HarnessError that says which step failed, the exact
// command, how it ended, its stderr, and (when the caller can give it) the container
// journal's tail. A failing e2e test should be diagnosable from its message alone.
import { spawn } from 'node:child_process';

/** Progress lines go to stderr with the time since the process started. */
export type Logger = (line: string) => void;

export const defaultLog: Logger = (line) => {
  process.stderr.write(`[nspawn ${(performance.now() / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
};

export interface RunOptions {
  /** Names the step in error messages ("booting", "installing the .deb"...). */
  step?: string;
  input?: string | Buffer;
  /** Default 60 s. The child is SIGKILLed (by pid) when it runs out. */
  timeoutMs?: number;
  /** Return a non-zero exit instead of throwing. Timeouts still throw. */
  allowFail?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Called for each complete output line (progress logging). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Extra text appended to an error message, e.g. the container journal's tail. */
  context?: () => Promise<string>;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
  signal: NodeJS.Signals | null;
  durationMs: number;
}

export class HarnessError extends Error {
  override readonly name = 'HarnessError';
  constructor(
    readonly step: string,
    summary: string,
    readonly details: { command?: string[]; result?: RunResult; context?: string } = {},
  ) {
    super(formatError(step, summary, details));
  }
}

const MAX_OUTPUT = 64 << 20;

/** Runs a command to completion. Throws a HarnessError on non-zero exit (unless allowFail), signal, or timeout. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const step = opts.step ?? `running ${cmd}`;
  const start = performance.now();
  const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let size = 0;
  const collect = (sink: Buffer[], stream: 'stdout' | 'stderr') => {
    let partial = '';
    return (chunk: Buffer) => {
      if (size < MAX_OUTPUT) sink.push(chunk);
      size += chunk.length;
      if (opts.onLine) {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) opts.onLine(l, stream);
      }
    };
  };
  child.stdout!.on('data', collect(out, 'stdout'));
  child.stderr!.on('data', collect(err, 'stderr'));
  if (opts.input !== undefined) {
    child.stdin!.on('error', () => {}); // EPIPE when the command does not read its input
    child.stdin!.end(opts.input);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) killQuietly(child.pid, 'SIGKILL');
  }, timeoutMs);
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (e) => resolve({ code: null, signal: null, spawnError: e }));
    child.once('exit', (code, signal) => {
      // A grandchild may keep the pipes open after the child exits: wait for them, but not forever.
      const grace = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve({ code, signal });
      }, 2_000);
      child.once('close', () => {
        clearTimeout(grace);
        resolve({ code, signal });
      });
    });
  });
  clearTimeout(timer);
  const result: RunResult = {
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
    code: ended.code ?? (ended.signal ? 128 : 1),
    signal: ended.signal,
    durationMs: performance.now() - start,
  };
  const argv = [cmd, ...args];
  if (ended.spawnError) {
    throw new HarnessError(step, `could not start ${cmd}: ${ended.spawnError.message}`, { command: argv });
  }
  if (timedOut || ended.signal || (result.code !== 0 && !opts.allowFail)) {
    const summary = timedOut ? `timed out after ${(timeoutMs / 1000).toFixed(0)} s` : ended.signal ? `killed by ${ended.signal}` : `exited with code ${result.code}`;
    const context = opts.context ? await opts.context().catch((e: Error) => `(context unavailable: ${e.message})`) : undefined;
    throw new HarnessError(step, summary, { command: argv, result, ...(context !== undefined ? { context } : {}) });
  }
  return result;
}

/**
 * Polls `check` until it returns a value other than undefined/false, or throws a
 * HarnessError naming `what`. A plain Error from `check` counts as "not yet" (it is shown
 * if time runs out); a HarnessError is final and propagates at once.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs: number; intervalMs?: number; context?: () => Promise<string> },
): Promise<T> {
  const deadline = performance.now() + opts.timeoutMs;
  let lastError: unknown;
  let interval = opts.intervalMs ?? 100;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      lastError = undefined;
    } catch (e) {
      if (e instanceof HarnessError) throw e;
      lastError = e;
    }
    if (performance.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, interval));
    interval = Math.min(interval * 1.5, 1_000);
  }
  const last = lastError instanceof Error ? `last attempt: ${lastError.message}` : undefined;
  const context = opts.context ? await opts.context().catch((e: Error) => `(context unavailable: ${e.message})`) : undefined;
  const joined = [last, context].filter((s): s is string => s !== undefined).join('\n');
  throw new HarnessError(`waiting for ${what}`, `not reached after ${(opts.timeoutMs / 1000).toFixed(0)} s`, joined ? { context: joined } : {});
}

/** Resolves true when `p` settles within `ms`, false otherwise; never keeps the process alive longer. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false; // already gone
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function tail(text: string, lines: number): string {
  // eslint-disable-next-line no-control-regex -- terminal colour codes are what it removes
  const all = text.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

function indent(text: string): string {
  return text.split('\n').map((l) => `    ${l}`).join('\n');
}

function formatError(step: string, summary: string, d: { command?: string[]; result?: RunResult; context?: string }): string {
  const parts = [`nspawn harness: ${step}: ${summary}`];
  if (d.command) parts.push(`  command: ${shellQuote(d.command)}`);
  if (d.result) {
    const stderr = tail(d.result.stderr, 30);
    const stdout = tail(d.result.stdout, stderr ? 10 : 30);
    if (stderr) parts.push(`  stderr (tail):\n${indent(stderr)}`);
    if (stdout) parts.push(`  stdout (tail):\n${indent(stdout)}`);
    if (!stderr && !stdout) parts.push('  (no output)');
  }
  if (d.context) parts.push(d.context);
  return parts.join('\n');
}
