// SPDX-License-Identifier: Apache-2.0
/** ebpfmonctl exit codes (docs/cli.md). */
export const EXIT = {
  OK: 0,
  USAGE: 1,
  UNREACHABLE: 2,
  PERMISSION: 3,
  DAEMON: 4,
} as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}
