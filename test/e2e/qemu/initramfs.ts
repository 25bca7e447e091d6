// SPDX-License-Identifier: Apache-2.0
// The guest's initramfs: Debian's 6.1 has virtio-pci, virtio-blk, ext4 and 9p as modules,
// so something must load them before the root filesystem can be mounted. A static busybox
// and those modules (about 3 MB, no dracut or initramfs-tools) are enough: /init loads the
// modules, mounts the root disk and the job share, and switch_roots into the job's init
// script, which lives on the share (so changing it never rebuilds anything).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../nspawn/command.js';
import { acquireLock, qemuError, qemuLog, qrun, recipeKey, removeStaleTemps, requireHostTools, secs, sha256File, touch, pruneUnused, readOr } from './cache.js';
import type { GuestKernel } from './kernel.js';

const RECIPE_VERSION = 1;
const BUSYBOX = '/bin/busybox';

/**
 * Loaded in this order, each after its dependencies from modules.dep. crc32c_generic is
 * there because ext4 reaches crc32c through the crypto API, a soft dependency that
 * modules.dep does not list (and the initramfs has no modprobe to follow it).
 */
export const BOOT_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4', '9pnet_virtio', '9p'] as const;

/** 9p mount tag and guest path of the job directory (the init script, results). */
export const JOB_TAG = 'emon_job';
export const JOB_MOUNT = '/mnt/ebpfmon-job';
export const NINEP_OPTS = 'trans=virtio,version=9p2000.L,msize=262144';

const INIT = `#!/bin/busybox sh
# initramfs /init of the ebpfmon test guest (test/e2e/qemu/initramfs.ts): load the drivers
# for the root disk and the 9p shares, mount them, and hand over to the job's init script.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "ebpfmon-initramfs: $*"; }
# A boot that cannot finish powers off at once: the host sees no "booted" mark and retries.
fail() { say "FAILED: $*"; poweroff -f; sleep 30; }
say "loading $(wc -l < /modules/order) modules"
while read -r m; do insmod "/modules/$m" || say "insmod $m failed"; done < /modules/order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || fail "no /dev/vda after 30 s"
mount -t ext4 -o rw,noatime /dev/vda /newroot || fail "mounting /dev/vda"
mkdir -p /newroot${JOB_MOUNT}
mount -t 9p -o ${NINEP_OPTS} ${JOB_TAG} /newroot${JOB_MOUNT} || fail "mounting the job share"
[ -x /newroot${JOB_MOUNT}/init ] || fail "no ${JOB_MOUNT}/init"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
say "switching to the root filesystem"
exec switch_root /newroot ${JOB_MOUNT}/init
`;

export interface GuestInitramfs {
  key: string;
  file: string;
  modules: string[];
  source: 'cached' | 'built';
  ms: number;
}

export async function ensureInitramfs(kernel: GuestKernel, opts: { cacheDir: string; log?: Logger }): Promise<GuestInitramfs> {
  const start = performance.now();
  const log = opts.log ?? qemuLog;
  const dir = opts.cacheDir;
  requireHostTools('building the initramfs', ['find']);
  if (!fs.existsSync(BUSYBOX) || !isStaticElf(BUSYBOX)) {
    throw qemuError('building the initramfs', `${BUSYBOX} is missing or not statically linked: install busybox-static (scripts/setup.sh test)`);
  }
  const moduleDir = path.join(kernel.modulesRoot, 'lib/modules', kernel.release);
  const modules = loadOrder(moduleDir, BOOT_MODULES);
  const key = recipeKey({ v: RECIPE_VERSION, kernel: kernel.key, init: INIT, modules, busybox: sha256File(BUSYBOX) });
  const file = path.join(dir, `qemu-initramfs-${key}.cpio`);
  const done = (source: GuestInitramfs['source']): GuestInitramfs => {
    touch(file);
    return { key, file, modules, source, ms: performance.now() - start };
  };
  if (fs.existsSync(file)) return done('cached');
  const lock = await acquireLock(path.join(dir, `qemu-initramfs-${key}.lock`), 'initramfs', 5 * 60_000, log);
  try {
    if (fs.existsSync(file)) return done('cached');
    removeStaleTemps(dir, `qemu-initramfs-${key}`);
    const stage = `${file}.stage.tmp-${process.pid}`;
    const tmp = `${file}.tmp-${process.pid}`;
    fs.rmSync(stage, { recursive: true, force: true });
    try {
      for (const d of ['bin', 'modules', 'dev', 'proc', 'sys', 'newroot']) fs.mkdirSync(path.join(stage, d), { recursive: true });
      fs.copyFileSync(BUSYBOX, path.join(stage, 'bin/busybox'));
      fs.chmodSync(path.join(stage, 'bin/busybox'), 0o755);
      const names = modules.map((rel, i) => `${String(i).padStart(2, '0')}-${path.basename(rel)}`);
      modules.forEach((rel, i) => fs.copyFileSync(path.join(moduleDir, rel), path.join(stage, 'modules', names[i]!)));
      fs.writeFileSync(path.join(stage, 'modules/order'), `${names.join('\n')}\n`);
      fs.writeFileSync(path.join(stage, 'init'), INIT, { mode: 0o755 });
      await qrun('sh', ['-c', 'cd "$1" && find . | /bin/busybox cpio -o -H newc > "$2"', 'sh', stage, tmp], { step: 'building the initramfs (cpio)', timeoutMs: 60_000 });
      fs.renameSync(tmp, file);
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
      fs.rmSync(tmp, { force: true });
    }
    log(`initramfs: ${modules.length} modules, ${(fs.statSync(file).size / 1e6).toFixed(1)} MB, built in ${secs(performance.now() - start)}`);
    pruneUnused(dir, 'initramfs', key, '.cpio', log);
    return done('built');
  } finally {
    lock.release();
  }
}

/** Module files (relative to the module dir) for `wanted`, dependencies first, each once. */
export function loadOrder(moduleDir: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readOr(path.join(moduleDir, 'modules.dep')).split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
    byName.set(modName(m[1]!), m[1]!);
  }
  if (deps.size === 0) throw qemuError('building the initramfs', `no modules.dep in ${moduleDir}`);
  const builtin = new Set(readOr(path.join(moduleDir, 'modules.builtin')).split('\n').filter(Boolean).map(modName));
  const order: string[] = [];
  const visit = (rel: string, chain: string[]) => {
    if (order.includes(rel)) return;
    if (chain.includes(rel)) throw qemuError('building the initramfs', `module dependency cycle: ${[...chain, rel].join(' -> ')}`);
    for (const d of deps.get(rel) ?? []) visit(d, [...chain, rel]);
    order.push(rel);
  };
  for (const name of wanted) {
    const rel = byName.get(name.replace(/-/g, '_'));
    if (rel) visit(rel, []);
    else if (!builtin.has(name.replace(/-/g, '_'))) throw qemuError('building the initramfs', `module ${name} is neither in modules.dep nor built in (${moduleDir})`);
  }
  return order;
}

function modName(rel: string): string {
  return path.basename(rel).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** True for an ELF without a PT_INTERP program header (runs without a dynamic loader). */
function isStaticElf(file: string): boolean {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}
