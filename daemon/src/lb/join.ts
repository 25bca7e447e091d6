// SPDX-License-Identifier: Apache-2.0
// Joins the balancer's flows with what the backends' own flow monitors see, giving the whole
// path: client -> VIP -> backend -> serving process. Each LbFlow names the tuple as the
// backend host sees it (`onBackend`: nat mode, the balancer's address and NAT port; dsr,
// the client itself), which is exactly how a backend's ebpfmon keys the flow, so the join
// is an equality on (protocol, local, remote).
import { hostPort, parseIp, splitHostPort, type IpAddr } from '../net/ip.js';
import type { LbFlow } from '../contract/lb.js';

/** One flow as a backend host's flow monitor reports it (the fields the join needs). */
export interface BackendFlowRecord {
  protocol: 'tcp' | 'udp';
  /** "ADDR:PORT" on the backend (the service). */
  local: string;
  /** "ADDR:PORT" of the peer. */
  remote: string;
  pid?: number;
  comm?: string;
}

export interface LbFlowChain {
  client: string;
  vip: string;
  backend: string;
  /** nat mode: the balancer's side of the translated flow. */
  balancer: string | null;
  /** The process that serves the flow on the backend, if that backend reported it. */
  process: { pid: number; comm: string } | null;
}

/** Canonical "ADDR:PORT" (IPv4-mapped IPv6 as IPv4, IPv6 compressed, in brackets). */
export function canonicalEndpoint(s: string): string {
  const hp = splitHostPort(s.trim());
  if (!hp || hp.port === null) return s.trim();
  let a: IpAddr | null = parseIp(hp.host);
  if (!a) return s.trim();
  if (a.family === 'ipv6' && a.bytes.subarray(0, 10).every((b) => b === 0) && a.bytes[10] === 0xff && a.bytes[11] === 0xff) {
    const v4 = Buffer.alloc(16);
    a.bytes.copy(v4, 0, 12, 16);
    a = { family: 'ipv4', bytes: v4 };
  }
  return hostPort(a, Number(hp.port));
}

const key = (protocol: string, local: string, remote: string) => `${protocol} ${canonicalEndpoint(local)} ${canonicalEndpoint(remote)}`;

/** Chains for every LB flow; `process` is null where no backend record matched. */
export function joinBackendFlows(lbFlows: readonly LbFlow[], backendFlows: readonly BackendFlowRecord[]): LbFlowChain[] {
  const byTuple = new Map<string, BackendFlowRecord>();
  for (const r of backendFlows) byTuple.set(key(r.protocol, r.local, r.remote), r);
  return lbFlows.map((f) => {
    const r = byTuple.get(key(f.protocol, f.onBackend.local, f.onBackend.remote));
    return {
      client: f.client,
      vip: f.vip,
      backend: f.backend,
      balancer: f.nat?.balancer ?? null,
      process: r && r.pid !== undefined ? { pid: r.pid, comm: r.comm ?? '' } : null,
    };
  });
}
