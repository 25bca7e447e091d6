// SPDX-License-Identifier: Apache-2.0
// The GNOME Shell extension (packaging/gnome-shell) in a real gnome-shell 43 (Debian's), run
// as an unprivileged lab user on Xvfb with its own session bus, reading the real daemon
// (in a lab host) over a private system bus that carries the daemon's bus policy. The
// user's client talks to a lab address the test's MMDB places in a city; root's client
// talks at the same time. Truth: the pid the test spawned, the bytes it sent, the city the
// test wrote into the MMDB, root's pid (which must never appear).
// The shell's state is read with org.gnome.Shell.Eval, which GNOME 41+ answers only in
// unsafe mode: a test-only extension (test/fixtures/gnome-shell) turns it on. A screenshot
// with the menu open is saved in a directory the test prints.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Host, type Lab, type LinkInfo, jsonLines, sh, type TestUser } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { CTL_MAIN, destroyMonitorLab, monitorLab, PEER, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { asUser, endChild, REPO, startPrivateBus, type PrivateBus } from '../helpers/dbus.js';
import { cityRecord, writeMmdb } from '../helpers/mmdb.js';

const UUID = 'ebpfmon@ebpfmon.org';
const HELPER = 'unsafe-mode@ebpfmon.test';
const EXTENSION_DIR = path.join(REPO, 'packaging/gnome-shell', UUID);
const HELPER_DIR = path.join(REPO, 'test/fixtures/gnome-shell', HELPER);
const POLICY = path.join(REPO, 'packaging/dbus/org.ebpfmon1.conf');
const CITY = { city: 'Reykjavík', country: 'IS', lat: 64.1466, lon: -21.9426, asn: 64512, org: 'ebpfmon test lab' };
/** ExtensionState.ENABLED in gnome-shell 43 (misc/extensionUtils.js): loaded and enabled,
 * what later versions call ACTIVE. */
const STATE_ENABLED = 1;

