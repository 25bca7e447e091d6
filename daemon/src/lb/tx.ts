// SPDX-License-Identifier: Apache-2.0
// Changes to the load balancer's maps as sequences of steps with undo: if a step fails, the
// completed ones are undone in reverse, so the running configuration is either the old one or
// the new one (test/unit/daemon/lb/manager.test.ts fails every kernel write in turn to check this).
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { SystemError } from '../sys/errors.js';

/** A step returns its undo, or nothing when it changed nothing that needs undoing. */
export type Step = () => (() => void) | void;

/** A failure, with what was being done put in front (a kernel error stays one: the API
 * layer reports it as `Kernel`). */
export function kernelError(err: unknown, what: string): Error {
  if (err instanceof AppError) return err;
  if (err instanceof SystemError) {
    const e = new SystemError(err.op, err.object, err.errno, { target: err.target, detail: err.detail, context: what });
    e.cause = err;
    return e;
  }
  return new AppError('Internal', `${what}: ${(err as Error).message ?? String(err)}`);
}

export function transact(log: Logger, what: string, steps: Step[]): void {
  const undo: Array<() => void> = [];
  try {
    for (const s of steps) {
      const u = s();
      if (u) undo.push(u);
    }
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch (e) {
        log.error({ err: e }, `could not undo part of ${what}`);
      }
    }
    throw kernelError(err, what);
  }
}
