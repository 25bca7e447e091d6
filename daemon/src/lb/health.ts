// SPDX-License-Identifier: Apache-2.0
// Optional active health checks, per backend of a VIP that declares them: a TCP connect or
// an HTTP GET every `intervalMs`, bounded by `timeoutMs`. `fall` failures in a row take a
// backend out of the VIP's Maglev table (it gets no new flows; existing flows keep it, as
// with a drain), `rise` successes in a row put it back. Each transition is applied to the
// kernel first and then announced as an event (lb.backend.down / lb.backend.up) with the
// reason, so the event never claims a state the data path does not have.
//
// The checks run from the balancer's own stack: they are ordinary connections from one of
// the balancer's addresses, whose replies the XDP program passes untouched (their ports
// lie outside the NAT range).
import type { EventEmitter } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Logger } from 'pino';
import { ipText, type IpAddr } from '../net/ip.js';
import { LB_EVENTS, type LbHealthEvent } from './events.js';
import type { HealthSpec } from './validate.js';

export interface HealthTarget {
  vip: string;
  backend: string;
  addr: IpAddr;
  /** The backend's port (used when the spec has none). */
  port: number;
  spec: HealthSpec;
  /** Pinned state at start: a backend that was down stays down until it rises. */
  down: boolean;
}

export interface HealthStatus {
  state: 'up' | 'down';
  checks: number;
  consecutiveOk: number;
  consecutiveFail: number;
  lastResult: string | null;
  lastCheckAt: string | null;
}

/** Applies a transition to the kernel; throws if it could not. */
export type ApplyHealth = (t: HealthTarget, up: boolean) => Promise<void>;

interface Probe {
  target: HealthTarget;
  status: HealthStatus;
  timer: NodeJS.Timeout | null;
  running: boolean;
  stopped: boolean;
}

const keyOf = (t: { vip: string; backend: string }) => `${t.vip} ${t.backend}`;
const specKey = (t: HealthTarget) => JSON.stringify([t.spec, t.port, ipText(t.addr)]);

/** One check; resolves with null on success or the failure's description. */
export function checkOnce(addr: IpAddr, port: number, spec: HealthSpec): Promise<string | null> {
  const host = ipText(addr);
  const p = spec.port || port;
  return new Promise((resolve) => {
    let settled = false;
    const done = (why: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(why);
    };
    const timer = setTimeout(() => {
      done(`timeout after ${spec.timeoutMs} ms`);
      cleanup();
    }, spec.timeoutMs);
    let cleanup = () => {};
    if (spec.type === 'tcp') {
      const s = net.connect({ host, port: p });
      cleanup = () => s.destroy();
      s.once('connect', () => {
        s.destroy();
        done(null);
      });
      s.once('error', (err: NodeJS.ErrnoException) => done(`connect ${err.code ?? err.message}`));
      return;
    }
    const req = http.get({ host, port: p, path: spec.path, agent: false, headers: { 'user-agent': 'ebpfmon-lb-health', connection: 'close' } }, (res) => {
      const code = res.statusCode ?? 0;
      res.resume();
      res.once('end', () => done(code >= 200 && code < 400 ? null : `HTTP ${code}`));
      res.once('error', (err) => done(`HTTP read ${err.message}`));
    });
    cleanup = () => req.destroy();
    req.once('error', (err: NodeJS.ErrnoException) => done(`HTTP ${err.code ?? err.message}`));
  });
}

export class HealthChecker {
  private readonly probes = new Map<string, Probe>();
  private readonly log: Logger;
  private stopped = false;

  constructor(private readonly events: EventEmitter, logger: Logger, private readonly apply: ApplyHealth) {
    this.log = logger.child({ component: 'lb-health' });
  }

  /** Makes the running checks match `targets`: starts new ones, stops vanished ones, restarts changed ones. */
  sync(targets: HealthTarget[]): void {
    if (this.stopped) return;
    const want = new Map(targets.map((t) => [keyOf(t), t]));
    for (const [k, p] of this.probes) {
      const t = want.get(k);
      if (!t || specKey(t) !== specKey(p.target)) this.stopProbe(k);
    }
    for (const [k, t] of want) {
      if (this.probes.has(k)) continue;
      const probe: Probe = {
        target: t,
        status: { state: t.down ? 'down' : 'up', checks: 0, consecutiveOk: 0, consecutiveFail: 0, lastResult: null, lastCheckAt: null },
        timer: null,
        running: false,
        stopped: false,
      };
      this.probes.set(k, probe);
      this.schedule(probe, Math.min(100, t.spec.intervalMs));
    }
  }

  status(vip: string, backend: string): HealthStatus | null {
    const p = this.probes.get(keyOf({ vip, backend }));
    return p ? { ...p.status } : null;
  }

  stop(): void {
    this.stopped = true;
    for (const k of [...this.probes.keys()]) this.stopProbe(k);
  }

  private stopProbe(k: string): void {
    const p = this.probes.get(k);
    if (!p) return;
    p.stopped = true;
    if (p.timer) clearTimeout(p.timer);
    this.probes.delete(k);
  }

  private schedule(p: Probe, delayMs: number): void {
    if (p.stopped) return;
    p.timer = setTimeout(() => void this.tick(p), delayMs);
    p.timer.unref();
  }

  private async tick(p: Probe): Promise<void> {
    if (p.stopped || p.running) return;
    p.running = true;
    try {
      const t = p.target;
      const why = await checkOnce(t.addr, t.port, t.spec);
      if (p.stopped) return;
      const s = p.status;
      s.checks++;
      s.lastCheckAt = new Date().toISOString();
      s.lastResult = why ?? 'ok';
      if (why === null) {
        s.consecutiveOk++;
        s.consecutiveFail = 0;
      } else {
        s.consecutiveFail++;
        s.consecutiveOk = 0;
      }
      const goDown = s.state === 'up' && s.consecutiveFail >= t.spec.fall;
      const goUp = s.state === 'down' && s.consecutiveOk >= t.spec.rise;
      if (goDown || goUp) {
        try {
          await this.apply(t, goUp);
        } catch (err) {
          this.log.warn({ err, vip: t.vip, backend: t.backend }, 'health transition not applied; retrying at the next check');
          return;
        }
        if (p.stopped) return;
        s.state = goUp ? 'up' : 'down';
        const ev: LbHealthEvent = {
          vip: t.vip, backend: t.backend, state: s.state, reason: s.lastResult,
          consecutive: goUp ? s.consecutiveOk : s.consecutiveFail, check: t.spec.type,
        };
        this.log.info(ev, goUp ? 'backend passed its health checks: back in the table' : 'backend failed its health checks: no new flows');
        this.events.emit(goUp ? LB_EVENTS.backendUp : LB_EVENTS.backendDown, ev);
      }
    } finally {
      p.running = false;
      this.schedule(p, p.target.spec.intervalMs);
    }
  }
}
