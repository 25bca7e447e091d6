// SPDX-License-Identifier: Apache-2.0
// Test hosts: network namespaces joined by veth pairs, with addresses from the ranges set
// aside for tests (198.18.0.0/15, fd00:198::/64). Everything a Lab creates carries the
// lab's unique prefix and is removed by destroy(), which tests call from after() hooks;
// a sweep at suite start removes what a crashed run (dead pid) left behind.
//
// Hosts never touch eth0 or the root namespace's routes. A link may put one end in the
// root namespace (for a daemon running there); that end is named with the prefix too.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { keepTestOutput } from './keep.js';

const execFileP = promisify(execFile);

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export async function sh(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  try {
    const r = await execFileP(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20 });
    return { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    const res = { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
    if (opts.allowFail) return res;
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.code}): ${res.stderr.trim() || res.stdout.trim()}`);
  }
}

let labCounter = 0;
const PREFIX_RE = /^et([0-9a-z]+)x([0-9a-z]+)/; // et<pid36>x<n>: pid of the creating test process

export class Host {
  constructor(readonly lab: Lab, readonly name: string, readonly netns: string | null) {}

  /** Path of the namespace handle (for nsenter --net=...). Null for the root namespace. */
  get nsPath(): string | null {
    return this.netns ? `/run/netns/${this.netns}` : null;
  }

  /** Prefix that runs a command in this namespace without remounting /sys (keeps bpffs visible). */
  wrap(cmd: string, args: string[]): [string, string[]] {
    return this.netns ? ['nsenter', [`--net=/run/netns/${this.netns}`, '--', cmd, ...args]] : [cmd, args];
  }

  exec(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<ExecResult> {
    const [c, a] = this.wrap(cmd, args);
    return sh(c, a, opts);
  }

  /** Spawns a process in this namespace; the lab kills it (by pid) on destroy. */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const [c, a] = this.wrap(cmd, args);
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.lab.track(child);
    return child;
  }
}

export interface LinkInfo {
  a: { host: Host; ifname: string; ip4: string; ip6: string };
  b: { host: Host; ifname: string; ip4: string; ip6: string };
}

export class Lab {
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly rootLinks: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private links = 0;
  readonly root: Host;

  private constructor() {
    this.prefix = `et${process.pid.toString(36)}x${(labCounter++).toString(36)}`;
    this.root = new Host(this, 'root', null);
  }

  static async create(): Promise<Lab> {
    await sweepStale();
    return new Lab();
  }

  /** A new host: its own network namespace, loopback up. */
  async host(name: string): Promise<Host> {
    // EMON_LAB_NETNS_PREFIX: a tag in front of the namespaces' names (a session's own, e.g.
    // `h-td-`, so whoever shares the machine can tell them apart; interface names keep the
    // bare prefix: they are limited to 15 characters).
    const ns = `${process.env.EMON_LAB_NETNS_PREFIX ?? ''}${this.prefix}-${name}`;
    await sh('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return new Host(this, name, ns);
  }

  /**
   * Joins two hosts with a veth pair and gives each end an IPv4 address (a /24 inside
   * 198.18.0.0/15) and an IPv6 address (inside fd00:198::/64). Pass `lab.root` to put
   * one end in the root namespace.
   */
  async link(a: Host, b: Host, opts: { mtu?: number; ipv6?: boolean } = {}): Promise<LinkInfo> {
    const n = ++this.links;
    const ifa = `${this.prefix}${n}a`;
    const ifb = `${this.prefix}${n}b`;
    if (ifa.length > 15) throw new Error(`interface name too long: ${ifa}`);
    // Root-namespace links take a random subnet so that concurrent runs do not overlap there.
    const subnet = a.netns && b.netns ? n : 128 + ((process.pid + n * 7) % 127);
    const third = subnet % 256;
    const second = 18 + Math.floor(subnet / 256);
    const ip4a = `198.${second}.${third}.1`;
    const ip4b = `198.${second}.${third}.2`;
    const ip6a = `fd00:198::${subnet.toString(16)}:1`;
    const ip6b = `fd00:198::${subnet.toString(16)}:2`;
    await sh('ip', ['link', 'add', ifa, 'type', 'veth', 'peer', 'name', ifb]);
    for (const [host, ifname] of [[a, ifa], [b, ifb]] as const) {
      if (host.netns) await sh('ip', ['link', 'set', ifname, 'netns', host.netns]);
      else this.rootLinks.push(ifname);
    }
    const setup = async (host: Host, ifname: string, ip4: string, ip6: string) => {
      const ipx = (args: string[]) => (host.netns ? sh('ip', ['-n', host.netns, ...args]) : sh('ip', args));
      if (opts.mtu) await ipx(['link', 'set', ifname, 'mtu', String(opts.mtu)]);
      await ipx(['addr', 'add', `${ip4}/24`, 'dev', ifname]);
      if (opts.ipv6 !== false) await ipx(['addr', 'add', `${ip6}/112`, 'dev', ifname, 'nodad']);
      await ipx(['link', 'set', ifname, 'up']);
    };
    await setup(a, ifa, ip4a, ip6a);
    await setup(b, ifb, ip4b, ip6b);
    return { a: { host: a, ifname: ifa, ip4: ip4a, ip6: ip6a }, b: { host: b, ifname: ifb, ip4: ip4b, ip6: ip6b } };
  }

  /**
   * A veth pair in the root namespace whose peer stays down: the up end's transmit drops
   * what it is given at once (benches clone to it to price a clone with no receiver behind
   * it; this kernel has no dummy driver). Deleted on destroy, as the root ends of links are.
   */
  async deadEnd(): Promise<{ ifname: string; ifindex: number }> {
    const n = ++this.links;
    const ifname = `${this.prefix}${n}a`;
    if (ifname.length > 15) throw new Error(`interface name too long: ${ifname}`);
    await sh('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${this.prefix}${n}b`]);
    this.rootLinks.push(ifname);
    await sh('ip', ['link', 'set', ifname, 'up']);
    const ifindex = Number((await sh('cat', [`/sys/class/net/${ifname}/ifindex`])).stdout.trim());
    return { ifname, ifindex };
  }

  /**
   * Deletes a link made by `link()` and makes it again: same names, namespaces and addresses,
   * new ifindexes (what `ip link del` and a recreated VM or container interface look like).
   */
  async relink(l: LinkInfo, opts: { mtu?: number; ipv6?: boolean } = {}): Promise<void> {
    const ipx = (host: Host, args: string[]) => (host.netns ? sh('ip', ['-n', host.netns, ...args]) : sh('ip', args));
    await ipx(l.a.host, ['link', 'del', l.a.ifname]);
    await sh('ip', ['link', 'add', l.a.ifname, 'type', 'veth', 'peer', 'name', l.b.ifname]);
    for (const end of [l.a, l.b]) {
      if (end.host.netns) await sh('ip', ['link', 'set', end.ifname, 'netns', end.host.netns]);
      if (opts.mtu) await ipx(end.host, ['link', 'set', end.ifname, 'mtu', String(opts.mtu)]);
      await ipx(end.host, ['addr', 'add', `${end.ip4}/24`, 'dev', end.ifname]);
      if (opts.ipv6 !== false) await ipx(end.host, ['addr', 'add', `${end.ip6}/112`, 'dev', end.ifname, 'nodad']);
      await ipx(end.host, ['link', 'set', end.ifname, 'up']);
    }
  }

  track(child: ChildProcess): void {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
  }

  /** Registers extra cleanup (a pin directory, a temp dir...), run in reverse order on destroy. */
  onDestroy(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }

  /** A temporary directory removed on destroy. */
  tmpdir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${this.prefix}-`));
    this.onDestroy(() => fs.rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  /**
   * Where a test writes what a person may want to look at (screenshots, a program's log):
   * removed on destroy like tmpdir(), kept under EBPFMON_TEST_KEEP=1. The path is printed.
   */
  outputDir(name: string): string {
    const keep = keepTestOutput();
    const dir = keep ? fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-${name}-`)) : this.tmpdir();
    console.log(`# test output (${name}): ${dir}${keep ? ' (kept: EBPFMON_TEST_KEEP)' : ' (removed at the end; EBPFMON_TEST_KEEP=1 keeps it)'}`);
    return dir;
  }

  /** A system user (no home, no shell) removed on destroy; `groups` are created if needed. */
  async user(tag: string, groups: string[] = []): Promise<TestUser> {
    const name = `${this.prefix}${tag}`;
    await sh('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
    this.onDestroy(async () => {
      await sh('userdel', [name], { allowFail: true });
    });
    for (const g of groups) await sh('usermod', ['-aG', g, name]);
    const id = await sh('id', ['-u', name]);
    const gid = await sh('id', ['-g', name]);
    return { name, uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }

  /** A group unique to this lab (for the daemon's access.group settings), removed on destroy. */
  async group(tag: string): Promise<string> {
    const name = `${this.prefix}${tag}`;
    await sh('groupadd', ['--system', name]);
    this.onDestroy(async () => {
      await sh('groupdel', [name], { allowFail: true });
    });
    return name;
  }

  /** A pin directory unique to this lab, removed (with everything pinned in it) on destroy. */
  pinPath(tag = 'pins'): string {
    const p = `/sys/fs/bpf/${this.prefix}-${tag}`;
    this.onDestroy(() => fs.rmSync(p, { recursive: true, force: true }));
    return p;
  }

  async destroy(): Promise<void> {
    for (const child of this.children) {
      if (child.pid && child.exitCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    await Promise.all([...this.children].map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error(`lab cleanup failed: ${(err as Error).message}`);
      }
    }
    for (const l of this.rootLinks) await sh('ip', ['link', 'del', l], { allowFail: true });
    for (const ns of this.namespaces) await sh('ip', ['netns', 'del', ns], { allowFail: true });
    this.namespaces.length = 0;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let swept = false;
/** Removes namespaces, root links and pin dirs left by earlier runs whose process is dead. */
export async function sweepStale(): Promise<void> {
  if (swept) return;
  swept = true;
  const stale = (name: string) => {
    const m = PREFIX_RE.exec(name);
    return m !== null && !pidAlive(parseInt(m[1]!, 36));
  };
  const ns = (await sh('ip', ['netns', 'list'], { allowFail: true })).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
  for (const n of ns) if (stale(n)) await sh('ip', ['netns', 'del', n], { allowFail: true });
  const links = (await sh('ip', ['-o', 'link', 'show'], { allowFail: true })).stdout.split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '');
  for (const l of links) if (stale(l)) await sh('ip', ['link', 'del', l], { allowFail: true });
  if (fs.existsSync('/sys/fs/bpf')) {
    for (const p of fs.readdirSync('/sys/fs/bpf')) if (stale(p)) fs.rmSync(path.join('/sys/fs/bpf', p), { recursive: true, force: true });
  }
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

/** JSON lines printed by a spawned peer (test/helpers/peer.ts), as they arrive. */
export function jsonLines(child: ChildProcess): { lines: Array<Record<string, unknown>>; next(pred: (o: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (o: Record<string, unknown>) => boolean; resolve: (o: Record<string, unknown>) => void }> = [];
  let buf = '';
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        lines.push(o);
        for (const w of [...waiters]) if (w.pred(o)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(o);
        }
      } catch {
        /* not JSON */
      }
    }
  });
  return {
    lines,
    next(pred, timeoutMs = 15_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for output (stderr: ${err.slice(-500)}; got ${JSON.stringify(lines.slice(-3))})`)), timeoutMs);
        waiters.push({ pred, resolve: (o) => { clearTimeout(t); resolve(o); } });
      });
    },
  };
}