interface IndicatorState {
  connected: boolean;
  seesAll?: boolean;
  tx: number;
  rx: number;
  top: Array<{ pid: number | null; comm: string | null; bytesPerSec: number; txBytesPerSec: number; where: string }>;
  notified: Array<{ pid: number; comm: string; body: string }>;
  signals: number;
  error: string | null;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out: ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** gdbus prints a string as GVariant text: '...' with \ and ' escaped. */
function gvariantString(out: string): string {
  const m = /^\((true|false), '(.*)'\)\s*$/s.exec(out.trim());
  if (!m) throw new Error(`unexpected gdbus output: ${out.slice(0, 300)}`);
  if (m[1] !== 'true') throw new Error(`Eval failed: ${m[2]}`);
  return m[2]!.replace(/\\(.)/g, '$1');
}

describe('GNOME Shell extension in a real gnome-shell', privileged({ timeout: 300_000 }), () => {
  let lab: Lab;
  let mon: Host;
  let peer: Host;
  let link: LinkInfo;
  let bus: PrivateBus;
  let daemon: TestDaemon;
  let user: TestUser;
  let env: Record<string, string>;
  let out: string;
  let xdgOpenLog: string;
  const children: ChildProcess[] = [];
  /** Where X servers put their sockets (Xvfb makes it when missing). */
  const X11_DIR = '/tmp/.X11-unix';

  /** Runs `argv` as the user in the shell's session (its session bus, display, home). */
  const asSession = (argv: string[], timeoutMs = 20_000) =>
    sh('env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...asUser(user), ...argv], { timeoutMs, allowFail: true });
  const shellCall = (method: string, ...args: string[]) =>
    asSession(['gdbus', 'call', '--session', '--dest', 'org.gnome.Shell', '--object-path', method.startsWith('org.gnome.Shell.Screenshot.') ? '/org/gnome/Shell/Screenshot' : '/org/gnome/Shell', '--method', method, ...args]);
  async function evalJson<T>(code: string): Promise<T> {
    const r = await shellCall('org.gnome.Shell.Eval', code);
    if (r.code !== 0) throw new Error(r.stderr.trim());
    return JSON.parse(gvariantString(r.stdout)) as T;
  }
  const indicator = () => evalJson<IndicatorState | null>("imports.ui.main.panel.statusArea['ebpfmon']?.state ?? null");
  const extensionState = async (uuid: string) => {
    const r = await shellCall('org.gnome.Shell.Extensions.GetExtensionInfo', uuid);
    return Number(/'state': <([\d.]+)>/.exec(r.stdout)?.[1] ?? NaN);
  };
  const track = (c: ChildProcess) => {
    children.push(c);
    return c;
  };

  before(async () => {
    requireTool('gnome-shell', 'Xvfb', 'dbus-daemon', 'gdbus', 'setpriv', 'perl');
    ({ lab, mon, peer, link } = await monitorLab());
    user = await lab.user('gs');
    bus = await startPrivateBus({ policies: [POLICY], lab });
    const mmdb = writeMmdb([{ network: `${link.b.ip4}/32`, data: cityRecord(CITY) }], { dir: lab.tmpdir(), name: 'lab-city.mmdb' });
    daemon = await startDaemon(mon, { config: { dbus: { enabled: true, address: bus.address }, geo: { databases: [mmdb] } } });

    // The user's home: the extension as a user installs it, the test helper next to it,
    // and on PATH an `ebpfmonctl` that reaches this daemon and an `xdg-open` that records
    // the URL it was asked to open (the shell has no browser).
    const home = lab.tmpdir();
    const exts = path.join(home, '.local/share/gnome-shell/extensions');
    fs.mkdirSync(exts, { recursive: true });
    fs.cpSync(EXTENSION_DIR, path.join(exts, UUID), { recursive: true });
    fs.cpSync(HELPER_DIR, path.join(exts, HELPER), { recursive: true });
    const bin = path.join(home, 'bin');
    fs.mkdirSync(bin);
    xdgOpenLog = path.join(home, 'xdg-open.log');
    fs.writeFileSync(path.join(bin, 'ebpfmonctl'), `#!/bin/sh\nexec ${process.execPath} ${CTL_MAIN} --socket ${daemon.socketPath} "$@"\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'xdg-open'), `#!/bin/sh\necho "$1" >> ${xdgOpenLog}\n`, { mode: 0o755 });
    const runtime = path.join(home, 'run');
    fs.mkdirSync(runtime, { mode: 0o700 });
    out = lab.outputDir('gnome-shell-test');
    await sh('chown', ['-R', `${user.uid}:${user.gid}`, home, out]);
    fs.chmodSync(home, 0o755);

    // X server: Xvfb picks a free display and writes its number to fd 3.
    const madeX11Dir = !fs.existsSync(X11_DIR);
    const xvfb = track(spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'Xvfb', '-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp', '-ac'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] }));
    const display = await new Promise<string>((resolve, reject) => {
      let buf = '';
      (xvfb.stdio[3] as NodeJS.ReadableStream).setEncoding('utf8');
      (xvfb.stdio[3] as NodeJS.ReadableStream).on('data', (d: string) => {
        buf += d;
        if (buf.includes('\n')) resolve(`:${buf.trim()}`);
      });
      xvfb.once('exit', (code) => reject(new Error(`Xvfb exited (${code})`)));
    });
    env = {
      HOME: home, USER: user.name, PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`, DISPLAY: display, XDG_RUNTIME_DIR: runtime,
      XDG_DATA_HOME: path.join(home, '.local/share'), XDG_CONFIG_HOME: path.join(home, '.config'), XDG_CACHE_HOME: path.join(home, '.cache'),
      // Settings live in the shell's memory (no dconf); EnableExtension below writes them.
      LANG: 'C.UTF-8', GSETTINGS_BACKEND: 'memory', NO_AT_BRIDGE: '1', DBUS_SYSTEM_BUS_ADDRESS: bus.address,
      DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(runtime, 'bus')}`,
    };
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const session = track(spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'env', '-i', ...envArgs, ...asUser(user), 'dbus-daemon', '--session', '--nofork', '--nopidfile', `--address=${env.DBUS_SESSION_BUS_ADDRESS}`, '--print-address'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    await jsonLinesOrText(session);
    const shell = track(spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'env', '-i', ...envArgs, ...asUser(user), 'gnome-shell', '--x11', '--replace', '--sm-disable'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let shellLog = '';
    shell.stderr!.setEncoding('utf8').on('data', (d: string) => (shellLog = (shellLog + d).slice(-20_000)));
    lab.onDestroy(async () => {
      fs.writeFileSync(path.join(out, 'gnome-shell.log'), shellLog);
      for (const c of children.reverse()) await endChild(c);
      // Xvfb removes its socket and lock when it stops, not when killed; the directory it
      // made for the socket it leaves (a fresh machine has none before the test).
      const n = display.slice(1);
      for (const f of [`${X11_DIR}/X${n}`, `/tmp/.X${n}-lock`]) fs.rmSync(f, { force: true });
      if (madeX11Dir) {
        try {
          fs.rmdirSync(X11_DIR);
        } catch {
          /* another X server's socket is in it now: not ours to remove */
        }
      }
    });
    await until('gnome-shell on the session bus', async () => (await shellCall('org.gnome.Shell.Extensions.ListExtensions')).code === 0, 60_000);
    await shellCall('org.gnome.Shell.Extensions.EnableExtension', HELPER);
    await until('unsafe mode', async () => (await extensionState(HELPER)) === STATE_ENABLED && evalJson<boolean>('global.context.unsafe_mode'));
  });

  after(async () => {
    await destroyMonitorLab(daemon, lab);
  });

  /** A client in `mon` (as `as`, or root) connected to a lab server; sends on request. */
  async function holdClient(as?: TestUser) {
    const s = peer.spawn(process.execPath, [PEER, 'tcp-server', link.b.ip4, '0']);
    const serverPort = Number((await jsonLines(s).next((o) => o.event === 'listening')).port);
    const argv = [process.execPath, PEER, 'tcp-hold', link.b.ip4, String(serverPort)];
    const c = as ? mon.spawn('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--init-groups', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] }) : mon.spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = jsonLines(c);
    await lines.next((o) => o.event === 'connected');
    let total = 0;
    return {
      pid: c.pid!,
      async send(n: number) {
        total += n;
        const want = total;
        c.stdin!.write(`send ${n}\n`);
        await lines.next((o) => o.event === 'sent' && o.total === want);
      },
    };
  }

  test('the extension reaches the enabled (active) state and subscribes to the daemon', async () => {
    await shellCall('org.gnome.Shell.Extensions.EnableExtension', UUID);
    await until('the extension enabled', async () => (await extensionState(UUID)) === STATE_ENABLED);
    const s = await until('the indicator connected to the daemon and its first properties read', async () => {
      const st = await indicator();
      return st?.connected && st.seesAll !== undefined ? st : null;
    });
    assert.equal(s.error, null);
    assert.equal(s.seesAll, false, 'an unprivileged user sees only their own processes');
  });

  test("the indicator shows the user's rates and top talker with its city; a notification names the new program; root's traffic is not shown", async () => {
    const mine = await holdClient(user);
    const roots = await holdClient();
    // Traffic while the test watches: every 200 ms, both clients send; the user's 50 kB,
    // root's 500 kB (so root would top any list it leaked into).
    let sentMine = 0;
    let stop = false;
    const pump = (async () => {
      while (!stop) {
        await Promise.all([mine.send(50_000), roots.send(500_000)]);
        sentMine += 50_000;
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    try {
      const s = await until('the user\'s client on top of the menu with a send rate', async () => {
        const st = await indicator();
        return st && st.top[0]?.pid === mine.pid && st.tx > 0 && st.top[0].txBytesPerSec > 0 ? st : null;
      });
      assert.equal(s.top[0]!.comm, 'node');
      assert.equal(s.top[0]!.where, `${CITY.city}, ${CITY.country}`);
      // The rate is of the order of what the client sends (50 kB per round of >= 200 ms,
      // plus TCP/IP headers): at most 50 kB per 200 ms plus headers, and not nothing.
      assert.ok(s.tx <= 300_000 && s.top[0]!.txBytesPerSec <= 300_000, JSON.stringify(s.top[0]));
      const label = await evalJson<string>("imports.ui.main.panel.statusArea['ebpfmon']._label.text");
      assert.match(label, /^↑ .+\/s ↓ .+\/s$/);
      for (const t of s.top) assert.notEqual(t.pid, roots.pid, 'root\'s client is not in the user\'s menu');
      const n = await until('a notification for the client', async () => (await indicator())?.notified.find((x) => x.pid === mine.pid));
      assert.match(n.body, new RegExp(`${link.b.ip4}.*\\(${CITY.city}, ${CITY.country}\\)`));
      assert.ok(!(await indicator())!.notified.some((x) => x.pid === roots.pid));
      // The tray has it too (the shell's own notification list).
      const titles = await evalJson<string[]>('imports.ui.main.messageTray.getSources().flatMap((s) => s.notifications.map((n) => n.title))');
      assert.ok(titles.includes('node uses the network'), JSON.stringify(titles));

      await evalJson("(imports.ui.main.panel.statusArea['ebpfmon'].menu.open(), true)");
      const shot = path.join(out, 'gnome-shell-menu.png');
      const r = await shellCall('org.gnome.Shell.Screenshot.Screenshot', 'false', 'false', shot);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fs.statSync(shot).size > 1000);
      console.log(`# screenshot: ${shot}`);
      assert.ok(sentMine > 0);
    } finally {
      stop = true;
      await pump;
    }
  });

  test('"Open map" starts ebpfmonctl ui --open, whose page answers for the token it was opened with', async () => {
    await evalJson("(imports.ui.main.panel.statusArea['ebpfmon'].openMap(), true)");
    const url = await until('xdg-open called with the page', async () => (fs.existsSync(xdgOpenLog) ? fs.readFileSync(xdgOpenLog, 'utf8').trim().split('\n')[0] : null));
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{43}$/);
    assert.equal((await fetch(url)).status, 200);
    assert.equal((await fetch(url.replace(/token=.*/, 'token=wrong'))).status, 403);
    // Disabling the extension ends the page's server.
    await shellCall('org.gnome.Shell.Extensions.DisableExtension', UUID);
    await until('the page server gone', async () => fetch(url).then(() => false, () => true));
  });

  test('the daemon restarting: the indicator says so, then subscribes again and gets signals', async () => {
    await shellCall('org.gnome.Shell.Extensions.EnableExtension', UUID);
    await until('connected', async () => (await indicator())?.connected);
    daemon.child.kill('SIGTERM');
    await daemon.exited;
    await until('the indicator disconnected', async () => (await indicator())?.connected === false);
    daemon = await restartDaemon(daemon);
    const before = (await until('connected again', async () => {
      const st = await indicator();
      return st?.connected ? st : null;
    })).signals;
    const c = await holdClient(user);
    await c.send(100_000);
    await until('signals after the restart', async () => ((await indicator())?.signals ?? 0) > before);
  });
});

/** Waits for a child's first line on stdout (dbus-daemon's address once it listens). */
async function jsonLinesOrText(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) resolve(buf.trim());
    });
    child.once('exit', (code) => reject(new Error(`exited (${code}) before printing`)));
  });
}
