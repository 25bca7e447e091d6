// SPDX-License-Identifier: Apache-2.0
import { InvalidArgumentError, type Command } from 'commander';
import { DaemonClient, DEFAULT_SOCKET } from '../rpc.js';

export function intArg(min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return Number(v);
  };
}

export function listArg<T extends string>(allowed: readonly T[]) {
  return (v: string): T[] => {
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((i) => !allowed.includes(i as T));
    if (items.length === 0 || bad.length) throw new InvalidArgumentError(`expected a comma-separated list of ${allowed.join(', ')}`);
    return items as T[];
  };
}

export function choiceArg<T extends string>(allowed: readonly T[]) {
  return (v: string): T => {
    if (!allowed.includes(v as T)) throw new InvalidArgumentError(`expected one of ${allowed.join(', ')}`);
    return v as T;
  };
}

/** The socket from --socket, then EBPFMON_SOCKET, then the default. */
export function socketPath(cmd: Command): string {
  const root = cmd.optsWithGlobals<{ socket?: string }>();
  return root.socket ?? process.env.EBPFMON_SOCKET ?? DEFAULT_SOCKET;
}

export async function withClient<T>(cmd: Command, fn: (c: DaemonClient) => Promise<T>): Promise<T> {
  const client = await DaemonClient.connect(socketPath(cmd));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export const CLEAR = '\x1b[H\x1b[2J';
