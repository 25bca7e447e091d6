// SPDX-License-Identifier: Apache-2.0
// One stack of things to close, in reverse order of opening: what start-up built so far
// when a later step fails, and everything at shutdown. Each close is bounded in time and
// its failure logged, never fatal to the others: shutdown always completes.
import type { Logger } from 'pino';

export type Closer = () => void | Promise<void>;

export class Closers {
  private readonly stack: Array<{ name: string; fn: Closer }> = [];

  add(name: string, fn: Closer): void {
    this.stack.push({ name, fn });
  }

  /** Closes everything added, last first; each step gets at most `stepTimeoutMs`. */
  async closeAll(log: Logger | null, stepTimeoutMs = 5000): Promise<void> {
    while (this.stack.length > 0) {
      const { name, fn } = this.stack.pop()!;
      let timer: NodeJS.Timeout | undefined;
      const t0 = performance.now();
      try {
        await Promise.race([
          Promise.resolve().then(fn),
          new Promise<void>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no result after ${stepTimeoutMs} ms`)), stepTimeoutMs);
            timer.unref();
          }),
        ]);
      } catch (err) {
        log?.warn({ err, step: name }, `closing ${name} failed: ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
        log?.debug({ step: name, ms: Math.round(performance.now() - t0) }, `closed ${name}`);
      }
    }
  }
}
