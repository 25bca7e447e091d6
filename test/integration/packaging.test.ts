// SPDX-License-Identifier: Apache-2.0
// The .deb that `npm run package` builds, checked without installing it on this machine:
// its control fields and file list, lintian, and the unpacked tree run for real. The tree
// is unpacked with dpkg-deb -x into a temporary directory and laid over /usr with a
// read-only overlayfs inside a private mount namespace (unshare -m), so the wrappers find
// /usr/lib/ebpfmon exactly where the package puts it while the host's /usr never changes.
// In that view: the wrappers answer --version and --help, systemd-analyze verifies the
// unit, and the packaged daemon runs in a lab namespace, loads the BPF objects it finds
// next to itself (/usr/lib/ebpfmon/build/bpf), answers the packaged client, and its
// --teardown removes what it attached (truth: tc and the pin directory).
//
// The package is built from the existing build/ (EBPFMON_PACKAGE_BUILD=0: the test suite
// runs from a fresh build already), once per test run (helpers/deb.ts: the nspawn e2e test
// installs the same file under a real systemd; docs/packaging.md, "Testing the package").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { privileged, requireTool } from '../helpers/privileged.js';
import { Lab, type Host } from '../helpers/lab.js';
import { BUILD } from '../helpers/daemon.js';
import { packagedDeb, type BuiltDeb } from '../helpers/deb.js';

