// SPDX-License-Identifier: Apache-2.0
// How the daemon ends: its exit codes, and how long a stop may take (the test helpers check
// a stop against the same deadline).

export const EXIT = { OK: 0, FAILURE: 1, CONFIG: 2 } as const;

/** SIGTERM to exit, at most (systemd's TimeoutStopSec is longer); past it the daemon exits EXIT.FAILURE. */
export const STOP_DEADLINE_MS = 4000;
