// SPDX-License-Identifier: Apache-2.0
// A second test kernel: Debian 12's 6.1 booted under qemu (software emulation), running one
// command as root in the project directory and handing back its output and exit status.
//
//   const guest = await prepareGuest();                 // cached: kernel, initramfs, image
//   const r = await runInGuest('node build/js/test/run.js integration/flows', { guest, timeoutMs: 10 * 60_000 });
//   r.code; r.stdout; r.stderr; r.files['status.json']; r.console; r.timings
//
// Boot: qemu -kernel <vmlinux> -initrd <initramfs>; the initramfs mounts the ext4 image
// (snapshot=on: writes vanish with the guest) and the job share, then switch_roots into
// the job's init script (PID 1, bash, written below), which mounts proc, sys, tracefs,
// bpffs, cgroup2, the project (read-only, at its host path), the kernel's modules and the
// host's node binary (read-only, at its host path), marks the boot, runs the command with
// its output going to files on the share, writes the exit status, and powers off.
//
// Shares (virtio-9p): the job directory (read-write; /mnt/ebpfmon-job), the project
// (read-only), the guest kernel's lib/modules (read-only). No network device (-nic none):
// the guest makes its own namespaces and veth pairs, and the host's network is untouched.
//
// Bounds: qemu runs under `timeout` (and dies with this process, pdeathsig); the guest must
// mark its boot within bootTimeoutMs or the attempt is killed and retried once (about one
// boot in 30 hangs early under TCG); the command runs under `timeout` inside the guest too,
// so a slow command still leaves its output and a status. Job directories
// ($TMPDIR/ebpfmon-q<pid36>-<n>) are removed afterwards, and those of dead runs on the
// next start; EBPFMON_TEST_KEEP=1 keeps them (console logs, outputs) for a look.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killQuietly, pidAlive, shellQuote, tail, type Logger } from '../nspawn/command.js';
import { cacheDir, qemuError, qemuLog, readdirOr, readOr, requireHostTools, secs } from './cache.js';
import { ensureImage, GUEST_PACKAGES, type GuestImage } from './image.js';
import { ensureInitramfs, JOB_MOUNT, JOB_TAG, NINEP_OPTS, type GuestInitramfs } from './initramfs.js';
import { ensureKernel, type GuestKernel } from './kernel.js';
import { keepTestOutput } from '../../helpers/keep.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const PROJECT_TAG = 'emon_project';
const MODULES_TAG = 'emon_modules';
/** Written by the guest init when the system is up (before the command starts). */
const BOOTED = 'booted';
const QEMU = 'qemu-system-x86_64';

export interface PreparedGuest {
  kernel: GuestKernel;
  initramfs: GuestInitramfs;
  image: GuestImage;
  /** Time prepareGuest() took (near zero with a warm cache). */
  ms: number;
}

/** Kernel, initramfs and root image, from the cache or built into it (cold: about 2 min). */
export async function prepareGuest(opts: { cacheDir?: string; log?: Logger; extraPackages?: readonly string[] } = {}): Promise<PreparedGuest> {
  const start = performance.now();
  const log = opts.log ?? qemuLog;
  const dir = opts.cacheDir ?? cacheDir();
  requireHostTools('preparing the guest', [QEMU, 'timeout', 'setpriv']);
  const kernel = await ensureKernel({ cacheDir: dir, log });
  const initramfs = await ensureInitramfs(kernel, { cacheDir: dir, log });
  const image = await ensureImage({ cacheDir: dir, log, ...(opts.extraPackages?.length ? { packages: [...new Set([...GUEST_PACKAGES, ...opts.extraPackages])] } : {}) });
  const ms = performance.now() - start;
  log(`guest ready in ${secs(ms)}: kernel ${kernel.release} (${kernel.pkg.version}, ${kernel.source}), initramfs ${initramfs.source}, image ${image.source}`);
  return { kernel, initramfs, image, ms };
}

