// SPDX-License-Identifier: Apache-2.0
// The guest kernel: Debian 12's own 6.1 (kprobes, fentry/fexit, BTF), taken from the
// package archive with `apt-get download` and unpacked with `dpkg -x` into the test cache.
// Nothing is installed: the host's /boot, bootloader and module tree are never touched.
//
// The unsigned image package carries the same kernel as the signed one, without the
// Secure Boot signature we have no use for. The package has no modules.dep (the postinst
// makes it), so depmod runs here, on the unpacked tree. qemu boots the uncompressed ELF
// (through its PVH entry point): that saves the guest about 7 s of decompressing under
// software emulation.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../nspawn/command.js';
import { acquireLock, cacheDir, qemuError, qemuLog, qrun, readdirOr, readOr, recipeKey, removeStaleTemps, requireHostTools, secs, touch, pruneUnused } from './cache.js';

const RECIPE_VERSION = 1;

export interface KernelPackage {
  /** e.g. linux-image-6.1.0-56-amd64-unsigned */
  name: string;
  /** Debian version, e.g. 6.1.192-2 */
  version: string;
}

export interface GuestKernel {
  key: string;
  pkg: KernelPackage;
  /** `uname -r` in the guest, e.g. 6.1.0-56-amd64 */
  release: string;
  dir: string;
  /** Uncompressed ELF kernel (booted through PVH). */
  vmlinux: string;
  /** The kernel's module tree root (contains lib/modules/<release>); shared with the guest. */
  modulesRoot: string;
  config: string;
  source: 'cached' | 'built';
  ms: number;
}

export interface KernelOptions {
  cacheDir?: string;
  log?: Logger;
  /** Package to use instead of the one linux-image-amd64 depends on ($EBPFMON_QEMU_KERNEL, `name` or `name=version`). */
  pkg?: string;
}

/**
 * The package to boot: $EBPFMON_QEMU_KERNEL, else the unsigned twin of what Debian 12's
 * `linux-image-amd64` depends on today (its candidate version in this machine's apt lists).
 * Without apt lists for it (not a Debian 12 machine), the newest kernel already cached.
 */
export function resolveKernelPackage(dir: string, override?: string): KernelPackage {
  const want = override ?? process.env.EBPFMON_QEMU_KERNEL;
  const candidate = (name: string): string | undefined => {
    try {
      const out = execFileSync('apt-cache', ['policy', name], { encoding: 'utf8', timeout: 30_000 });
      const v = /Candidate:\s*(\S+)/.exec(out)?.[1];
      return v && v !== '(none)' ? v : undefined;
    } catch {
      return undefined;
    }
  };
  if (want) {
    const [name, version] = want.split('=');
    const v = version ?? candidate(name!);
    if (!v) throw qemuError('choosing the guest kernel', `apt knows no version of ${name} (EBPFMON_QEMU_KERNEL=${want})`);
    return { name: name!, version: v };
  }
  let signed: string | undefined;
  try {
    const deps = execFileSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8', timeout: 30_000 });
    signed = /Depends:\s*(linux-image-6\.1\.\S+-amd64)\s*$/m.exec(deps)?.[1];
  } catch {
    /* no apt, or no such package: fall back to the cache */
  }
  const name = signed ? `${signed}-unsigned` : undefined;
  const version = name ? candidate(name) : undefined;
  if (name && version) return { name, version };
  const cached = readdirOr(dir)
    .filter((e) => /^qemu-kernel-[0-9a-f]{16}\.json$/.test(e))
    .map((e) => JSON.parse(readOr(path.join(dir, e))) as { pkg: KernelPackage; built: string })
    .sort((a, b) => b.built.localeCompare(a.built));
  if (cached[0]) return cached[0].pkg;
  throw qemuError('choosing the guest kernel', 'no Debian 12 linux-image-6.1.0-*-amd64 package in the apt lists and none cached (set EBPFMON_QEMU_KERNEL=<package>[=<version>])');
}

export async function ensureKernel(opts: KernelOptions = {}): Promise<GuestKernel> {
  const start = performance.now();
  const log = opts.log ?? qemuLog;
  const dir = opts.cacheDir ?? cacheDir();
  const pkg = resolveKernelPackage(dir, opts.pkg);
  const key = recipeKey({ v: RECIPE_VERSION, pkg });
  const kdir = path.join(dir, `qemu-kernel-${key}`);
  const manifest = `${kdir}.json`;
  const result = (source: GuestKernel['source']): GuestKernel => {
    touch(manifest);
    const m = JSON.parse(readOr(manifest)) as { release: string };
    return {
      key, pkg, release: m.release, dir: kdir, vmlinux: path.join(kdir, 'vmlinux'), modulesRoot: kdir,
      config: path.join(kdir, `boot/config-${m.release}`), source, ms: performance.now() - start,
    };
  };
  const complete = () => fs.existsSync(manifest) && fs.existsSync(path.join(kdir, 'vmlinux'));
  if (complete()) return result('cached');

  fs.mkdirSync(dir, { recursive: true });
  const lock = await acquireLock(path.join(dir, `qemu-kernel-${key}.lock`), 'kernel', 15 * 60_000, log);
  try {
    if (complete()) return result('cached');
    removeStaleTemps(dir, `qemu-kernel-${key}`);
    await build(dir, key, pkg, kdir, manifest, log);
    pruneUnused(dir, 'kernel', key, '.json', log);
    return result('built');
  } finally {
    lock.release();
  }
}

