// SPDX-License-Identifier: Apache-2.0
// A real systemd 252 and system bus, booted in systemd-nspawn, for end-to-end tests of
// what ships as a .deb (unit, D-Bus policy, sysusers, CLI). How it is put together, and
// why each flag is there (see "Real systemd and D-Bus in tests" in KERNEL-NOTES.md):
//
//  - rootfs: the cached tree from rootfs.ts, booted read-only with --volatile=overlay (a
//    tmpfs upper layer: writes vanish with the container), or a private unpacked copy.
//  - no systemd on the host: --register=no --keep-unit, and systemd-nspawn started in a
//    fresh cgroup of its own (cgroups.ts); it then creates `supervisor` and `payload` there.
//  - BPF: --capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_SYS_RAWIO (RAWIO lets the
//    container mount tracefs) and --system-call-filter="bpf perf_event_open" (without it
//    bpf() is EPERM); a private bpffs instance bound to /sys/fs/bpf. That bpffs is mounted
//    in a private mount namespace (unshare) that only systemd-nspawn lives in, so nothing
//    is ever mounted in the host's namespace and nothing can leak there.
//  - networking: --private-network (only lo inside); the host's interfaces and routes are
//    never touched.
//  - entering: `nsenter -t <container pid 1> -a`, from a shell first moved into a cgroup
//    inside the container's tree (so cgroup-attached BPF programs of the daemon see the
//    command's sockets), then setpriv to the container's capability bounding set (and to a
//    user for unprivileged commands). machinectl and systemd-run -M need a host systemd.
//  - lifetime: systemd-nspawn gets SIGTERM if this process dies (setpriv --pdeathsig),
//    destroy() powers off with SIGTERM, bounded, then SIGKILL; sweepStale() removes what a
//    killed run left behind (names carry the creating pid).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { boundingSetArg, capNames } from './caps.js';
import { CgroupSet, hierarchies } from './cgroups.js';
import { defaultLog, HarnessError, killQuietly, pidAlive, run, settlesWithin, shellQuote, tail, waitUntil, type Logger, type RunResult } from './command.js';
import { ensureRootfs, unpack, type RootfsImage } from './rootfs.js';
import { keepTestOutput } from '../../helpers/keep.js';

export const DEFAULT_CAPABILITIES = ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_SYS_RAWIO'] as const;
export const DEFAULT_SYSCALL_FILTER = 'bpf perf_event_open';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NAME_RE = /^ebpfmon-t([0-9a-z]+)-(\d+)$/; // ebpfmon-t<creating pid, base 36>-<n>
/** The cgroup (inside the container's tree) that commands entered with exec() run in. */
const EXEC_CGROUP = 'ebpfmon-harness';

export interface Bind {
  /** Host path (file or directory). */
  host: string;
  /** Path inside; default: the same as on the host. */
  container?: string;
  /** Default true. */
  readOnly?: boolean;
}

export interface ContainerOptions {
  /** Default: ensureRootfs() (builds and caches on first use). */
  rootfs?: RootfsImage;
  /** 'overlay' (default): the cached tree read-only with a tmpfs upper layer. 'copy': a private unpacked copy. */
  mode?: 'overlay' | 'copy';
  /** Extra bind mounts; a string binds that host path read-only at the same path. */
  binds?: Array<string | Bind>;
  /** Bind the host's node binary read-only at /usr/bin/node (default true). */
  bindNode?: boolean;
  capabilities?: readonly string[];
  systemCallFilter?: string;
  /** More systemd-nspawn arguments, appended last. */
  extraArgs?: readonly string[];
  /** Bound for boot up to `systemctl is-system-running` (default 90 s). */
  bootTimeoutMs?: number;
  /** Bound for a clean poweroff before SIGKILL (default 20 s). */
  stopTimeoutMs?: number;
  /** Accept a boot that ends "degraded" (a unit failed); default false: fail with the failed units. */
  allowDegraded?: boolean;
  /**
   * Debugging: destroy() leaves the container running and prints how to enter and stop it
   * (also with EBPFMON_TEST_KEEP=1). It then outlives the test process; the next run's
   * sweep powers it off once you are done.
   */
  keep?: boolean;
  log?: Logger;
}

