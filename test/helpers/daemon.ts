// SPDX-License-Identifier: Apache-2.0
// Runs the real daemon (build/js/daemon/src/ebpfmon.js, as the package does) inside a lab host, with its own pin
// directory, socket and config file, and talks to it like ebpfmonctl does.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Host, type LinkInfo } from './lab.js';
import { scaled, SECOND_KERNEL } from './privileged.js';
import { DaemonClient } from '../../client/src/rpc.js';
import type { MethodName, ParamsOf, ResultOf } from '../../daemon/src/contract/methods.js';
import { STOP_DEADLINE_MS } from '../../daemon/src/sys/exit.js';

export const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The daemon benches and tests start: the bundle the package runs (daemon/bundle.mjs);
 * EBPFMON_DAEMON_MAIN runs another build's (a bench's same-run baseline: main built in
 * another worktree, docs/benchmarks.md). */
export const DAEMON_MAIN = process.env.EBPFMON_DAEMON_MAIN ?? path.join(BUILD, 'daemon/src/ebpfmon.js');

let bundleChecked = false;
/**
 * A bundle older than a compiled module is a daemon without the last change: `tsc -b` alone
 * does not remake it. Refused with what to run, once per process, before a daemon starts.
 */
export function assertFreshDaemonBundle(main = DAEMON_MAIN): void {
  if (bundleChecked || main !== path.join(BUILD, 'daemon/src/ebpfmon.js')) return;
  const dir = path.dirname(main);
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run npm run build (or npm run build:daemon after tsc)`);
  const bundled = fs.statSync(main).mtimeMs;
  const newer = (d: string): string | null => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        const n = newer(p);
        if (n) return n;
      } else if (e.name.endsWith('.js') && !(d === dir && /^ebpfmon(-.+)?\.js$/.test(e.name)) && fs.statSync(p).mtimeMs > bundled) return p;
    }
    return null;
  };
  const n = newer(dir);
  if (n) throw new Error(`${main} is older than ${n}: run npm run build:daemon (tsc -b does not remake the bundle)`);
  bundleChecked = true;
}
/** ebpfmonctl as installed: the one-file bundle (client/bundle.mjs) that the package runs. */
export const CTL_MAIN = path.join(BUILD, 'client/src/ebpfmonctl.js');
/** ebpfmonctl's compiled module tree, the bundle's input (test/unit/client/modules.test.ts). */
export const CTL_TREE_MAIN = path.join(BUILD, 'client/src/main.js');
/**
 * Node's options for the daemon, as its launchers give them (packaging/bin/ebpfmon, `npm
 * start`; test/unit/packaging/node-options.test.ts keeps the three equal).
 * EBPFMON_DAEMON_NODE_ARGS (space-separated, empty for none) overrides them for a bench's
 * before/after.
 */
export const LAUNCHER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4'];
export const DAEMON_NODE_ARGS: readonly string[] = process.env.EBPFMON_DAEMON_NODE_ARGS !== undefined
  ? process.env.EBPFMON_DAEMON_NODE_ARGS.split(' ').filter(Boolean)
  : LAUNCHER_NODE_ARGS;
/** The test peer (test/helpers/peer.ts): UDP/TCP clients and servers that report what they did. */
export const PEER = path.join(BUILD, 'test/helpers/peer.js');
export const OBJECT_DIR = path.resolve(BUILD, '../bpf');

export interface DaemonOptions {
  /** Config keys merged over the test defaults (interfaces ['*'], D-Bus off, fast GC). */
  config?: Record<string, unknown>;
  pinPath?: string;
  socketDir?: string;
  env?: Record<string, string>;
  /** Wait for the ready log line (default true). */
  wait?: boolean;
  /** The daemon's main.js (default this build's; benches compare another checkout's build). */
  main?: string;
  /** Start it at this nice value (`nice -n`), as the unit's Nice= does (default: ours). */
  nice?: number;
}

export class TestDaemon {
  private out = '';
  readonly exited: Promise<number | null>;

  constructor(readonly host: Host, readonly child: ChildProcess, readonly socketPath: string, readonly pinPath: string, readonly configPath: string) {
    // EBPFMON_DAEMON_OUTPUT_DIR (benches): each daemon's output also goes to DIR/daemon-PID.log,
    // for what Node writes there itself (--trace-gc-nvp in EBPFMON_DAEMON_NODE_ARGS).
    const dir = process.env.EBPFMON_DAEMON_OUTPUT_DIR;
    const copy = dir ? fs.createWriteStream(path.join(dir, `daemon-${child.pid}.log`)) : null;
    const take = (d: string) => {
      this.out += d;
      copy?.write(d);
    };
    child.stdout?.setEncoding('utf8').on('data', take);
    child.stderr?.setEncoding('utf8').on('data', take);
    if (copy) child.once('exit', () => copy.end());
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get output(): string {
    return this.out;
  }

  /** Parsed pino log lines. */
  logs(): Array<Record<string, unknown>> {
    return this.out.split('\n').flatMap((l) => {
      try {
        return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }

  /** Generous: the second-kernel guest runs under software emulation, on a shared machine. */
  async waitReady(timeoutMs = scaled(90_000)): Promise<void> {
    const t0 = Date.now();
    while (!this.out.includes('"msg":"ebpfmon ready"')) {
      if (this.child.exitCode !== null) throw new Error(`daemon exited (${this.child.exitCode}) before ready:\n${this.out.slice(-3000)}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`daemon not ready after ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A method of the contract, typed as the client calls it. */
  async call<M extends MethodName>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
    return (await this.callRaw(method, params)) as ResultOf<M>;
  }

  /** Any method with any params: for tests of what the daemon does with bad input. */
  async callRaw(method: string, params?: unknown): Promise<unknown> {
    const c = await DaemonClient.connect(this.socketPath);
    try {
      return await (c.call as (m: string, p?: unknown) => Promise<unknown>)(method, params);
    } finally {
      c.close();
    }
  }

  /** Not exited yet. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (clean stop, programs stay pinned) and wait for exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.running) process.kill(this.child.pid!, signal);
    return this.exited;
  }
}

export function writeConfig(dir: string, socketPath: string, pinPath: string, extra: Record<string, unknown> = {}): string {
  const cfg = {
    socketPath,
    pinPath,
    bpfObjectDir: OBJECT_DIR,
    interfaces: ['*'],
    dbus: { enabled: false },
    logLevel: 'info',
    flows: { gcIntervalSec: 2 },
    // Never the machine's /var/lib/ebpfmon: each test daemon keeps its history next to its config.
    // In the second-kernel guest history is off unless a test asks for it: it is user space
    // alone (the same code on every kernel), and under emulation its DuckDB open outlasted the
    // 4-s stop deadline of every daemon a test stopped soon after its start.
    ...extra,
    history: { path: path.join(dir, 'history'), ...(SECOND_KERNEL ? { enabled: false } : {}), ...(extra.history as object | undefined) },
  };
  const file = path.join(dir, 'ebpfmon.json');
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** Starts the daemon in `host` (its network namespace; the host's bpffs and /proc). */
export async function startDaemon(host: Host, opts: DaemonOptions = {}): Promise<TestDaemon> {
  const dir = opts.socketDir ?? host.lab.tmpdir();
  fs.chmodSync(dir, 0o755); // unprivileged test users must reach the socket
  const socketPath = path.join(dir, 'ebpfmon.sock');
  const pinPath = opts.pinPath ?? host.lab.pinPath();
  const configPath = writeConfig(dir, socketPath, pinPath, opts.config);
  assertFreshDaemonBundle(opts.main ?? DAEMON_MAIN);
  const argv = [...DAEMON_NODE_ARGS, opts.main ?? DAEMON_MAIN, '--config', configPath];
  // nice(1) execs the daemon: the child's pid stays the daemon's.
  const [cmd, args] = opts.nice === undefined ? [process.execPath, argv] : ['nice', ['-n', String(opts.nice), process.execPath, ...argv]];
  const child = host.spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const d = new TestDaemon(host, child, socketPath, pinPath, configPath);
  if (opts.wait !== false) await d.waitReady();
  return d;
}

/** Restarts a daemon with the same files (same pins, socket, config). */
export async function restartDaemon(prev: TestDaemon): Promise<TestDaemon> {
  assertFreshDaemonBundle();
  const child = prev.host.spawn(process.execPath, [...DAEMON_NODE_ARGS, DAEMON_MAIN, '--config', prev.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const d = new TestDaemon(prev.host, child, prev.socketPath, prev.pinPath, prev.configPath);
  await d.waitReady();
  return d;
}

/** The monitor suites' lab: host `mon` (where the daemon runs) joined to host `peer` by a veth pair. */
export async function monitorLab(): Promise<{ lab: Lab; mon: Host; peer: Host; link: LinkInfo }> {
  const lab = await Lab.create();
  try {
    const mon = await lab.host('mon');
    const peer = await lab.host('peer');
    return { lab, mon, peer, link: await lab.link(mon, peer) };
  } catch (e) {
    await lab.destroy();
    throw e;
  }
}

/** The after() hook of a monitor suite: stop the daemon (SIGTERM, its exit checked), remove its pins and attachments, destroy the lab. */
export async function destroyMonitorLab(daemon: TestDaemon | undefined, lab: Lab | undefined): Promise<void> {
  // A daemon still running (and ready) is stopped as systemd stops it, from whatever state
  // the test left it in (subscribers, captures, mirrors, a busy history): every test that
  // ends here also checks that SIGTERM exits 0 within the stop deadline. What went wrong
  // is thrown after the cleanup, so nothing is left behind either way.
  let problem: Error | undefined;
  if (daemon?.running && daemon.output.includes('"msg":"ebpfmon ready"')) {
    const limit = scaled(STOP_DEADLINE_MS + 4000);
    const code = await Promise.race([daemon.stop('SIGTERM'), new Promise<'late'>((r) => setTimeout(() => r('late'), limit).unref())]);
    if (code !== 0) {
      problem = new Error(`daemon ${daemon.pid} did not stop cleanly on SIGTERM: ${code === 'late' ? `still running after ${limit} ms` : `exit code ${code}`}; its last output:\n${daemon.output.slice(-3000)}`);
    }
  }
  await daemon?.stop('SIGKILL');
  if (daemon) await daemonOnce(daemon.host, daemon.configPath, ['--teardown']);
  await lab?.destroy();
  if (problem) throw problem;
}

/**
 * Runs ebpfmon --teardown (or another one-shot daemon command) in `host`. A command that
 * does not exit within `timeoutMs` (default: never) is killed and reported as code -1.
 */
export async function daemonOnce(host: Host, configPath: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  assertFreshDaemonBundle();
  const child = spawn(...host.wrap(process.execPath, [...DAEMON_NODE_ARGS, DAEMON_MAIN, '--config', configPath, ...args]), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = opts.timeoutMs === undefined ? null : setTimeout(() => {
    stderr += `\n(killed: still running after ${opts.timeoutMs} ms)`;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? -1)));
  if (timer) clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs ebpfmonctl (optionally as another user, through setpriv) and collects its output. */
export async function ctl(args: string[], opts: { socket: string; user?: { uid: number; gid: number }; host?: Host } = { socket: '' }): Promise<{ code: number; stdout: string; stderr: string }> {
  let cmd = process.execPath;
  let argv = [CTL_MAIN, '--socket', opts.socket, ...args];
  if (opts.user) {
    argv = [`--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--init-groups', cmd, ...argv];
    cmd = 'setpriv';
  }
  const [c, a] = opts.host ? opts.host.wrap(cmd, argv) : [cmd, argv];
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number>((r) => child.once('exit', (cde) => r(cde ?? -1)));
  return { code, stdout, stderr };
}
