// SPDX-License-Identifier: Apache-2.0
/** ebpfmonctl exit codes (docs/cli.md). */
export const EXIT = {
  OK: 0,
  USAGE: 1,
  UNREACHABLE: 2,
  PERMISSION: 3,
  DAEMON: 4,
} as const;

const CLI_ERROR = Symbol.for('ebpfmonctl.CliError');

/** An error for the user: its message is printed as is, its code is the exit status. */
export class CliError extends Error {
  readonly [CLI_ERROR] = true;

  constructor(message: string, readonly exitCode: number) {
    super(message);
  }

  /** By brand, not by class: `ebpfmonctl ui` runs its server from the compiled module tree
   * next to the bundled client (client/bundle.mjs), so a CliError may come from either copy
   * of this module. Subclasses (ConnectionLost) inherit this method and keep the class test. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    if (this !== CliError) return Function.prototype[Symbol.hasInstance].call(this, x);
    return typeof x === 'object' && x !== null && (x as { [CLI_ERROR]?: unknown })[CLI_ERROR] === true;
  }
}

/**
 * Exits once stdout and stderr have written everything: on a pipe, Node queues what the
 * pipe does not take at once, and process.exit() would drop it (`flows --json | wc -c`
 * stopped at 65536 bytes).
 */
export async function exitFlushed(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => {
    if (s.destroyed || s.writableEnded) return resolve();
    s.write('', () => resolve());
  })));
  process.exit(code);
}

/** The reader of stdout went away (`| head`): stop quietly, as a shell tool killed by SIGPIPE. */
export const EXIT_SIGPIPE = 128 + 13;

export function quietOnBrokenPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_SIGPIPE);
    throw err;
  });
}
