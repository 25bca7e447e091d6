// SPDX-License-Identifier: Apache-2.0
// buildDaemon(): the daemon's services wired together from their dependencies, with no
// process-wide state. main.ts builds the real dependencies (kernel, config, signals);
// tests build it with a fake monitor and a temporary socket.
import type { Logger } from 'pino';
import type { MonitorApi } from './monitor/api.js';
import { RpcServer, type RpcLimits } from './rpc/server.js';
import { registerMonitorMethods } from './rpc/methods/monitor.js';
import { registerEventMethods } from './rpc/methods/events.js';
import { lbStatus, registerLbMethods, type LbRpcApi } from './rpc/methods/lb.js';

export interface DaemonDeps {
  monitor: MonitorApi;
  logger: Logger;
  version: string;
  socketPath: string;
  limits: RpcLimits;
  groups: { group: string; adminGroup: string };
  /** The load balancer, when configured (its methods answer NotAvailable otherwise). */
  lb?: LbRpcApi | null;
  /** Test seam: who is calling (default: SO_PEERCRED). */
  identify?: ConstructorParameters<typeof RpcServer>[4];
}

export interface Daemon {
  rpc: RpcServer;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function buildDaemon(deps: DaemonDeps): Daemon {
  const startedAt = new Date();
  const rpc = new RpcServer(deps.socketPath, deps.limits, deps.groups, deps.logger, deps.identify);
  const lb = deps.lb ?? null;
  registerMonitorMethods(rpc.rpc, deps.monitor, rpc, { version: deps.version, startedAt, lbStatus: lb ? () => lbStatus(lb) : undefined });
  registerEventMethods(rpc.rpc, deps.monitor, rpc);
  registerLbMethods(rpc.rpc, lb);
  return {
    rpc,
    start: () => rpc.listen(),
    stop: () => rpc.close(),
  };
}