async function build(dir: string, key: string, pkg: KernelPackage, kdir: string, manifest: string, log: Logger): Promise<void> {
  requireHostTools('unpacking the guest kernel', ['apt-get', 'dpkg', 'depmod', 'xz']);
  const t0 = performance.now();
  const work = `${kdir}.tmp-${process.pid}`;
  const tree = path.join(work, 'tree');
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(tree, { recursive: true });
  try {
    log(`kernel: downloading ${pkg.name}=${pkg.version} (about 70 MB)`);
    // apt's sandbox user cannot write into a root-only cache dir: download as root.
    // (`apt-get download` writes into the current directory; run() has no cwd option.)
    await qrun('sh', ['-c', 'cd "$1" && shift && exec apt-get download -q -o APT::Sandbox::User=root "$@"', 'sh', work, `${pkg.name}=${pkg.version}`], {
      step: `downloading ${pkg.name}`, timeoutMs: 10 * 60_000,
    });
    const deb = readdirOr(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw qemuError(`downloading ${pkg.name}`, `apt-get download left no .deb in ${work}`);
    log(`kernel: downloaded in ${secs(performance.now() - t0)}; unpacking`);
    await qrun('dpkg', ['-x', path.join(work, deb), tree], { step: `unpacking ${deb}`, timeoutMs: 5 * 60_000 });
    fs.rmSync(path.join(work, deb));
    const release = readdirOr(path.join(tree, 'lib/modules'))[0];
    if (!release) throw qemuError(`unpacking ${deb}`, 'no lib/modules/<release> in the package');
    await qrun('depmod', ['-b', tree, release], { step: `depmod for ${release}`, timeoutMs: 5 * 60_000 });
    const vmlinuz = path.join(tree, `boot/vmlinuz-${release}`);
    const vmlinux = path.join(tree, 'vmlinux');
    extractVmlinux(vmlinuz, vmlinux);
    fs.rmSync(vmlinuz);
    fs.rmSync(path.join(tree, 'usr'), { recursive: true, force: true }); // docs and lintian overrides
    fs.renameSync(tree, kdir);
    const info = { key, pkg, release, recipeVersion: RECIPE_VERSION, built: new Date().toISOString(), buildMs: Math.round(performance.now() - t0) };
    fs.writeFileSync(manifest, `${JSON.stringify(info, null, 2)}\n`);
    log(`kernel: ${release} (${pkg.version}) cached in ${secs(performance.now() - t0)} at ${kdir}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * vmlinuz is a bzImage: a real-mode stub, a decompressor, and the kernel ELF compressed
 * (xz in Debian's builds). Finds the compressed payload by its magic and decompresses it
 * (what the kernel's scripts/extract-vmlinux does), trying each match until one yields an ELF.
 */
export function extractVmlinux(vmlinuz: string, out: string): void {
  const image = fs.readFileSync(vmlinuz);
  const formats: Array<{ magic: Buffer; cmd: string[] }> = [
    { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), cmd: ['xz', '-dc', '--single-stream'] },
    { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), cmd: ['zstd', '-dcq'] },
    { magic: Buffer.from([0x1f, 0x8b, 0x08]), cmd: ['gzip', '-dcq'] },
  ];
  for (const f of formats) {
    for (let at = image.indexOf(f.magic); at >= 0; at = image.indexOf(f.magic, at + 1)) {
      let elf: Buffer;
      try {
        elf = execFileSync(f.cmd[0]!, f.cmd.slice(1), { input: image.subarray(at), maxBuffer: 512 << 20, stdio: ['pipe', 'pipe', 'ignore'], timeout: 120_000 });
      } catch (e) {
        // Trailing data after the stream makes some decompressors exit non-zero after a complete output.
        elf = ((e as { stdout?: Buffer }).stdout) ?? Buffer.alloc(0);
      }
      if (elf.length > 1 << 20 && elf.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
        fs.writeFileSync(out, elf);
        return;
      }
    }
  }
  throw qemuError('extracting vmlinux', `no compressed ELF kernel found in ${vmlinuz}`);
}
