// SPDX-License-Identifier: Apache-2.0
// The load balancer's settings: what the daemon's configuration (lb.*) passes to LbManager,
// with the defaults filled in and the NAT port range checked against the host's own.
import fs from 'node:fs';
import type { Logger } from 'pino';
import { invalidParam } from '../errors.js';
import type { LbHost } from './kernel.js';
import type { XdpMode } from './interfaces.js';

export interface LbManagerOptions {
  /** Interfaces a VIP is served on when it names none. */
  interfaces?: string[];
  /** XDP attach mode (default native; generic works everywhere, slower). */
  xdpMode?: XdpMode;
  /** nat-mode source ports (default 61000-65535): keep outside ip_local_port_range. */
  natPorts?: { min: number; max: number };
  /** Flows older than this are copied into the long-lived table (default 30 s; 0: never). */
  promoteAfterMs?: number;
  /**
   * Idle time after which the GC deletes long-lived and NAT entries (default tcp 900 s,
   * udp 120 s), and the time a NAT entry may wait for its backend's first reply (default
   * 10 s): a flood of SYNs that are never answered must not hold the NAT ports.
   */
  idleTimeoutMs?: { tcp?: number; udp?: number; embryonic?: number };
  /** GC period (default 10 s; 0: only when gc() is called). */
  gcIntervalMs?: number;
  /** Backends per VIP (default 1024: 64 table slots per backend keep Maglev's imbalance small). */
  maxBackendsPerVip?: number;
  /** Run the health checks VIPs declare (default true). */
  healthChecks?: boolean;
  /** The host around the manager (tests pass a fake). */
  host?: LbHost;
}

/** The options with every default filled in; idle times in ns (the maps' clock). */
export interface LbSettings {
  interfaces: string[];
  xdpMode: XdpMode;
  natPorts: { min: number; max: number };
  promoteAfterMs: number;
  idle: { tcp: bigint; udp: bigint; embryonic: bigint };
  gcIntervalMs: number;
  maxBackendsPerVip: number;
  healthChecks: boolean;
}

export function resolveOptions(opts: LbManagerOptions): LbSettings {
  const natPorts = opts.natPorts ?? { min: 61000, max: 65535 };
  if (!Number.isInteger(natPorts.min) || !Number.isInteger(natPorts.max) || natPorts.min < 1024 || natPorts.max > 65535 || natPorts.min > natPorts.max) {
    throw invalidParam('lb.natPorts', natPorts, 'a port range { min, max } within 1024..65535');
  }
  return {
    interfaces: opts.interfaces ?? [],
    xdpMode: opts.xdpMode ?? 'native',
    natPorts,
    promoteAfterMs: opts.promoteAfterMs ?? 30_000,
    idle: {
      tcp: BigInt(opts.idleTimeoutMs?.tcp ?? 900_000) * 1_000_000n,
      udp: BigInt(opts.idleTimeoutMs?.udp ?? 120_000) * 1_000_000n,
      embryonic: BigInt(opts.idleTimeoutMs?.embryonic ?? 10_000) * 1_000_000n,
    },
    gcIntervalMs: opts.gcIntervalMs ?? 10_000,
    maxBackendsPerVip: opts.maxBackendsPerVip ?? 1024,
    healthChecks: opts.healthChecks ?? true,
  };
}

/** Local sockets use ip_local_port_range; a NAT port among them could take their replies. */
export function warnNatPortOverlap(natPorts: { min: number; max: number }, log: Logger): void {
  let text: string;
  try {
    text = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  } catch {
    return;
  }
  const [lo, hi] = text.trim().split(/\s+/).map(Number);
  if (lo === undefined || hi === undefined) return;
  const { min, max } = natPorts;
  if (min <= hi && lo <= max) {
    log.warn({ natPorts: `${min}-${max}`, localPorts: `${lo}-${hi}` },
      'the NAT port range overlaps ip_local_port_range: a local connection to a backend could lose replies to a nat flow');
  }
}
