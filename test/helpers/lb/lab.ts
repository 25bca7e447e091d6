// SPDX-License-Identifier: Apache-2.0
// The LB tests' topology and processes, on top of test/helpers/lab.ts:
//
//   client (cl) ---- balancer (lb) ---- b1
//                              |------- b2
//                              `------- b3
//
// The balancer forwards (for DSR replies and the neighbour fallback), with rp_filter off.
// Veth needs, from KERNEL-NOTES: frames that XDP redirects into a veth arrive only if the
// peer has GRO (or XDP) on, so GRO is on at the client and backend ends; TCP through XDP
// needs the senders' checksum offload off (`tx off`) because partial checksums are lost
// on redirect. Backends carry the DSR VIP on lo (a DSR backend answers from the VIP).
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Host, Lab, LinkInfo } from '../lab.js';
import type { LbManagerOptions } from '../../../daemon/src/lb/manager.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const OBJECT_DIR = path.resolve(here, '../../../../bpf');
export const AGENT = path.join(here, 'agent.js');
const CLIENT = path.join(here, 'client.js');
const SERVER = path.join(here, 'server.js');

export const VIP4 = '198.19.10.10';
export const VIP4_DSR = '198.19.10.20';
export const VIP6 = 'fd00:198::ff:10';
export const TCP_PORT = 8080;
export const UDP_PORT = 9123; // no tcpdump decoder on this port: its checksum verdict stays readable

export class RemoteError extends Error {
  constructor(readonly kind: string, message: string, readonly data?: Record<string, unknown>) {
    super(message);
  }
}

/** A child process speaking JSON lines: requests carry an id, answers echo it. */
export class JsonProc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  readonly ready: Promise<Record<string, unknown>>;
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(readonly proc: ChildProcess, readonly label: string, private readonly verb: 'method' | 'cmd') {
    let onReady: (v: Record<string, unknown>) => void;
    let onFail: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      onReady = res;
      onFail = rej;
    });
    this.exited = new Promise((res) => proc.once('exit', (code, sig) => res(code ?? (sig ? -1 : null))));
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.ready) {
        onReady(msg);
        return;
      }
      const p = this.pending.get(msg.id as number);
      if (!p) return;
      this.pending.delete(msg.id as number);
      clearTimeout(p.timer);
      if (msg.error !== undefined) {
        const e = msg.error as { kind?: string; message?: string; data?: Record<string, unknown> } | string;
        p.reject(typeof e === 'string' ? new RemoteError('Error', e) : new RemoteError(e.kind ?? 'Error', e.message ?? 'error', e.data));
      } else p.resolve(msg.result);
    });
    void this.exited.then((code) => {
      onFail(new Error(`${label} exited (${code}) before it was ready: ${this.stderr.trim().slice(-2000)}`));
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`${label} exited (${code}) during request ${id}: ${this.stderr.trim().slice(-2000)}`));
      }
      this.pending.clear();
    });
  }

  call<T = unknown>(name: string, params: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: ${name} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const msg = this.verb === 'method' ? { id, method: name, params } : { id, cmd: name, ...params };
      this.proc.stdin!.write(`${JSON.stringify(msg)}\n`);
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.proc.pid !== undefined && this.proc.exitCode === null && this.proc.signalCode === null) process.kill(this.proc.pid, signal);
  }
}

function spawnIn(host: Host, args: string[]): ChildProcess {
  return host.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface AgentConfig {
  pinPath: string;
  manager?: LbManagerOptions;
  mapSizes?: Record<string, number>;
  start?: boolean;
}

/** The LB "daemon" in the balancer's namespace. */
export async function startAgent(host: Host, cfg: AgentConfig): Promise<JsonProc> {
  const p = new JsonProc(spawnIn(host, [AGENT, JSON.stringify({ objectDir: OBJECT_DIR, ...cfg })]), `lb-agent(${host.name})`, 'method');
  await p.ready;
  return p;
}

export async function startClient(host: Host): Promise<JsonProc> {
  const p = new JsonProc(spawnIn(host, [CLIENT]), `lb-client(${host.name})`, 'cmd');
  await p.ready;
  return p;
}

export async function startServer(host: Host, name: string, tcpPort = TCP_PORT, udpPort = UDP_PORT): Promise<ChildProcess> {
  const child = spawnIn(host, [SERVER, name, String(tcpPort), String(udpPort)]);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`server ${name} did not start: ${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`server ${name} exited (${code}): ${err}`));
    });
  });
  return child;
}

export interface LbTopo {
  client: Host;
  lb: Host;
  backends: Host[];
  /** client <-> lb */
  front: LinkInfo;
  /** lb <-> backend i */
  back: LinkInfo[];
}

const sysctl = (h: Host, kv: string[]) => h.exec('sysctl', ['-q', '-w', ...kv]);

/** Builds the topology: client, balancer, `n` backends (servers not started). */
export async function buildTopo(lab: Lab, n = 3, opts: { backendMtu?: number } = {}): Promise<LbTopo> {
  const client = await lab.host('cl');
  const lb = await lab.host('lb');
  const backends: Host[] = [];
  for (let i = 1; i <= n; i++) backends.push(await lab.host(`b${i}`));
  const front = await lab.link(client, lb);
  const back: LinkInfo[] = [];
  for (const b of backends) back.push(await lab.link(lb, b, opts.backendMtu ? { mtu: opts.backendMtu } : {}));

  await sysctl(lb, ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
  for (const l of [front, ...back]) await sysctl(lb, [`net.ipv4.conf.${l.b.host === lb ? l.b.ifname : l.a.ifname}.rp_filter=0`]);

  await client.exec('ip', ['route', 'add', '198.19.10.0/24', 'via', front.b.ip4]);
  await client.exec('ip', ['-6', 'route', 'add', 'fd00:198::ff:0/112', 'via', front.b.ip6]);
  await client.exec('ethtool', ['-K', front.a.ifname, 'tx', 'off', 'gro', 'on']);
  for (const [i, b] of backends.entries()) {
    const l = back[i]!;
    await b.exec('ip', ['route', 'add', 'default', 'via', l.a.ip4]);
    await b.exec('ip', ['-6', 'route', 'add', 'default', 'via', l.a.ip6]);
    await b.exec('ip', ['addr', 'add', `${VIP4_DSR}/32`, 'dev', 'lo']);
    await b.exec('ethtool', ['-K', l.b.ifname, 'tx', 'off', 'gro', 'on']);
  }
  return { client, lb, backends, front, back };
}

/** Waits until `fn` returns a truthy value, polling every `stepMs`, at most `tries` times. */
export async function until<T>(fn: () => Promise<T> | T, what: string, tries = 50, stepMs = 100): Promise<NonNullable<T>> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
