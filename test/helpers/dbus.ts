// SPDX-License-Identifier: Apache-2.0
// D-Bus in tests without a system bus of our own to spare:
//  - startPrivateBus(): Debian's system.conf with its own listen address and pidfile, no
//    fork, syslog, activation or service helper, and only the policy files a test names
//    (the real packaging/dbus/org.ebpfmon1.conf) instead of the host's system.d.
//  - Agent: a dbus-next client in a child process running as a given user (credentials
//    on a bus are per process), driven by JSON lines. Run as a script, this file is the
//    agent: `node build/js/test/helpers/dbus.js agent ADDRESS`.
//  - parseIntrospection(): members, signatures and annotations out of introspection XML.
// Every process is ended by pid and every directory removed by the returned stop()s,
// which tests register with lab.onDestroy().
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import type { Lab, TestUser } from './lab.js';
import { FakeMonitor } from './fake-monitor.js';
import { buildApi, type HistoryApi, type LbApi } from '../../daemon/src/api/index.js';
import { startDbusService, type DbusService, type DbusServiceOptions } from '../../daemon/src/dbus/service.js';
import type { ProcessTotals } from '../../daemon/src/contract/flows.js';
import { BUS_NAME, LB_IFACE, LB_PATH, MANAGER_IFACE, MANAGER_PATH } from '../../daemon/src/contract/dbus.js';

export const SYSTEM_CONF = '/usr/share/dbus-1/system.conf';
export const POLKIT_BUS_POLICY = '/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf';
export const POLKITD = '/usr/lib/polkit-1/polkitd';
const HERE = fileURLToPath(import.meta.url);
/** The repository root (build/js/test/helpers -> four levels up). */
export const REPO = path.resolve(path.dirname(HERE), '../../../..');

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL after `ms`: only the given child, by its pid. */
export async function endChild(child: ChildProcess, ms = 3000): Promise<void> {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitExit(child, ms)) return;
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  await waitExit(child, ms);
}