export interface GuestRunOptions {
  /** Prepared guest; prepareGuest() is called when absent. */
  guest?: PreparedGuest;
  /** Bound for the command inside the guest (default 10 min). */
  timeoutMs?: number;
  /** From starting qemu to the guest's boot mark (default 3 min); a miss is retried once. */
  bootTimeoutMs?: number;
  /** Working directory in the guest (default: the project root). */
  cwd?: string;
  /** The built project to share read-only, at the same path in the guest (default: this checkout). */
  projectRoot?: string;
  /** Extra environment for the command. */
  env?: Record<string, string>;
  /** Each complete line the command prints, as it arrives (polled from the share). */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Guest memory (default 2048 MB) and vCPUs (default 2). */
  memoryMb?: number;
  cpus?: number;
  /** Keep the job directory (console logs, outputs) instead of removing it. Default: $EBPFMON_TEST_KEEP. */
  keep?: boolean;
  /** Interactive: the guest's console is this process's terminal and the command runs on it (shell.ts). */
  interactive?: boolean;
  log?: Logger;
}

export interface GuestRunResult {
  /** The command's exit status in the guest (124 when the in-guest timeout ended it). */
  code: number;
  stdout: string;
  stderr: string;
  /** Files the command wrote to $EBPFMON_GUEST_OUT, by name. */
  files: Record<string, string>;
  /** The serial console of the attempt that ran (kernel messages, init progress). */
  console: string;
  /** Attempts made (2 when the first boot hung). */
  attempts: number;
  /** qemu start to boot mark, the command alone, and everything including power-off. */
  timings: { bootMs: number; commandMs: number; totalMs: number; guestUptimeAtBootS: number };
  jobDir: string;
}

let jobCounter = 0;
let swept = false;

/** Boots the guest, runs `command` (a bash script) as root, powers off, and returns what it did. */
export async function runInGuest(command: string, opts: GuestRunOptions = {}): Promise<GuestRunResult> {
  const log = opts.log ?? qemuLog;
  const guest = opts.guest ?? (await prepareGuest({ log }));
  const keep = opts.keep ?? keepTestOutput();
  if (!swept) {
    swept = true;
    sweepStaleJobs(log);
  }
  const jobDir = fs.mkdtempSync(path.join(os.tmpdir(), `ebpfmon-q${process.pid.toString(36)}-${jobCounter++}-`));
  fs.chmodSync(jobDir, 0o755);
  try {
    linkOrCopy(process.execPath, path.join(jobDir, 'node'));
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await runAttempt(command, guest, jobDir, attempt, opts, log);
      if (r.kind === 'done') return { ...r.result, attempts: attempt };
      lastError = r.error;
      if (r.kind === 'failed') throw r.error;
      log(`attempt ${attempt}: ${r.error.message.split('\n')[0]}; ${attempt === 1 ? 'retrying once' : 'giving up'}`);
      if (attempt === 2) throw r.error;
    }
    throw lastError ?? qemuError('running in the guest', 'no attempt made');
  } finally {
    if (keep) log(`kept ${jobDir} (console-<attempt>.log, a<attempt>/stdout, stderr, out/)`);
    else fs.rmSync(jobDir, { recursive: true, force: true });
  }
}

type Attempt =
  | { kind: 'done'; result: Omit<GuestRunResult, 'attempts'> }
  /** The guest never marked its boot: worth one retry. */
  | { kind: 'boot-hang'; error: Error }
  /** It booted, then failed (crash, timeout): a retry would only double the wait. */
  | { kind: 'failed'; error: Error };

