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

/** --unit --container --app --cgroup: the owner identity filters of flows and top. */
export function addIdentityOptions(cmd: Command): Command {
  return cmd
    .option('--unit <unit>', 'owned by this systemd unit or user unit (a trailing * matches a prefix: \'getty@*\')')
    .option('--container <c>', 'owned by this container: id (12+ hex digits), name, pod name, namespace/pod or pod UID')
    .option('--app <app>', 'owned by this desktop app: Flatpak id, snap name, .desktop id or its Name')
    .option('--cgroup <path>', 'owned by a process in this cgroup (or below it), e.g. /system.slice', (v: string) => {
      if (!v.startsWith('/')) throw new InvalidArgumentError('expected an absolute cgroup path like /system.slice (below the cgroup2 mount)');
      return v;
    });
}

/** The identity filters the user gave, as the contract names them. */
export function identityParams(o: { unit?: string; container?: string; app?: string; cgroup?: string }): { unit?: string; container?: string; app?: string; cgroup?: string } {
  return { unit: o.unit, container: o.container, app: o.app, cgroup: o.cgroup };
}
