// SPDX-License-Identifier: Apache-2.0
// Waiting for something the test can observe (a line on a pipe, a status field, a row in a
// server), bounded: the tests wait for the event itself, never for a fixed sleep.

/** Polls `ok` every `stepMs` until it holds; throws "timed out waiting for <what>" after `ms`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000, stepMs = 50): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