async function runAttempt(command: string, guest: PreparedGuest, jobDir: string, attempt: number, opts: GuestRunOptions, log: Logger): Promise<Attempt> {
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const bootTimeoutMs = opts.bootTimeoutMs ?? 3 * 60_000;
  const a = `a${attempt}`;
  const adir = path.join(jobDir, a);
  fs.mkdirSync(path.join(adir, 'out'), { recursive: true });
  const consoleLog = path.join(jobDir, `console-${attempt}.log`);
  fs.writeFileSync(path.join(jobDir, 'init'), guestInit(), { mode: 0o755 });
  fs.writeFileSync(path.join(adir, 'cmd.sh'), `${command}\n`);
  // Software emulation: the tests' timeouts scale (test/helpers/privileged.ts scaled()).
  const env = { HOME: '/root', LANG: 'C.UTF-8', EBPFMON_TEST_TIME_SCALE: '4', ...opts.env, EBPFMON_GUEST_OUT: `${JOB_MOUNT}/${a}/out` };
  fs.writeFileSync(path.join(adir, 'env'), Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote([v])}\n`).join(''));
  fs.writeFileSync(path.join(adir, 'params'), [
    `CWD=${shellQuote([opts.cwd ?? opts.projectRoot ?? PROJECT_ROOT])}`,
    `PROJECT=${shellQuote([opts.projectRoot ?? PROJECT_ROOT])}`,
    `NODE_PATH_IN_GUEST=${shellQuote([process.execPath])}`,
    `MODULES_RELEASE=${shellQuote([guest.kernel.release])}`,
    `CMD_TIMEOUT_S=${Math.ceil(timeoutMs / 1000)}`,
    `INTERACTIVE=${opts.interactive ? 1 : 0}`,
    '',
  ].join('\n'));

  // The whole attempt is bounded: boot, the command, its own timeout's grace, power-off.
  const totalS = Math.ceil((bootTimeoutMs + timeoutMs) / 1000) + 90;
  const argv = qemuArgs(guest, jobDir, a, consoleLog, opts);
  const start = performance.now();
  log(`attempt ${attempt}: booting ${guest.kernel.release} (bounded by ${totalS} s; console: ${opts.interactive ? 'this terminal' : consoleLog})`);
  // setpriv --pdeathsig: qemu (through timeout) dies with this process, whatever kills it.
  // --foreground when interactive: qemu must stay in the terminal's process group to read it.
  const timeoutArgs = ['--kill-after=10', ...(opts.interactive ? ['--foreground'] : []), String(totalS)];
  const child = spawn('setpriv', ['--pdeathsig', 'SIGTERM', 'timeout', ...timeoutArgs, 'setpriv', '--pdeathsig', 'SIGKILL', QEMU, ...argv], {
    stdio: opts.interactive ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: jobDir }, // snapshot=on puts its (unlinked) overlay file there
  });
  let qemuOut = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (qemuOut = (qemuOut + d).slice(-20_000)));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (qemuOut = (qemuOut + d).slice(-20_000)));
  let spawnError: Error | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (e) => {
      spawnError = e;
      resolve({ code: null, signal: null });
    });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const exitedNow = () => spawnError !== undefined || child.exitCode !== null || child.signalCode !== null;
  const consoleTail = (n = 40) => `  console (tail):\n${tail(readOr(consoleLog), n).split('\n').map((l) => `    ${l}`).join('\n')}${qemuOut.trim() ? `\n  qemu output:\n${tail(qemuOut, 10)}` : ''}`;
  const streams = outputFollower(adir, opts.onOutput);

  try {
    // 1. Boot: wait for the mark, qemu's exit, or the boot deadline.
    const booted = path.join(adir, BOOTED);
    while (!fs.existsSync(booted)) {
      if (exitedNow()) {
        const e = await exited;
        if (spawnError) return { kind: 'failed', error: qemuError('starting qemu', spawnError.message) };
        return { kind: 'boot-hang', error: qemuError('booting the guest', `qemu exited (${e.code ?? e.signal}) before the guest booted`, { context: consoleTail() }) };
      }
      if (performance.now() - start > bootTimeoutMs) {
        await stopQemu(child, exited);
        return { kind: 'boot-hang', error: qemuError('booting the guest', `no boot mark after ${secs(bootTimeoutMs)}`, { context: consoleTail() }) };
      }
      await sleep(200);
    }
    const bootMs = performance.now() - start;
    const uptime = Number(readOr(booted).trim().split(/\s+/)[0]) || 0;
    log(`attempt ${attempt}: booted in ${secs(bootMs)} (guest uptime ${uptime.toFixed(1)} s); running the command`);

    // 2. The command: until qemu exits (the guest powers off after writing the status).
    const heartbeat = setInterval(() => opts.interactive || log(`guest still running the command (${secs(performance.now() - start - bootMs)})`), 60_000);
    try {
      while (!exitedNow()) {
        streams.poll();
        await sleep(500);
      }
    } finally {
      clearInterval(heartbeat);
    }
    const e = await exited;
    streams.poll(true);
    const totalMs = performance.now() - start;
    const statusText = readOr(path.join(adir, 'status')).trim();
    const commandMs = Number(readOr(path.join(adir, 'command-ms')).trim()) || totalMs - bootMs;
    if (!/^\d+$/.test(statusText)) {
      const why = e.code === 124 || e.code === 137 ? `qemu ran out of its ${totalS} s bound` : `qemu exited (${e.code ?? e.signal})`;
      return {
        kind: 'failed',
        error: qemuError('running the command in the guest', `${why} without an exit status from the command`, {
          context: `  stderr (tail):\n${tail(streams.stderr(), 20)}\n  stdout (tail):\n${tail(streams.stdout(), 30)}\n${consoleTail()}`,
        }),
      };
    }
    const files: Record<string, string> = {};
    for (const f of readdirOr(path.join(adir, 'out'))) files[f] = readOr(path.join(adir, 'out', f));
    return {
      kind: 'done',
      result: {
        code: Number(statusText), stdout: streams.stdout(), stderr: streams.stderr(), files, console: readOr(consoleLog),
        timings: { bootMs, commandMs, totalMs, guestUptimeAtBootS: uptime }, jobDir,
      },
    };
  } finally {
    await stopQemu(child, exited);
  }
}

function qemuArgs(guest: PreparedGuest, jobDir: string, attempt: string, consoleLog: string, opts: GuestRunOptions): string[] {
  const share = (tag: string, dir: string, readonly: boolean) =>
    ['-virtfs', `local,path=${dir.replace(/,/g, ',,')},mount_tag=${tag},security_model=none,multidevs=remap${readonly ? ',readonly=on' : ''}`];
  const cmdline = [
    'console=ttyS0,115200', 'loglevel=4', 'panic=-1', 'softlockup_panic=1', 'oops=panic',
    // Speed under emulation, nothing BPF depends on: no speculation mitigations (page-table
    // isolation flushes the emulated TLB on every syscall); the TSC as clock (TCG's is
    // synchronous across vCPUs, the HPET fallback costs an MMIO exit per clock read); no
    // zeroing of every allocation and no 2 MB pages to zero on first touch. Measured here:
    // `node -e 0` 0.7 -> 0.5 s, `bash -c true` 107 -> 98 ms (noisy shared host).
    'mitigations=off', 'random.trust_cpu=on', 'tsc=reliable', 'init_on_alloc=0', 'transparent_hugepage=madvise',
    `emon.attempt=${attempt}`,
    ...(process.env.EBPFMON_QEMU_APPEND ?? '').split(/\s+/).filter(Boolean),
  ];
  return [
    '-accel', 'tcg,thread=multi', '-cpu', process.env.EBPFMON_QEMU_CPU ?? 'max', '-smp', String(opts.cpus ?? 2), '-m', String(opts.memoryMb ?? 2048),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-nic', 'none',
    // Interactive: the console on this terminal, Ctrl-C to the guest, Ctrl-A x quits qemu.
    ...(opts.interactive
      ? ['-chardev', 'stdio,id=con0,mux=on,signal=off', '-serial', 'chardev:con0', '-mon', 'chardev=con0']
      : ['-chardev', `file,id=con0,path=${consoleLog}`, '-serial', 'chardev:con0']),
    '-kernel', guest.kernel.vmlinux, '-initrd', guest.initramfs.file, '-append', cmdline.join(' '),
    '-drive', `file=${guest.image.file},format=raw,if=virtio,snapshot=on,cache=unsafe`,
    ...share(JOB_TAG, jobDir, false),
    ...share(PROJECT_TAG, opts.projectRoot ?? PROJECT_ROOT, true),
    ...share(MODULES_TAG, path.join(guest.kernel.modulesRoot, 'lib/modules'), true),
  ];
}

/**
 * PID 1 in the guest (bash from the image), started by the initramfs with the job share
 * mounted. Prints progress on the console; the command's output goes to files on the share.
 */
function guestInit(): string {
  return `#!/bin/bash
# PID 1 of the ebpfmon test guest, written by test/e2e/qemu/guest.ts.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
J=${JOB_MOUNT}
A=$J/$(sed -n 's/.*emon\\.attempt=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
say() { echo "ebpfmon-guest: $*"; }
off() { sync; echo o > /proc/sysrq-trigger; sleep 30; }
fail() { say "FAILED: $*"; off; }
. "$A/params" || fail "no params"
m() { mount "$@" || fail "mount $*"; }
mkdir -p /dev/pts && m -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mkdir -p /dev/shm && m -t tmpfs -o mode=1777 tmpfs /dev/shm
m -t tmpfs -o mode=755 tmpfs /run
m -t tmpfs -o mode=1777 tmpfs /tmp
m -t tracefs tracefs /sys/kernel/tracing
m -t debugfs debugfs /sys/kernel/debug
m -t bpf bpf /sys/fs/bpf
m -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /lib/modules && m -t 9p -o ${NINEP_OPTS},ro ${MODULES_TAG} /lib/modules
# The project at its host path; read-only and unchanging for the run, so cached freely.
mkdir -p "$PROJECT" && m -t 9p -o ${NINEP_OPTS},ro,cache=loose ${PROJECT_TAG} "$PROJECT"
# Node from the guest's memory, not from the share: the job share is uncached (sync), and
# the 99 MB binary's pages came in over 9p (in a fresh guest a bare \`node -e ''\` took
# 10.5 s, 0.9 s from this copy, which takes 2 s; the suites 599 s before, 578 s after).
cp "$J/node" /run/ebpfmon-node || fail "copy node"
mkdir -p "$(dirname "$NODE_PATH_IN_GUEST")" && touch "$NODE_PATH_IN_GUEST" && m --bind -o ro /run/ebpfmon-node "$NODE_PATH_IN_GUEST"
hostname ebpfmon-guest
echo "127.0.0.1 localhost ebpfmon-guest" > /etc/hosts
echo "::1 localhost ip6-localhost" >> /etc/hosts
ip link set lo up
[ "$(uname -r)" = "$MODULES_RELEASE" ] || say "warning: kernel $(uname -r), modules $MODULES_RELEASE"
cat /proc/uptime > "$A/${BOOTED}.tmp" && mv "$A/${BOOTED}.tmp" "$A/${BOOTED}"
say "booted in $(cut -d' ' -f1 /proc/uptime) s; running the command"
cd "$CWD" || fail "cd $CWD"
set -a; . "$A/env"; set +a
t0=$(date +%s%N)
if [ "$INTERACTIVE" = 1 ]; then
  setsid -c bash "$A/cmd.sh" < /dev/ttyS0 > /dev/ttyS0 2>&1
  rc=$?
else
  timeout --kill-after=10 "$CMD_TIMEOUT_S" bash "$A/cmd.sh" < /dev/null > "$A/stdout" 2> "$A/stderr"
  rc=$?
fi
echo $(( ($(date +%s%N) - t0) / 1000000 )) > "$A/command-ms"
echo "$rc" > "$A/status.tmp" && mv "$A/status.tmp" "$A/status"
say "command exited with $rc; powering off"
off
`;
}

/** Follows the command's stdout and stderr files on the share, line by line. */
function outputFollower(adir: string, onOutput?: GuestRunOptions['onOutput']): { poll(final?: boolean): void; stdout(): string; stderr(): string } {
  const state = { stdout: { off: 0, partial: '', all: [] as Buffer[] }, stderr: { off: 0, partial: '', all: [] as Buffer[] } };
  const read = (name: 'stdout' | 'stderr', final: boolean) => {
    const s = state[name];
    let fd: number;
    try {
      fd = fs.openSync(path.join(adir, name), 'r');
    } catch {
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size > s.off) {
        const buf = Buffer.alloc(size - s.off);
        const n = fs.readSync(fd, buf, 0, buf.length, s.off);
        s.off += n;
        s.all.push(buf.subarray(0, n));
        if (onOutput) {
          const lines = (s.partial + buf.subarray(0, n).toString()).split('\n');
          s.partial = lines.pop() ?? '';
          for (const l of lines) onOutput(l, name);
        }
      }
      if (final && s.partial && onOutput) {
        onOutput(s.partial, name);
        s.partial = '';
      }
    } finally {
      fs.closeSync(fd);
    }
  };
  return {
    poll(final = false) {
      read('stdout', final);
      read('stderr', final);
    },
    stdout: () => Buffer.concat(state.stdout.all).toString(),
    stderr: () => Buffer.concat(state.stderr.all).toString(),
  };
}

/** SIGTERM to the timeout wrapper (it passes it to qemu), SIGKILL after 10 s. */
async function stopQemu(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  killQuietly(child.pid, 'SIGTERM');
  const t = setTimeout(() => child.pid !== undefined && killQuietly(child.pid, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch {
    fs.copyFileSync(from, to); // another filesystem
    fs.chmodSync(to, 0o755);
  }
}

/** Job directories of runs whose process is gone (names carry the creating pid). */
function sweepStaleJobs(log: Logger): void {
  for (const e of readdirOr(os.tmpdir())) {
    const m = /^ebpfmon-q([0-9a-z]+)-\d+-/.exec(e);
    if (!m || pidAlive(parseInt(m[1]!, 36))) continue;
    log(`removing ${path.join(os.tmpdir(), e)} (left by dead pid ${parseInt(m[1]!, 36)})`);
    fs.rmSync(path.join(os.tmpdir(), e), { recursive: true, force: true });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
