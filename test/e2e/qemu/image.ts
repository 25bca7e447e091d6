// SPDX-License-Identifier: Apache-2.0
// The guest's root filesystem: the nspawn harness's debootstrap tree (same builder, same
// cache, same lock; ensureRootfs() keys it by its package list) with what the integration
// suites run inside the guest, turned into an ext4 image with `mkfs.ext4 -d`. qemu attaches
// the image with snapshot=on, so no run ever changes it.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../nspawn/command.js';
import { ensureRootfs, ROOTFS_PACKAGES, rootfsKey } from '../nspawn/rootfs.js';
import { acquireLock, pruneUnused, qemuLog, qrun, readOr, recipeKey, relabel, removeStaleTemps, requireHostTools, secs, touch } from './cache.js';

const RECIPE_VERSION = 1;

/**
 * Inside the guest: the nspawn containers' tree as it is (ROOTFS_PACKAGES lists what the
 * suites and the daemon use in the guest too: tcpdump, ping, util-linux, bash, procps,
 * iproute2, bpftool, netcat, libbpf1, libsystemd0, kmod, ethtool). Sharing the list shares
 * the debootstrap tree and its cache key.
 */
export const GUEST_PACKAGES: readonly string[] = ROOTFS_PACKAGES;

/**
 * What test/e2e/l7.test.ts needs besides (its servers and oracles), for a guest that runs it:
 * `EBPFMON_QEMU_PACKAGES=l7 node build/js/test/e2e/qemu/run.js 'node build/js/test/run.js e2e/l7'`
 * (an image of its own, built once: the default image stays as it is).
 */
export const GUEST_L7_PACKAGES: readonly string[] = [
  'dnsmasq-base', 'nginx-light', 'curl', 'openssl', 'wget', 'tshark', 'ethtool', 'dbus', 'dbus-bin',
];

/** Free space in the image for what tests write outside tmpfs (users, logs). */
const FREE_MB = 1024;

export interface GuestImage {
  key: string;
  file: string;
  treeKey: string;
  packages: readonly string[];
  source: 'cached' | 'built';
  ms: number;
}

export async function ensureImage(opts: { cacheDir: string; log?: Logger; packages?: readonly string[] }): Promise<GuestImage> {
  const start = performance.now();
  const log = opts.log ?? qemuLog;
  const dir = opts.cacheDir;
  const packages = opts.packages ?? GUEST_PACKAGES;
  const treeKey = rootfsKey(packages);
  const key = recipeKey({ v: RECIPE_VERSION, tree: treeKey, freeMb: FREE_MB });
  const file = path.join(dir, `qemu-rootfs-${key}.ext4`);
  const done = (source: GuestImage['source']): GuestImage => {
    touch(file);
    return { key, file, treeKey, packages, source, ms: performance.now() - start };
  };
  if (fs.existsSync(file)) return done('cached');

  fs.mkdirSync(dir, { recursive: true });
  const lock = await acquireLock(path.join(dir, `qemu-rootfs-${key}.lock`), 'rootfs image', 30 * 60_000, log);
  try {
    if (fs.existsSync(file)) return done('cached');
    removeStaleTemps(dir, `qemu-rootfs-${key}`);
    requireHostTools('building the guest image', ['mkfs.ext4', 'du']);
    log(`image: needs the debootstrap tree ${treeKey} (${packages.length} packages; cold: about a minute)`);
    const tree = await ensureRootfs({ cacheDir: dir, packages, log: (l) => log(l) }).catch((e: unknown) => {
      throw relabel(e);
    });
    log(`image: tree ${tree.source} in ${secs(tree.ms)}; making ext4`);
    const t0 = performance.now();
    const used = Number((await qrun('du', ['-sb', tree.baseDir], { step: 'measuring the rootfs tree', timeoutMs: 120_000 })).stdout.split('\t')[0]);
    const sizeMb = Math.ceil((used * 1.2) / (1 << 20)) + FREE_MB;
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      fs.rmSync(tmp, { force: true });
      fs.writeFileSync(tmp, '');
      fs.truncateSync(tmp, sizeMb << 20); // sparse
      // No journal: the disk is a throwaway snapshot, and journal writes cost time under emulation.
      await qrun('mkfs.ext4', ['-q', '-F', '-L', 'ebpfmon-guest', '-O', '^has_journal', '-E', 'root_owner=0:0', '-d', tree.baseDir, tmp], {
        step: 'making the guest image (mkfs.ext4 -d)',
        timeoutMs: 10 * 60_000,
      });
      fs.renameSync(tmp, file);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    const manifest = {
      key, treeKey, recipeVersion: RECIPE_VERSION, built: new Date().toISOString(), sizeMb,
      packages, installed: (JSON.parse(readOr(path.join(dir, `rootfs-${treeKey}.json`)) || '{}') as { installed?: unknown }).installed ?? null,
    };
    fs.writeFileSync(path.join(dir, `qemu-rootfs-${key}.json`), `${JSON.stringify(manifest, null, 2)}\n`);
    // The nspawn containers boot the default tree: it stays unpacked. A tree with extra
    // packages (about 400 MB) only served this image; its tarball stays cached. Renamed
    // first so that a crash mid-removal never leaves a half tree that looks complete.
    if (treeKey !== rootfsKey(ROOTFS_PACKAGES)) {
      const doomed = `${tree.baseDir}.tmp-${process.pid}`;
      fs.renameSync(tree.baseDir, doomed);
      fs.rmSync(doomed, { recursive: true, force: true });
    }
    log(`image: ${path.basename(file)} (${sizeMb} MB sparse, ${(used / 1e6).toFixed(0)} MB of files) made in ${secs(performance.now() - t0)}`);
    pruneUnused(dir, 'rootfs', key, '.ext4', log);
    return done('built');
  } finally {
    lock.release();
  }
}