const execFileP = promisify(execFile);
const ROOT = path.resolve(BUILD, '../..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  try {
    const r = await execFileP(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** argv that runs `argv` with the unpacked package laid over /usr (private mount namespace). */
function overUsr(tree: string, argv: string[]): [string, string[]] {
  const script = 'mount -t overlay ebpfmon-pkg -o "lowerdir=$0/usr:/usr" /usr && exec "$@"';
  return ['unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, tree, ...argv]];
}

describe('the .deb from `npm run package`', privileged({ timeout: 10 * 60_000 }), () => {
  let out: string;
  let built: BuiltDeb | undefined;
  let deb: string;
  let tree: string;
  let debVersion: string;
  let files: Array<{ mode: string; owner: string; path: string; link?: string }> = [];

  before(async () => {
    requireTool('dpkg-deb', 'dpkg-parsechangelog', 'dpkg-shlibdeps', 'lintian', 'man', 'unshare', 'systemd-analyze', 'tc', 'nsenter');
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-deb-'));
    tree = path.join(out, 'unpacked');
    built = await packagedDeb();
    deb = built.deb;
    debVersion = (await run('dpkg-parsechangelog', ['-l', 'packaging/debian/changelog', '-S', 'Version'])).stdout.trim();
    const list = await run('dpkg-deb', ['--contents', deb]);
    assert.equal(list.code, 0, list.stderr);
    files = list.stdout.trim().split('\n').map((l) => {
      // drwxr-xr-x root/root 0 2026-11-22 06:45 ./usr/  [-> target]
      const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.(\/\S*)(?: -> (\S+))?$/.exec(l);
      assert.ok(m, `dpkg-deb -c line: ${l}`);
      return { mode: m[1]!, owner: m[2]!, path: m[3]!.replace(/\/$/, '') || '/', ...(m[4] ? { link: m[4] } : {}) };
    });
    fs.mkdirSync(tree);
    const x = await run('dpkg-deb', ['-x', deb, tree]);
    assert.equal(x.code, 0, x.stderr);
  });

  after(() => {
    if (out) fs.rmSync(out, { recursive: true, force: true });
    built?.release();
  });

  const has = (p: string) => files.find((f) => f.path === p);
  const under = (dir: string) => files.filter((f) => f.path.startsWith(`${dir}/`));

  it('is named after the changelog version, whose upstream part is package.json\'s', () => {
    assert.equal(debVersion.replace(/-[^-]+$/, ''), PKG.version);
    assert.equal(path.basename(deb), `ebpfmon_${debVersion}_amd64.deb`);
  });

  it('declares its dependencies truthfully', async () => {
    const field = async (f: string) => (await run('dpkg-deb', ['--field', deb, f])).stdout.trim();
    assert.equal(await field('Package'), 'ebpfmon');
    assert.equal(await field('Version'), debVersion);
    assert.equal(await field('Architecture'), 'amd64');
    assert.equal(await field('Maintainer'), (await run('dpkg-parsechangelog', ['-l', 'packaging/debian/changelog', '-S', 'Maintainer'])).stdout.trim());
    const depends = (await field('Depends')).split(/,\s*/);
    for (const d of ['nodejs (>= 20)', 'libbpf1 (>= 1:1.1)', 'libpcap0.8', 'libsystemd0', 'mount']) assert.ok(depends.includes(d), `Depends has ${d}: ${depends.join(', ')}`);
    // koffi's native module: dpkg-shlibdeps' answer for libc and the C++ runtime
    assert.ok(depends.some((d) => /^libc6 \(>= 2\.\d+\)$/.test(d)), 'libc6 from dpkg-shlibdeps');
    assert.ok(depends.some((d) => d.startsWith('libstdc++6')), 'libstdc++6 from dpkg-shlibdeps');
    assert.match(await field('Installed-Size'), /^\d+$/);
    const conffiles = (await run('dpkg-deb', ['--info', deb, 'conffiles'])).stdout.trim().split('\n');
    assert.deepEqual(conffiles, ['/etc/ebpfmon/ebpfmon.json']);
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const r = await run('dpkg-deb', ['--info', deb, script]);
      assert.equal(r.code, 0, `${script} is in the control archive`);
      assert.ok(r.stdout.startsWith('#!/bin/sh'), script);
    }
  });

  it('installs the daemon, client, unit, groups, configuration and documentation where Debian expects them', () => {
    for (const f of files) assert.equal(f.owner, 'root/root', f.path);
    for (const [p, mode] of [
      ['/usr/sbin/ebpfmon', '-rwxr-xr-x'],
      ['/usr/bin/ebpfmonctl', '-rwxr-xr-x'],
      ['/usr/lib/ebpfmon/ebpfmon-mounts', '-rwxr-xr-x'],
      ['/usr/lib/ebpfmon/package.json', '-rw-r--r--'],
      ['/usr/lib/ebpfmon/build/js/daemon/src/main.js', '-rwxr-xr-x'],
      ['/usr/lib/ebpfmon/build/js/daemon/src/ebpfmon.js', '-rwxr-xr-x'],
      ['/usr/lib/ebpfmon/build/js/client/src/main.js', '-rwxr-xr-x'],
      ['/usr/lib/ebpfmon/build/js/client/src/ebpfmonctl.js', '-rwxr-xr-x'],
      ['/usr/lib/systemd/system/ebpfmon.service', '-rw-r--r--'],
      ['/usr/lib/sysusers.d/ebpfmon.conf', '-rw-r--r--'],
      ['/etc/ebpfmon/ebpfmon.json', '-rw-r--r--'],
      ['/usr/share/man/man8/ebpfmon.8.gz', '-rw-r--r--'],
      ['/usr/share/man/man1/ebpfmonctl.1.gz', '-rw-r--r--'],
      ['/usr/share/doc/ebpfmon/copyright', '-rw-r--r--'],
      ['/usr/share/doc/ebpfmon/changelog.Debian.gz', '-rw-r--r--'],
      ['/usr/share/doc/ebpfmon/packaging.md.gz', '-rw-r--r--'],
      ['/usr/lib/x86_64-linux-gnu/wireshark/plugins/ebpfmon.lua', '-rw-r--r--'],
      ['/usr/lib/ebpfmon/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node', '-rw-r--r--'],
    ] as const) {
      assert.equal(has(p)?.mode, mode, `${p} ${mode}`);
    }
    // D-Bus policy and polkit action: shipped when the project has them.
    for (const [src, dst] of [['packaging/dbus/org.ebpfmon1.conf', '/usr/share/dbus-1/system.d/org.ebpfmon1.conf'], ['packaging/polkit/org.ebpfmon1.policy', '/usr/share/polkit-1/actions/org.ebpfmon1.policy']] as const) {
      assert.equal(Boolean(has(dst)), fs.existsSync(path.join(ROOT, src)), `${dst} present iff ${src} exists`);
    }
  });

  it('carries exactly the compiled daemon and client and the BPF objects, and no build or test leftovers', () => {
    const sources = (dir: string): string[] => fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((d) =>
      d.isDirectory() ? sources(path.join(dir, d.name)) : d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [path.join(dir, d.name)] : []);
    // The daemon's bundle and its chunks (daemon/bundle.mjs): as the build made them.
    const daemonBundle = fs.readdirSync(path.join(ROOT, 'build/js/daemon/src')).filter((f) => /^ebpfmon(-.+)?\.js$/.test(f)).map((f) => `/usr/lib/ebpfmon/build/js/daemon/src/${f}`);
    assert.ok(daemonBundle.includes('/usr/lib/ebpfmon/build/js/daemon/src/ebpfmon.js'), 'the build made the daemon\'s bundle');
    const want = [...sources('daemon/src'), ...sources('client/src')].map((s) => `/usr/lib/ebpfmon/build/js/${s.replace(/\.ts$/, '.js')}`)
      .concat('/usr/lib/ebpfmon/build/js/client/src/ebpfmonctl.js', ...daemonBundle).sort(); // the client as one file (client/bundle.mjs)
    const js = under('/usr/lib/ebpfmon/build/js').filter((f) => !f.mode.startsWith('d')).map((f) => f.path).sort();
    assert.deepEqual(js, want, 'one .js per daemon/client source file, the client\'s and the daemon\'s bundles, no source maps or build metadata, no tests or benches');
    const objects = fs.readdirSync(path.join(ROOT, 'build/bpf')).filter((f) => f.endsWith('.bpf.o')).map((f) => `/usr/lib/ebpfmon/build/bpf/${f}`).sort();
    assert.deepEqual(under('/usr/lib/ebpfmon/build/bpf').filter((f) => !f.mode.startsWith('d')).map((f) => f.path).sort(), objects, 'the BPF objects, not fixtures or vmlinux.h');
    assert.deepEqual(under('/usr/lib/ebpfmon/build/native').filter((f) => !f.mode.startsWith('d')).map((f) => f.path), ['/usr/lib/ebpfmon/build/native/libemoncapdrain.so'], 'the capture drain library');
  });

  it('bundles production node_modules only, with koffi\'s linux-x64 binary', () => {
    // top-level packages: node_modules/<name> or node_modules/@scope/<name>
    const top = new Set(under('/usr/lib/ebpfmon/node_modules').map((f) => f.path.split('/').slice(5, 7))
      .filter((p) => !p[0]!.startsWith('@') || p.length === 2).map((p) => (p[0]!.startsWith('@') ? p.join('/') : p[0]!)));
    for (const dep of Object.keys(PKG.dependencies)) assert.ok(top.has(dep), `dependency ${dep}`);
    for (const dev of Object.keys(PKG.devDependencies)) assert.ok(!top.has(dev), `devDependency ${dev} must not ship`);
    // dbus-next's optional usocket builds only from source (node-gyp and its tree): pruned.
    for (const gone of ['usocket', 'node-gyp', 'request', '.bin']) assert.ok(!top.has(gone), `${gone} must not ship`);
    assert.ok(!files.some((f) => /\/node_modules\/[^/]+\/(test|\.github)\//.test(f.path)), 'no module tests');
    const copyright = fs.readFileSync(path.join(tree, 'usr/share/doc/ebpfmon/copyright'), 'utf8');
    for (const dep of top) assert.ok(copyright.includes(`Files: node_modules/${dep}/*`), `copyright covers ${dep}`);
  });

  it('lintian reports no errors', async () => {
    // lintian leaves its cache (a Berkeley DB, mldbm-elf-XXXXXXXX) in TMPDIR: here, in `out`,
    // which after() removes.
    const tmp = fs.mkdtempSync(path.join(out, 'lintian-tmp-'));
    const r = await run('lintian', ['--no-cfg', '--tag-display-limit', '0', deb], { timeoutMs: 5 * 60_000, env: { ...process.env, TMPDIR: tmp } });
    const lines = `${r.stdout}${r.stderr}`.split('\n');
    assert.deepEqual(lines.filter((l) => l.startsWith('E: ')), [], `lintian:\n${lines.join('\n')}`);
    assert.ok(r.code === 0 || lines.some((l) => /^[WIP]: /.test(l)), `lintian itself failed:\n${r.stderr}`);
  });

  it('the wrappers run the unpacked tree: ebpfmon --version, --check-config, ebpfmonctl --help', async () => {
    const version = await run(...overUsr(tree, [path.join(tree, 'usr/sbin/ebpfmon'), '--version']));
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), PKG.version);
    const check = await run(...overUsr(tree, [path.join(tree, 'usr/sbin/ebpfmon'), '--check-config', '--config', path.join(tree, 'etc/ebpfmon/ebpfmon.json')]));
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /configuration ok/);
    const help = await run(...overUsr(tree, [path.join(tree, 'usr/bin/ebpfmonctl'), '--help']));
    assert.equal(help.code, 0, help.stderr);
    for (const c of ['status', 'flows', 'events', 'top', 'programs']) assert.match(help.stdout, new RegExp(`^\\s+${c} `, 'm'));
    // The man pages render without warnings (what lintian runs, here directly).
    for (const page of ['usr/share/man/man8/ebpfmon.8.gz', 'usr/share/man/man1/ebpfmonctl.1.gz']) {
      const m = await run('man', ['--warnings', '-E', 'UTF-8', '-l', '-Tutf8', '-Z', path.join(tree, page)], { env: { ...process.env, LC_ALL: 'C.UTF-8', MANWIDTH: '80' } });
      assert.equal(m.code, 0, m.stderr);
      assert.equal(m.stderr, '', `${page} warnings`);
    }
  });

  it('systemd-analyze verify accepts the unit with the package in place', async () => {
    const r = await run(...overUsr(tree, ['systemd-analyze', 'verify', 'ebpfmon.service']));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings');
  });

  describe('the packaged daemon, in a lab namespace', () => {
    let lab: Lab;
    let mon: Host;
    let ifname: string;
    let dir: string;
    let config: string;
    let pinPath: string;
    let daemon: ChildProcess | undefined;
    let log = '';

    before(async () => {
      lab = await Lab.create();
      mon = await lab.host('mon');
      const peer = await lab.host('peer');
      ifname = (await lab.link(mon, peer)).a.ifname;
      dir = lab.tmpdir();
      pinPath = lab.pinPath();
      config = path.join(dir, 'ebpfmon.json');
      // bpfObjectDir stays "": the daemon must find /usr/lib/ebpfmon/build/bpf next to itself.
      fs.writeFileSync(config, JSON.stringify({ interfaces: [ifname], socketPath: path.join(dir, 'ebpfmon.sock'), pinPath, dbus: { enabled: false }, history: { path: path.join(dir, 'history') } }));
    });

    after(async () => {
      if (daemon?.exitCode === null) daemon.kill('SIGKILL');
      await lab?.destroy();
    });

    const ctl = (args: string[]) => run(...mon.wrap(...overUsr(tree, [path.join(tree, 'usr/bin/ebpfmonctl'), '--socket', path.join(dir, 'ebpfmon.sock'), ...args])));

    it('starts, loads its objects from /usr/lib/ebpfmon, attaches, and answers the packaged client', async () => {
      daemon = mon.spawn(...overUsr(tree, [path.join(tree, 'usr/sbin/ebpfmon'), '--config', config]));
      daemon.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
      daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
      const t0 = Date.now();
      while (!log.includes('"msg":"ebpfmon ready"')) {
        assert.equal(daemon.exitCode, null, `the packaged daemon exited:\n${log.slice(-3000)}`);
        assert.ok(Date.now() - t0 < 60_000, `not ready after 60 s:\n${log.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const status = await ctl(['status', '--json']);
      assert.equal(status.code, 0, status.stderr);
      const s = JSON.parse(status.stdout) as { version: string; pinPath: string; pid: number; interfaces: Array<{ name: string }>; capture?: { available: boolean; drain?: string } };
      assert.equal(s.version, PKG.version);
      // The packaged library loads from /usr/lib/ebpfmon/build/native (not the TypeScript fallback).
      if (s.capture?.available) assert.equal(s.capture.drain, 'native (/usr/lib/ebpfmon/build/native/libemoncapdrain.so)');
      assert.equal(s.pid, daemon.pid);
      assert.equal(s.pinPath, pinPath);
      assert.deepEqual(s.interfaces.map((i) => i.name), [ifname]);
      // The kernel's own view: the classifier is on the interface, the pins exist.
      const tc = await mon.exec('tc', ['filter', 'show', 'dev', ifname, 'ingress']);
      assert.match(tc.stdout, /handle 0xeb9f .*tc_ingress/);
      assert.ok(fs.existsSync(path.join(pinPath, 'links')));
    });

    it('stops leaving everything attached, and its --teardown removes it', async () => {
      daemon!.kill('SIGTERM');
      await new Promise((r) => (daemon!.exitCode !== null ? r(null) : daemon!.once('exit', r)));
      assert.equal(daemon!.exitCode, 0);
      assert.match((await mon.exec('tc', ['filter', 'show', 'dev', ifname, 'ingress'])).stdout, /tc_ingress/, 'still attached after stop');
      const td = await run(...mon.wrap(...overUsr(tree, [path.join(tree, 'usr/sbin/ebpfmon'), '--teardown', '--config', config])));
      assert.equal(td.code, 0, td.stderr);
      assert.match(td.stdout, /removed 2 classifier filter\(s\)/);
      assert.doesNotMatch((await mon.exec('tc', ['filter', 'show', 'dev', ifname, 'ingress'])).stdout, /tc_ingress/);
      assert.equal(fs.existsSync(pinPath), false);
    });
  });
});