export interface PrivateBus {
  address: string;
  socketPath: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** The private bus configuration: system.conf with the changes described above. */
export function privateBusConfig(dir: string, policies: string[]): string {
  let conf = fs.readFileSync(SYSTEM_CONF, 'utf8');
  const edits: Array<[RegExp, string]> = [
    [/<user>[^<]*<\/user>/, ''],
    [/<fork\/>/, ''],
    [/<standard_system_servicedirs\/>/, ''],
    [/<servicehelper>[^<]*<\/servicehelper>/, ''],
    [/<pidfile>[^<]*<\/pidfile>/, `<pidfile>${dir}/pid</pidfile>`],
    [/<syslog\/>/, ''],
    [/<listen>[^<]*<\/listen>/, `<listen>unix:path=${dir}/system_bus_socket</listen>`],
    [/<includedir>system\.d<\/includedir>/, ''],
    [/<includedir>\/etc\/dbus-1\/system\.d<\/includedir>/, ''],
  ];
  for (const [re, by] of edits) {
    if (!re.test(conf)) throw new Error(`${SYSTEM_CONF} has no ${re.source}: its layout changed, update test/helpers/dbus.ts`);
    conf = conf.replace(re, by);
  }
  // The host's local additions and SELinux contexts stay out.
  conf = conf.replace(/<include [^>]*>[^<]*<\/include>/g, '');
  const includes = policies.map((p) => `  <include>${path.resolve(p)}</include>\n`).join('');
  return conf.replace('</busconfig>', `${includes}</busconfig>`);
}

/**
 * A private system-like bus. Its directory is 0755 so that test users reach the socket.
 * Registered for cleanup with `lab` when given.
 */
export async function startPrivateBus(opts: { policies: string[]; lab?: Lab }): Promise<PrivateBus> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-dbus-'));
  fs.chmodSync(dir, 0o755);
  const conf = path.join(dir, 'bus.conf');
  fs.writeFileSync(conf, privateBusConfig(dir, opts.policies));
  // setpriv execs dbus-daemon (same pid) with a parent-death signal: a crashed test leaves no bus behind.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'dbus-daemon', `--config-file=${conf}`, '--nofork', '--print-address'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const stop = async () => {
    await endChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  opts.lab?.onDestroy(stop);
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`dbus-daemon printed no address within 10 s: ${stderr}`)), 10_000);
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(t);
          resolve(out.slice(0, nl).trim());
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`dbus-daemon exited (${code}): ${stderr}`));
      });
    });
    return { address, socketPath: path.join(dir, 'system_bus_socket'), dir, pid: child.pid!, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** polkitd serving the private bus (it switches to the polkitd user itself). Needs POLKIT_BUS_POLICY in the bus. */
export async function startPolkitd(bus: PrivateBus, lab: Lab, probe: Agent): Promise<void> {
  const child = spawn(POLKITD, ['--no-debug'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address } });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  lab.onDestroy(() => endChild(child));
  const t0 = Date.now();
  while (Date.now() - t0 < 15_000) {
    const r = await probe.call({ dest: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', iface: 'org.freedesktop.DBus', member: 'NameHasOwner', sig: 's', body: ['org.freedesktop.PolicyKit1'] });
    if (r.ok && r.body[0] === true) return;
    if (child.exitCode !== null) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error(`polkitd did not appear on the private bus: ${stderr}`);
}

// --- values between the agent and the test ------------------------------------------------

/** A D-Bus value in JSON: variants as {$v: signature, value}, 64-bit integers as {$t: "digits"}. */
export type Wire = unknown;

export interface CallSpec {
  dest: string;
  path: string;
  iface: string;
  member: string;
  sig?: string;
  body?: Wire[];
  flags?: number;
}

export type CallResult = { ok: true; body: Wire[] } | { ok: false; error: string; text: string };

export const v = (sig: string, value: Wire): Wire => ({ $v: sig, value });
export const t = (n: number | bigint): Wire => ({ $t: String(n) });

/** A wire value as plain JS: variants unwrapped, 64-bit integers as numbers. */
export function plain(x: Wire): any {
  if (Array.isArray(x)) return x.map(plain);
  if (x && typeof x === 'object') {
    const o = x as Record<string, unknown>;
    if ('$v' in o) return plain(o.value);
    if ('$t' in o) return Number(o.$t);
    return Object.fromEntries(Object.entries(o).map(([k, val]) => [k, plain(val)]));
  }
  return x;
}

/** The variant signature of each key of a wire a{sv}. */
export function signatures(dict: Wire): Record<string, string> {
  return Object.fromEntries(Object.entries(dict as Record<string, { $v: string }>).map(([k, val]) => [k, val.$v]));
}

// --- the agent (child side) -------------------------------------------------------------

async function agentMain(address: string): Promise<void> {
  const dbus = (await import('dbus-next')).default;
  const encode = (x: unknown): unknown => {
    if (typeof x === 'bigint') return { $t: x.toString() };
    if (x instanceof dbus.Variant) return { $v: x.signature, value: encode(x.value) };
    if (Buffer.isBuffer(x)) return [...x];
    if (Array.isArray(x)) return x.map(encode);
    if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, val]) => [k, encode(val)]));
    return x;
  };
  const decode = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(decode);
    if (x && typeof x === 'object') {
      const o = x as Record<string, unknown>;
      if ('$v' in o) return new dbus.Variant(o.$v as string, decode(o.value));
      if ('$t' in o) return BigInt(o.$t as string);
      return Object.fromEntries(Object.entries(o).map(([k, val]) => [k, decode(val)]));
    }
    return x;
  };
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const bus = dbus.sessionBus({ busAddress: address });
  bus.on('error', (err: unknown) => {
    out({ fatal: String((err as Error)?.message ?? err) });
    process.exit(1);
  });
  await new Promise<void>((resolve) => bus.once('connect', () => resolve()));
  const call = async (c: CallSpec): Promise<CallResult> => {
    try {
      const m = new dbus.Message({ destination: c.dest, path: c.path, interface: c.iface, member: c.member, signature: c.sig ?? '', body: decode(c.body ?? []) as unknown[], flags: c.flags ?? 0 });
      const reply = await bus.call(m);
      return { ok: true, body: encode(reply?.body ?? []) as Wire[] };
    } catch (err) {
      const e = err as { type?: string; text?: string; message?: string };
      return { ok: false, error: e.type ?? 'local', text: e.text ?? e.message ?? String(err) };
    }
  };
  bus.on('message', (m: InstanceType<typeof dbus.Message>) => {
    if (m.type === dbus.MessageType.SIGNAL && m.sender !== 'org.freedesktop.DBus') {
      out({ signal: { sender: m.sender, destination: m.destination ?? null, path: m.path, iface: m.interface, member: m.member, body: encode(m.body), at: Date.now() } });
    }
  });
  out({ ready: true, name: (bus as unknown as { name: string }).name, uid: process.getuid?.() });
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('end', () => {
    bus.disconnect();
    process.exit(0);
  });
  process.stdin.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const req = JSON.parse(buf.slice(0, nl)) as { id: number; op: string } & Record<string, unknown>;
      buf = buf.slice(nl + 1);
      void (async () => {
        switch (req.op) {
          case 'call':
            out({ id: req.id, result: await call(req.call as CallSpec) });
            break;
          case 'flood': {
            // `count` calls at once: what a misbehaving widget or a hostile user can send.
            const n = req.count as number;
            const results = await Promise.all(Array.from({ length: n }, () => call(req.call as CallSpec)));
            const errors: Record<string, number> = {};
            let ok = 0;
            for (const r of results) {
              if (r.ok) ok++;
              else errors[r.error] = (errors[r.error] ?? 0) + 1;
            }
            out({ id: req.id, result: { ok, errors } });
            break;
          }
          case 'requestName':
            try {
              out({ id: req.id, result: { ok: true, body: [await bus.requestName(req.name as string, 4)] } });
            } catch (err) {
              const e = err as { type?: string; text?: string };
              out({ id: req.id, result: { ok: false, error: e.type ?? 'local', text: e.text ?? String(err) } });
            }
            break;
          case 'exit':
            bus.disconnect();
            out({ id: req.id, result: { ok: true, body: [] } });
            process.exit(0);
        }
      })();
    }
  });
}

