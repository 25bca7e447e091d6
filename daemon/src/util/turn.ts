// SPDX-License-Identifier: Apache-2.0
/** Resolves after one turn of the event loop (setImmediate: I/O callbacks run first), for
 * work cut into pieces so that no piece holds the loop long. */
export const yieldTurn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