export interface ExecOptions {
  /** Run as this user (created with addUser, or any passwd entry inside); default root. */
  user?: string;
  /** Added to a clean environment (PATH, HOME, USER, LANG=C.UTF-8, SYSTEMD_COLORS=0). */
  env?: Record<string, string>;
  /** Working directory inside; default the user's home (root: /). */
  cwd?: string;
  input?: string | Buffer;
  /** Default 60 s; enforced inside the container (coreutils timeout) and on the host. */
  timeoutMs?: number;
  /** Return non-zero exits instead of throwing. */
  allowFail?: boolean;
  /** Names the step in error messages. */
  step?: string;
  /**
   * Run as a transient service of the container's systemd (`systemd-run --wait --pipe`)
   * instead of entering with nsenter: the command then gets exactly what a unit gets there
   * (nspawn's seccomp filter and bounding set, plus the given unit properties, e.g.
   * 'CapabilityBoundingSet=CAP_BPF CAP_PERFMON'). Use it to prove what the daemon's unit can do.
   */
  confined?: boolean | { properties?: string[] };
}

export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

let counter = 0;

export class Container {
  /** Machine name (also the hostname inside, the cgroup name and the temp dir name). */
  readonly name: string;
  /** Host temp dir: console.log, the bpffs mount point, the rootfs copy in 'copy' mode. */
  readonly dir: string;
  readonly rootfs: RootfsImage;
  /** Wall-clock ms of create()'s steps. */
  readonly timings: Record<string, number> = {};
  private nspawn: ChildProcess | null = null;
  private leaderPid = 0;
  private capBnd: string[] = [];
  private readonly cgroup: CgroupSet;
  private readonly children = new Set<ChildProcess>();
  private readonly users = new Map<string, UserInfo>();
  private destroying: Promise<void> | null = null;
  private readonly log: Logger;

  private constructor(name: string, rootfs: RootfsImage, private readonly opts: ContainerOptions) {
    this.name = name;
    this.rootfs = rootfs;
    this.dir = path.join(os.tmpdir(), name);
    this.cgroup = CgroupSet.at(name);
    this.log = opts.log ?? defaultLog;
  }

  /** Boots a container and waits until its systemd reports the system running. Destroys it again on any failure. */
  static async create(opts: ContainerOptions = {}): Promise<Container> {
    const log = opts.log ?? defaultLog;
    await sweepStale(log);
    const rootfs = opts.rootfs ?? (await ensureRootfs({ log }));
    for (const b of opts.binds ?? []) {
      const host = typeof b === 'string' ? b : b.host;
      if (!fs.existsSync(host)) throw new HarnessError('booting', `bind source does not exist: ${host}`);
    }
    const c = new Container(`ebpfmon-t${process.pid.toString(36)}-${counter++}`, rootfs, opts);
    try {
      await c.boot();
      return c;
    } catch (err) {
      const diag = await c.diagnostics().catch(() => '');
      await c.destroy().catch((e: Error) => log(`destroy after failed boot: ${e.message}`));
      if (err instanceof HarnessError && diag) err.message += `\n${diag}`;
      throw err;
    }
  }

  private get keep(): boolean {
    return this.opts.keep ?? keepTestOutput();
  }

  /** PID of the container's systemd, as seen on the host. */
  get leader(): number {
    return this.leaderPid;
  }

  /** PID of systemd-nspawn on the host. */
  get nspawnPid(): number {
    return this.nspawn?.pid ?? 0;
  }

  /** The container's /sys/fs/bpf (a private bpffs instance), readable from the host while the container runs. */
  get bpffs(): string {
    return `/proc/${this.nspawnPid}/root${path.join(this.dir, 'bpffs')}`;
  }