if (process.argv[1] === HERE && process.argv[2] === 'agent') {
  agentMain(process.argv[3]!).catch((err) => {
    process.stdout.write(`${JSON.stringify({ fatal: String(err) })}\n`);
    process.exit(1);
  });
}

// --- the agent (test side) --------------------------------------------------------------

export interface SignalMsg {
  sender: string;
  destination: string | null;
  path: string;
  iface: string;
  member: string;
  body: Wire[];
  /** When the agent received it (ms since the epoch). */
  at: number;
}

/** argv prefix that runs a command as `user` (setpriv execs: the pid is the command's). */
export function asUser(user: TestUser | null): string[] {
  return user ? ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--'] : [];
}

export class Agent {
  readonly signals: SignalMsg[] = [];
  name = '';
  private nextId = 1;
  private readonly pending = new Map<number, (r: unknown) => void>();
  private readonly signalWaiters = new Set<() => void>();
  private stderr = '';

  private constructor(readonly child: ChildProcess, readonly user: TestUser | null) {}

  /** A client connection as `user` (null: root, like the test). */
  static async start(lab: Lab, address: string, user: TestUser | null): Promise<Agent> {
    const argv = [...asUser(user), process.execPath, HERE, 'agent', address];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    lab.track(child);
    const a = new Agent(child, user);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (a.stderr += d));
    let buf = '';
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`agent for ${user?.name ?? 'root'} not ready in 10 s: ${a.stderr}`)), 10_000);
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`agent exited (${code}): ${a.stderr}`));
      });
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const o = JSON.parse(buf.slice(0, nl)) as { ready?: boolean; name?: string; id?: number; result?: unknown; signal?: SignalMsg; fatal?: string };
          buf = buf.slice(nl + 1);
          if (o.ready) {
            a.name = o.name!;
            clearTimeout(t);
            resolve();
          } else if (o.id !== undefined) {
            a.pending.get(o.id)?.(o.result);
            a.pending.delete(o.id);
          } else if (o.signal) {
            a.signals.push(o.signal);
            for (const w of [...a.signalWaiters]) w();
          } else if (o.fatal) {
            a.stderr += o.fatal;
          }
        }
      });
    });
    await ready;
    return a;
  }

  private request<T>(op: string, extra: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`agent ${this.user?.name ?? 'root'}: ${op} got no answer in ${timeoutMs} ms (${this.stderr.slice(-300)})`));
      }, timeoutMs);
      this.pending.set(id, (r) => {
        clearTimeout(t);
        resolve(r as T);
      });
      this.child.stdin!.write(`${JSON.stringify({ id, op, ...extra })}\n`);
    });
  }

  call(c: CallSpec, timeoutMs = 15_000): Promise<CallResult> {
    return this.request('call', { call: c }, timeoutMs);
  }

  flood(c: CallSpec, count: number, timeoutMs = 120_000): Promise<{ ok: number; errors: Record<string, number> }> {
    return this.request('flood', { call: c, count }, timeoutMs);
  }

  requestName(name: string): Promise<CallResult> {
    return this.request('requestName', { name }, 10_000);
  }

  /** The first signal (received so far or later) matching `pred`. */
  async waitSignal(pred: (s: SignalMsg) => boolean, timeoutMs = 10_000): Promise<SignalMsg> {
    const t0 = Date.now();
    for (;;) {
      const found = this.signals.find(pred);
      if (found) return found;
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new Error(`agent ${this.user?.name ?? 'root'}: no matching signal in ${timeoutMs} ms; got ${JSON.stringify(this.signals.slice(-5).map((s) => s.member))}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.signalWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.signalWaiters.add(done);
      });
    }
  }

  /** Disconnects and ends the process. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin!.end();
    if (!(await waitExit(this.child, 3000))) await endChild(this.child);
  }
}

// --- the service's side ------------------------------------------------------------------

/**
 * FakeMonitor with what the D-Bus side reads too: open flows per process, and traffic that
 * keeps flowing (`growth`: bytes added to a pid's first flow at every read of the totals).
 */
export class BusFakeMonitor extends FakeMonitor {
  readonly growth = new Map<number, number>();
  totalsReads = 0;

  override async processTotals(q: { uid?: number }): Promise<ProcessTotals[]> {
    this.totalsReads++;
    for (const [pid, n] of this.growth) {
      const f = this.flows.find((x) => x.pid === pid);
      if (f) f.txBytes += n;
    }
    const list = await super.processTotals(q);
    for (const p of list) p.openFlows = this.flows.filter((f) => f.pid === p.pid && f.closedAt === null).length;
    return list;
  }
}

/**
 * The D-Bus service over a fake monitor (and load balancer): the API built as the daemon
 * builds it, the monitor's bus as the daemon's event bus.
 */
export function startTestDbusService(opts: Omit<DbusServiceOptions, 'methods' | 'bus' | 'lbAvailable' | 'monitor'> & { monitor: FakeMonitor; lb?: LbApi; history?: HistoryApi }): Promise<DbusService> {
  const { lb, history, monitor: _monitor, ...rest } = opts;
  const api = buildApi({ monitor: opts.monitor, lb: lb ?? null, history: history ?? null, version: opts.version, startedAt: new Date(), transports: () => ({
    rpc: { clients: 0, subscriptions: 0, subscriberDropped: 0, refused: {}, limits: { maxClients: 0, maxClientsPerUid: 0, reservedClients: 0 } },
    dbus: null,
  }) });
  return startDbusService({ ...rest, methods: api.methods, bus: opts.monitor.bus, lbAvailable: lb !== undefined });
}

/** A logger that keeps its records, so a test can say "nothing was logged as an error". */
export function memoryLogger(): { logger: Logger; records: Array<{ level: number; msg: string; [k: string]: unknown }> } {
  const records: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line) as { level: number; msg: string }) });
  return { logger, records };
}

/** Calls on org.ebpfmon1's two objects. */
export const manager = (member: string, sig = '', body: Wire[] = []): CallSpec => ({ dest: BUS_NAME, path: MANAGER_PATH, iface: MANAGER_IFACE, member, sig, body });
export const lbCall = (member: string, sig = '', body: Wire[] = []): CallSpec => ({ dest: BUS_NAME, path: LB_PATH, iface: LB_IFACE, member, sig, body });
export const getAll = (iface = MANAGER_IFACE, path = MANAGER_PATH): CallSpec => ({ dest: BUS_NAME, path, iface: 'org.freedesktop.DBus.Properties', member: 'GetAll', sig: 's', body: [iface] });

/** The body of a successful call, or a failure naming the error. */
export function ok(r: CallResult, what = 'call'): Wire[] {
  if (!r.ok) throw new Error(`${what} failed: ${r.error}: ${r.text}`);
  return r.body;
}

/** The error name of a failed call. */
export function errorOf(r: CallResult): string {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.error;
}

// --- introspection ----------------------------------------------------------------------

export interface IntroMember {
  kind: 'method' | 'property' | 'signal';
  name: string;
  /** method: "in:type name" / "out:type name"; signal: "type name"; property: its type and access. */
  args: string[];
  annotations: Record<string, string>;
}

export interface IntroInterface {
  name: string;
  annotations: Record<string, string>;
  members: Map<string, IntroMember>;
}

const attrs = (s: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([\w:-]+)\s*=\s*"([^"]*)"/g)) {
    out[m[1]!] = m[2]!.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  }
  return out;
};

/** Interfaces of one introspection document (comments ignored). Enough for D-Bus's own simple XML. */
export function parseIntrospection(xml: string): Map<string, IntroInterface> {
  const ifaces = new Map<string, IntroInterface>();
  const body = xml.replace(/<!--[\s\S]*?-->/g, '');
  for (const im of body.matchAll(/<interface\b([^>]*)>([\s\S]*?)<\/interface>/g)) {
    const iface: IntroInterface = { name: attrs(im[1]!).name!, annotations: {}, members: new Map() };
    let rest = im[2]!;
    for (const mm of rest.matchAll(/<(method|property|signal)\b([^>]*?)(\/>|>([\s\S]*?)<\/\1>)/g)) {
      const a = attrs(mm[2]!);
      const inner = mm[4] ?? '';
      const member: IntroMember = { kind: mm[1] as IntroMember['kind'], name: a.name!, args: [], annotations: {} };
      if (member.kind === 'property') member.args.push(`${a.type} ${a.access}`);
      for (const am of inner.matchAll(/<arg\b([^>]*?)\/?>/g)) {
        const aa = attrs(am[1]!);
        member.args.push(member.kind === 'method' ? `${aa.direction ?? 'in'}:${aa.type} ${aa.name ?? ''}` : `${aa.type} ${aa.name ?? ''}`);
      }
      for (const an of inner.matchAll(/<annotation\b([^>]*?)\/?>/g)) {
        const aa = attrs(an[1]!);
        member.annotations[aa.name!] = aa.value!;
      }
      iface.members.set(`${member.kind} ${member.name}`, member);
    }
    rest = rest.replace(/<(method|property|signal)\b[\s\S]*?(\/>|<\/\1>)/g, '');
    for (const an of rest.matchAll(/<annotation\b([^>]*?)\/?>/g)) {
      const aa = attrs(an[1]!);
      iface.annotations[aa.name!] = aa.value!;
    }
    ifaces.set(iface.name, iface);
  }
  return ifaces;
}