  get consoleLog(): string {
    return path.join(this.dir, 'console.log');
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    const t = (name: string, t0: number) => (this.timings[name] = Math.round(performance.now() - t0));
    let t0 = performance.now();
    if (fs.existsSync(this.dir)) removeTree(this.dir);
    fs.mkdirSync(path.join(this.dir, 'bpffs'), { recursive: true });
    let root = this.rootfs.baseDir;
    if (o.mode === 'copy') {
      root = path.join(this.dir, 'root');
      await unpack(this.rootfs.tarball, root, this.log);
      t('unpack', t0);
    }
    t0 = performance.now();
    const cgroup = CgroupSet.create(this.name);
    const binds = [...(o.bindNode === false ? [] : [{ host: process.execPath, container: '/usr/bin/node' }]), ...(o.binds ?? [])].map((b) => (typeof b === 'string' ? { host: b } : b));
    const args = [
      `--directory=${root}`,
      ...(o.mode === 'copy' ? [] : ['--volatile=overlay']),
      `--machine=${this.name}`,
      '--boot',
      '--register=no',
      '--keep-unit',
      '--private-network',
      '--link-journal=no',
      '--console=read-only',
      `--capability=${(o.capabilities ?? DEFAULT_CAPABILITIES).join(',')}`,
      `--system-call-filter=${o.systemCallFilter ?? DEFAULT_SYSCALL_FILTER}`,
      `--bind=${path.join(this.dir, 'bpffs')}:/sys/fs/bpf`,
      ...binds.map((b) => {
        for (const p of [b.host, b.container ?? b.host]) if (p.includes(':')) throw new HarnessError('booting', `bind path contains ':' (nspawn cannot bind it): ${p}`);
        return `--bind${b.readOnly === false ? '' : '-ro'}=${b.host}:${b.container ?? b.host}`;
      }),
      ...(o.extraArgs ?? []),
    ];
    // The shell moves itself into the container's cgroup, then becomes (exec, same pid)
    // unshare -> sh -> setpriv -> systemd-nspawn, so that pid is nspawn's and its parent is us.
    const pdeathsig = this.keep ? 'keep' : 'SIGTERM';
    const script = `set -e; ${cgroup.shellMoveSelf()}; exec unshare --mount --propagation private -- sh -c 'mount -t bpf bpf "$0" && exec setpriv --pdeathsig ${pdeathsig} -- "$@"' "$BPFFS" systemd-nspawn "$@"`;
    const consoleFd = fs.openSync(this.consoleLog, 'w');
    this.log(`container ${this.name}: booting (${o.mode ?? 'overlay'} on ${this.rootfs.baseDir})`);
    fs.writeSync(consoleFd, `# systemd-nspawn ${shellQuote(args)}\n`);
    this.nspawn = spawn('sh', ['-c', script, 'sh', ...args], {
      stdio: ['ignore', consoleFd, consoleFd],
      detached: true, // not in our process group: a ^C reaches us, and we power the container off cleanly
      env: { ...process.env, BPFFS: path.join(this.dir, 'bpffs') },
    });
    fs.closeSync(consoleFd);
    let exited: string | null = null;
    this.nspawn.once('exit', (code, signal) => (exited = signal ? `killed by ${signal}` : `exited with code ${code}`));
    const bootTimeout = o.bootTimeoutMs ?? 90_000;
    const deadline = performance.now() + bootTimeout;
    const consoleContext = async () => `  console (${this.consoleLog}, tail):\n${indent(tail(readOr(this.consoleLog), 30))}`;

    this.leaderPid = await waitUntil(
      'the container to start (its PID 1)',
      () => {
        if (exited) throw new HarnessError('booting', `systemd-nspawn ${exited} before the container started`, { command: ['systemd-nspawn', ...args] });
        return findLeader(this.nspawnPid);
      },
      { timeoutMs: bootTimeout, intervalMs: 20, context: consoleContext },
    );
    cgroup.child('payload').child(EXEC_CGROUP).ensure();
    // exec() gives commands this bounding set: read it before the first one
    this.capBnd = capNames(/^CapBnd:\s*(\S+)/m.exec(readOr(`/proc/${this.leaderPid}/status`))?.[1] ?? '0');
    const state = await waitUntil(
      'systemd in the container to finish starting up',
      async () => {
        if (exited) throw new HarnessError('booting', `systemd-nspawn ${exited} during boot`);
        const left = Math.max(1_000, deadline - performance.now());
        const r = await this.exec(['systemctl', 'is-system-running', '--wait'], { allowFail: true, timeoutMs: left, step: 'waiting for boot' });
        const s = r.stdout.trim();
        // "Failed to connect to bus" (exit 1, no state) until PID 1 has its private socket
        return ['running', 'degraded', 'maintenance', 'stopping'].includes(s) ? s : undefined;
      },
      { timeoutMs: Math.max(1_000, deadline - performance.now()), intervalMs: 50, context: consoleContext },
    );
    t('boot', t0);
    if (state !== 'running' && !(state === 'degraded' && o.allowDegraded)) {
      const failed = await this.exec(['systemctl', '--failed', '--no-legend', '--plain'], { allowFail: true });
      throw new HarnessError('booting', `the system is ${state} instead of running`, { context: `  failed units:\n${indent(failed.stdout.trim() || '(none listed)')}` });
    }
    this.log(`container ${this.name}: ${state} after ${(this.timings.boot! / 1000).toFixed(1)} s (PID 1 = host pid ${this.leaderPid})`);
  }

  // --- running commands ----------------------------------------------------------------

  /** Runs a command inside and waits for it. Throws a HarnessError (with the journal's tail) unless it exits 0 or allowFail. */
  async exec(cmd: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const { argv, inner } = await this.commandLine(cmd, opts, timeoutMs);
    const step = opts.step ?? `running \`${shellQuote(cmd)}\` in ${this.name}${opts.user ? ` as ${opts.user}` : ''}`;
    const r = await run(argv[0]!, argv.slice(1), {
      step,
      timeoutMs: timeoutMs + 5_000,
      allowFail: true,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
    });
    const timedOut = !opts.confined && r.code === 124 && r.durationMs >= timeoutMs;
    if (timedOut || (r.code !== 0 && !opts.allowFail)) {
      const summary = timedOut ? `timed out after ${(timeoutMs / 1000).toFixed(0)} s` : `exited with code ${r.code}`;
      throw new HarnessError(step, summary, { command: inner, result: r, context: await this.journalContext() });
    }
    return r;
  }

  /**
   * Starts a long-running command inside (as `user`, if given). `pid` resolves to its pid in
   * the container's PID namespace (what the daemon and ebpfmonctl see). It is killed on destroy().
   */
  spawn(cmd: readonly string[], opts: Omit<ExecOptions, 'timeoutMs' | 'allowFail' | 'input' | 'confined'> = {}): ContainerProcess {
    const proc = new ContainerProcess(this, cmd);
    this.commandLine(['sh', '-c', 'echo "$$"; exec "$@"', 'sh', ...cmd], { ...opts, timeoutMs: 0 }, 0).then(
      ({ argv }) => {
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
        this.children.add(child);
        child.once('exit', () => this.children.delete(child));
        proc.attach(child);
      },
      (err: Error) => proc.fail(err),
    );
    return proc;
  }

  /** Host argv that runs `cmd` inside, and the inner command line (for messages). */
  private async commandLine(cmd: readonly string[], opts: ExecOptions, timeoutMs: number): Promise<{ argv: string[]; inner: string[] }> {
    if (!this.leaderPid || this.destroying) throw new HarnessError('running a command', `container ${this.name} is not running`);
    const user = opts.user && opts.user !== 'root' ? await this.userInfo(opts.user) : null;
    const env: Record<string, string> = {
      PATH,
      LANG: 'C.UTF-8',
      HOME: user?.home ?? '/root',
      USER: user?.name ?? 'root',
      LOGNAME: user?.name ?? 'root',
      SYSTEMD_COLORS: '0',
      SYSTEMD_PAGER: '',
      TERM: 'dumb',
      ...opts.env,
    };
    const cwd = opts.cwd ?? (user ? user.home : '/');
    const secs = Math.ceil(timeoutMs / 1000);
    let inner: string[];
    if (opts.confined) {
      const props = typeof opts.confined === 'object' ? (opts.confined.properties ?? []) : [];
      inner = [
        'systemd-run', '--quiet', '--wait', '--pipe', '--collect', '--service-type=exec',
        ...(secs ? [`--property=RuntimeMaxSec=${secs}`] : []),
        ...(user ? [`--uid=${user.name}`, `--gid=${user.gid}`] : []),
        `--working-directory=${cwd}`,
        ...Object.entries(opts.env ?? {}).map(([k, v]) => `--setenv=${k}=${v}`),
        ...props.map((p) => `--property=${p}`),
        '--', ...cmd,
      ];
    } else {
      inner = secs ? ['timeout', '--kill-after=2', String(secs), ...cmd] : [...cmd];
    }
    const setpriv = [
      'setpriv',
      ...(user && !opts.confined ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'] : []),
      `--bounding-set=${boundingSetArg(this.capBnd)}`,
      '--inh-caps=-all',
      '--',
    ];
    const envArgs = ['env', '-i', `--chdir=${opts.confined ? '/' : cwd}`, ...Object.entries(opts.confined ? { PATH, LANG: 'C.UTF-8', SYSTEMD_COLORS: '0' } : env).map(([k, v]) => `${k}=${v}`)];
    const move = this.cgroup.child('payload').child(EXEC_CGROUP).shellMoveSelf();
    const argv = ['sh', '-c', `${move} && exec "$@"`, 'sh', 'nsenter', `--target=${this.leaderPid}`, '--all', ...setpriv, ...envArgs, ...inner];
    return { argv, inner: opts.confined ? inner : [...cmd] };
  }

  /** systemctl with the given arguments (as root). */
  systemctl(args: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    return this.exec(['systemctl', ...args], opts);
  }

  /** Unit properties, e.g. show('x.service', ['ActiveState', 'StatusText', 'NRestarts']). */
  async show(unit: string, props: readonly string[]): Promise<Record<string, string>> {
    const r = await this.exec(['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)]);
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  /** Polls a unit's properties until `pred` holds; the error shows the last values and the unit's journal. */
  async waitForUnit(unit: string, props: readonly string[], pred: (p: Record<string, string>) => boolean, what: string, timeoutMs = 30_000): Promise<Record<string, string>> {
    let last: Record<string, string> = {};
    return waitUntil(
      `${unit}: ${what}`,
      async () => {
        last = await this.show(unit, props);
        return pred(last) ? last : undefined;
      },
      { timeoutMs, intervalMs: 100, context: async () => `  last: ${JSON.stringify(last)}\n  journal of ${unit}:\n${indent(await this.journal(unit, 40))}` },
    );
  }

  // --- files, users, packages ------------------------------------------------------------

  async readFile(file: string): Promise<string> {
    return (await this.exec(['cat', '--', file], { step: `reading ${file} in ${this.name}` })).stdout;
  }

  async writeFile(file: string, data: string | Buffer, opts: { mode?: string; owner?: string } = {}): Promise<void> {
    await this.exec(
      ['sh', '-c', 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1" && chmod "$2" -- "$1" && if [ -n "$3" ]; then chown "$3" -- "$1"; fi', 'sh', file, opts.mode ?? '0644', opts.owner ?? ''],
      { input: data, step: `writing ${file} in ${this.name}` },
    );
  }

  /** Creates a user (own group, home directory, /bin/sh) and adds it to existing groups. */
  async addUser(name: string, opts: { groups?: readonly string[]; uid?: number } = {}): Promise<UserInfo> {
    await this.exec(
      ['useradd', '--create-home', '--user-group', '--shell=/bin/sh', ...(opts.uid !== undefined ? [`--uid=${opts.uid}`] : []), ...(opts.groups?.length ? [`--groups=${opts.groups.join(',')}`] : []), name],
      { step: `creating user ${name}${opts.groups?.length ? ` in groups ${opts.groups.join(',')}` : ''}` },
    );
    this.users.delete(name);
    return this.userInfo(name);
  }

  async userInfo(name: string): Promise<UserInfo> {
    let u = this.users.get(name);
    if (!u) {
      const r = await this.exec(['getent', 'passwd', name], { allowFail: true });
      const f = r.stdout.trim().split(':');
      if (r.code !== 0 || f.length < 7) throw new HarnessError('looking up a user', `no user ${name} in ${this.name} (create it with addUser)`);
      u = { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
      this.users.set(name, u);
    }
    return u;
  }

  /**
   * Installs a .deb (a path inside: bind its directory in). If it depends on nodejs and
   * none is installed, first installs an empty `nodejs` package at the host's version:
   * the container runs the host's node bound at /usr/bin/node (Debian 12's own is 18).
   */
  async installDeb(debPath: string, opts: { stubNode?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const depends = (await this.exec(['dpkg-deb', '--field', debPath, 'Depends', 'Pre-Depends'], { step: `reading ${debPath}` })).stdout;
    if (opts.stubNode !== false && /(^|[\s,|])nodejs\b/.test(depends)) await this.stubHostNode();
    return this.exec(['dpkg', '--install', debPath], { step: `installing ${debPath}`, timeoutMs: opts.timeoutMs ?? 180_000, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  }

  /** Registers the bound host node with dpkg as package nodejs <host version>-hostbind (idempotent). */
  async stubHostNode(): Promise<void> {
    if ((await this.exec(['dpkg-query', '--show', 'nodejs'], { allowFail: true })).code === 0) return;
    const control = [
      'Package: nodejs',
      `Version: ${process.versions.node}-hostbind`,
      'Architecture: all',
      'Maintainer: ebpfmon tests <tests@invalid>',
      'Description: the host node binary, bound at /usr/bin/node by the nspawn test harness',
      '',
    ].join('\n');
    await this.writeFile('/tmp/nodejs-stub/DEBIAN/control', control);
    await this.exec(['dpkg-deb', '--root-owner-group', '--build', '/tmp/nodejs-stub', '/tmp/nodejs-stub.deb'], { step: 'building the nodejs stub package' });
    await this.exec(['dpkg', '--install', '/tmp/nodejs-stub.deb'], { step: 'installing the nodejs stub package' });
  }

  // --- diagnostics -----------------------------------------------------------------------

  /** The journal's tail (of one unit, or of everything). Never throws: returns why it could not read it. */
  async journal(unit?: string, lines = 60): Promise<string> {
    if (!this.leaderPid || this.destroying) return '(container not running)';
    try {
      const r = await run(...this.quick(['journalctl', '--no-pager', '--output=short-monotonic', `--lines=${lines}`, ...(unit ? [`--unit=${unit}`] : [])]), { allowFail: true, timeoutMs: 10_000 });
      return r.stdout.trim() || r.stderr.trim() || '(empty)';
    } catch (e) {
      return `(journal unavailable: ${(e as Error).message.split('\n')[0]})`;
    }
  }

  /** Console tail, failed units and journal tail: what to append to a failure message. */
  async diagnostics(): Promise<string> {
    const consoleText = tail(readOr(this.consoleLog), 20);
    const parts = consoleText ? [`  container ${this.name} console (${this.consoleLog}, tail):\n${indent(consoleText)}`] : [];
    if (this.leaderPid && !this.destroying) {
      const failed = await run(...this.quick(['systemctl', '--failed', '--no-legend', '--plain']), { allowFail: true, timeoutMs: 10_000 }).catch(() => null);
      if (failed?.stdout.trim()) parts.push(`  failed units:\n${indent(failed.stdout.trim())}`);
      parts.push(`  journal (tail):\n${indent(await this.journal(undefined, 30))}`);
    }
    return parts.join('\n');
  }

  private async journalContext(): Promise<string> {
    return `  container ${this.name} journal (tail):\n${indent(await this.journal(undefined, 25))}`;
  }

  /** A root command line for diagnostics, without user lookups or cgroup moves. */
  private quick(cmd: string[]): [string, string[]] {
    return ['nsenter', [`--target=${this.leaderPid}`, '--all', 'env', '-i', `PATH=${PATH}`, 'SYSTEMD_COLORS=0', ...cmd]];
  }

  // --- teardown --------------------------------------------------------------------------

  /** Powers off (SIGTERM to systemd-nspawn, bounded), then SIGKILL; removes cgroups and the temp dir. Idempotent. */
  destroy(): Promise<void> {
    if (this.keep && this.leaderPid && !this.destroying) {
      this.log(
        `container ${this.name} KEPT for debugging (keep / EBPFMON_TEST_KEEP=1):\n` +
          `  enter:  nsenter --target=${this.leaderPid} --all env -i PATH=${PATH} TERM=xterm bash -l\n` +
          `  logs:   nsenter --target=${this.leaderPid} --all journalctl -b --no-pager | less\n` +
          `  stop:   kill ${this.nspawnPid}   (the next test run removes its cgroups and ${this.dir})`,
      );
      this.nspawn?.unref(); // let this process exit; the container lives on
      this.destroying = Promise.resolve();
    }
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const t0 = performance.now();
    const problems: string[] = [];
    for (const child of this.children) if (child.pid) killQuietly(child.pid, 'SIGKILL');
    const nspawn = this.nspawn;
    if (nspawn?.pid && nspawn.exitCode === null && nspawn.signalCode === null) {
      const gone = new Promise<void>((r) => nspawn.once('exit', () => r()));
      const within = (ms: number) => settlesWithin(gone, ms);
      killQuietly(nspawn.pid, 'SIGTERM'); // nspawn turns it into a clean poweroff of the container
      if (!(await within(this.opts.stopTimeoutMs ?? 20_000))) {
        problems.push(`no clean poweroff within ${((this.opts.stopTimeoutMs ?? 20_000) / 1000).toFixed(0)} s: SIGKILL`);
        killQuietly(nspawn.pid, 'SIGKILL');
        if (this.leaderPid) killQuietly(this.leaderPid, 'SIGKILL'); // ends the whole PID namespace
        if (!(await within(5_000))) problems.push(`systemd-nspawn (pid ${nspawn.pid}) survived SIGKILL`);
      }
    }
    if (this.leaderPid) {
      await waitUntil('the container PID 1 to exit', () => !pidAlive(this.leaderPid), { timeoutMs: 5_000 }).catch(() => problems.push(`container PID 1 (${this.leaderPid}) still alive`));
    }
    await this.cgroup.remove().catch((e: Error) => problems.push(e.message));
    const consoleText = readOr(this.consoleLog);
    try {
      removeTree(this.dir);
    } catch (e) {
      problems.push((e as Error).message);
    }
    this.leaderPid = 0;
    const how = nspawn ? (nspawn.signalCode ? `, systemd-nspawn killed by ${nspawn.signalCode}` : `, systemd-nspawn exit ${nspawn.exitCode}`) : '';
    this.log(`container ${this.name}: destroyed in ${((performance.now() - t0) / 1000).toFixed(1)} s${how}${problems.length ? ` with problems: ${problems.join('; ')}` : ''}`);
    if (problems.length) throw new HarnessError(`destroying ${this.name}`, problems.join('; '), { context: `  console (tail):\n${indent(tail(consoleText, 30))}` });
  }
}

/** A command started with Container.spawn(). */
export class ContainerProcess {
  /** Its pid inside the container's PID namespace. */
  readonly pid: Promise<number>;
  /** Resolves when the host-side nsenter exits (the command ended or was killed). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private err = '';
  private resolvePid!: (pid: number) => void;
  private rejectPid!: (e: Error) => void;
  private resolveExit!: (v: { code: number | null; signal: NodeJS.Signals | null }) => void;

  constructor(private readonly container: Container, readonly cmd: readonly string[]) {
    this.pid = new Promise((res, rej) => {
      this.resolvePid = res;
      this.rejectPid = rej;
    });
    this.pid.catch(() => {}); // a caller that never awaits pid must not get an unhandled rejection
    this.exited = new Promise((res) => (this.resolveExit = res));
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  /** @internal */
  attach(child: ChildProcess): void {
    let gotPid = false;
    child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      if (!gotPid) {
        const nl = this.out.indexOf('\n');
        if (nl >= 0) {
          gotPid = true;
          this.resolvePid(Number(this.out.slice(0, nl)));
          this.out = this.out.slice(nl + 1);
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    child.once('exit', (code, signal) => {
      if (!gotPid) this.rejectPid(new HarnessError(`starting \`${shellQuote(this.cmd)}\``, `ended (code ${code}, signal ${signal}) before it started`, { context: `  stderr: ${this.err.trim()}` }));
      this.resolveExit({ code, signal });
    });
  }

  /** @internal */
  fail(err: Error): void {
    this.rejectPid(err);
    this.resolveExit({ code: null, signal: null });
  }

  /** Waits until its stdout matches. */
  async waitForOutput(re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
    return waitUntil(`output ${re} from \`${shellQuote(this.cmd)}\``, () => re.exec(this.out) ?? undefined, {
      timeoutMs,
      context: async () => `  stdout so far:\n${indent(tail(this.out, 10))}\n  stderr so far:\n${indent(tail(this.err, 10))}`,
    });
  }

  /** Sends a signal to it inside the container (as root) and waits, bounded, for it to end. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    const pid = await this.pid;
    await this.container.exec(['kill', `-${signal.replace(/^SIG/, '')}`, String(pid)], { allowFail: true });
    await settlesWithin(this.exited, timeoutMs);
  }
}

// --- helpers -----------------------------------------------------------------------------

/** The container's PID 1 among nspawn's descendants: the process whose innermost pid is 1. */
function findLeader(nspawnPid: number): number | undefined {
  const children = new Map<number, number[]>();
  const nsPid = new Map<number, string>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const status = readOr(`/proc/${e}/status`);
    const ppid = Number(/^PPid:\s*(\d+)/m.exec(status)?.[1] ?? 0);
    const pid = Number(e);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    nsPid.set(pid, /^NSpid:\s*(.+)$/m.exec(status)?.[1]?.trim() ?? '');
  }
  const queue = [...(children.get(nspawnPid) ?? [])];
  while (queue.length) {
    const pid = queue.shift()!;
    const ids = nsPid.get(pid)?.split(/\s+/) ?? [];
    if (ids.length >= 2 && ids[ids.length - 1] === '1') {
      // systemd, not the short-lived helper nspawn runs before it execs init
      if (readOr(`/proc/${pid}/comm`).trim() === 'systemd') return pid;
      return undefined;
    }
    queue.push(...(children.get(pid) ?? []));
  }
  return undefined;
}

/** rm -rf that refuses to descend into anything mounted (a bind of the project, say). */
function removeTree(dir: string): void {
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (mounts.length) throw new Error(`not removing ${dir}: still mounted there: ${mounts.join(', ')}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function indent(text: string): string {
  return text.split('\n').map((l) => `    ${l}`).join('\n');
}

let swept = false;
/**
 * Removes what containers of dead test processes left: their cgroups (and any process
 * still in them, such as a systemd-nspawn whose parent was SIGKILLed before pdeathsig
 * could fire) and their temp dirs. Names carry the creating pid, so live runs are left alone.
 */
export async function sweepStale(log: Logger = defaultLog): Promise<void> {
  if (swept) return;
  swept = true;
  const stale = (name: string) => {
    const m = NAME_RE.exec(name);
    return m !== null && !pidAlive(parseInt(m[1]!, 36));
  };
  const h = hierarchies();
  const names = new Set<string>();
  for (const root of [h.v2, h.v1systemd]) if (root) for (const e of readdirOr(root)) if (stale(e)) names.add(e);
  for (const name of names) {
    const cg = CgroupSet.at(name);
    const supervisor = cg.child('supervisor').pids();
    if (supervisor.length) {
      log(`sweep: powering off leftover container ${name} (systemd-nspawn pid ${supervisor.join(',')})`);
      for (const pid of supervisor) killQuietly(pid, 'SIGTERM');
      await waitUntil(`leftover ${name} to power off`, () => cg.child('supervisor').pids().length === 0, { timeoutMs: 20_000 }).catch(() => undefined);
    }
    log(`sweep: removing cgroup ${name} of a dead test run`);
    await cg.remove().catch((e: Error) => log(`sweep: ${e.message}`));
  }
  for (const e of readdirOr(os.tmpdir())) {
    if (!stale(e)) continue;
    log(`sweep: removing ${path.join(os.tmpdir(), e)} of a dead test run`);
    try {
      removeTree(path.join(os.tmpdir(), e));
    } catch (err) {
      log(`sweep: ${(err as Error).message}`);
    }
  }
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
