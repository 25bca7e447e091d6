// SPDX-License-Identifier: Apache-2.0
// bench/lb/verifier: what the verifier makes of the BPF objects: program size (ELF and
// JITed), instructions processed, states, verification time, on this kernel and, with
// --kernel-6.1, on Debian 12's 6.1 kernel under qemu (test/e2e/qemu: one boot). With
// --compare-dir DIR, DIR's build of each object is measured next to this build's, in the
// same run (e.g. the objects of the commit before a change: `make -C bpf OUT=DIR`).
//
//   sudo node build/js/bench/lb/verifier.js [--objects lb,flows] [--compare-dir DIR]
//        [--kernel-6.1] [--runs 3]
//
// Loading is all it does (bench/lb/verifier-stats.c: nothing pinned or attached). Only
// the verification time varies between runs: it is the median of --runs loads.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import Table from 'cli-table3';
import { compileC, median, numArg, ROOT, tempDir } from '../lib/harness.js';
import { strArg } from '../lib/proc.js';

interface Stats {
  prog?: string;
  loaded?: boolean;
  elfInsns?: number;
  processed?: number;
  states?: number;
  peakStates?: number;
  verifyUs?: number;
  jitedBytes?: number;
  error?: string;
}

const RUNS = Math.min(numArg('runs', 3), 20);
const OBJECTS = (strArg('objects') ?? 'lb').split(',').map((o) => `${o.replace(/\.bpf\.o$/, '')}.bpf.o`);
const COMPARE = strArg('compare-dir');
const GUEST = process.argv.includes('--kernel-6.1');

const builds: Array<{ label: string; dir: string }> = [{ label: 'this build', dir: path.join(ROOT, 'build/bpf') }];
if (COMPARE) builds.push({ label: '--compare-dir', dir: path.resolve(COMPARE) });
for (const b of builds) for (const o of OBJECTS) if (!fs.existsSync(path.join(b.dir, o))) throw new Error(`${path.join(b.dir, o)} does not exist`);

function parse(out: string): Stats[] {
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Stats);
}

/** Per program: the first run's figures with the median verification time of all runs. */
function combine(runs: Stats[][]): Stats[] {
  const first = runs[0] ?? [];
  return first.map((s, i) => (s.prog ? { ...s, verifyUs: median(runs.map((r) => r[i]?.verifyUs ?? 0)) } : s));
}

type Row = { build: string; object: string; kernel: string; stats: Stats[] };

function hostRows(bin: string): Row[] {
  const rows: Row[] = [];
  for (const o of OBJECTS) {
    for (const b of builds) {
      const runs: Stats[][] = [];
      for (let r = 0; r < RUNS; r++) {
        let out: string;
        try {
          out = execFileSync(bin, [path.join(b.dir, o)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
        } catch (err) {
          out = String((err as { stdout?: string }).stdout ?? '');
        }
        runs.push(parse(out));
      }
      rows.push({ build: b.label, object: o, kernel: os.release(), stats: combine(runs) });
    }
  }
  return rows;
}

async function guestRows(bin: string): Promise<Row[]> {
  const { prepareGuest, runInGuest } = await import('../../test/e2e/qemu/guest.js');
  const guest = await prepareGuest();
  // The guest sees one shared directory: the helper, the objects and the kernel's config
  // (libbpf resolves the LB's `CONFIG_HZ __kconfig` from /boot/config-<release>, which a
  // Debian install has and the test image lacks).
  const share = tempDir('verifier');
  fs.chmodSync(share, 0o755);
  fs.copyFileSync(bin, path.join(share, 'verifier-stats'));
  fs.chmodSync(path.join(share, 'verifier-stats'), 0o755);
  fs.copyFileSync(guest.kernel.config, path.join(share, 'kconfig'));
  const lines: string[] = ['set -u', 'out="$EBPFMON_GUEST_OUT"', 'uname -r > "$out/uname"', 'mkdir -p /boot && cp kconfig "/boot/config-$(uname -r)"'];
  builds.forEach((b, bi) => {
    fs.mkdirSync(path.join(share, `b${bi}`));
    for (const [oi, o] of OBJECTS.entries()) {
      fs.copyFileSync(path.join(b.dir, o), path.join(share, `b${bi}`, o));
      for (let r = 0; r < RUNS; r++) lines.push(`./verifier-stats b${bi}/${o} > "$out/b${bi}-o${oi}-r${r}.json" 2> "$out/b${bi}-o${oi}-r${r}.err"`);
    }
  });
  lines.push('exit 0');
  const res = await runInGuest(lines.join('\n'), { guest, projectRoot: share, cwd: share, timeoutMs: 10 * 60_000 });
  const kernel = (res.files.uname ?? '?').trim();
  const rows: Row[] = [];
  for (const [oi, o] of OBJECTS.entries()) {
    builds.forEach((b, bi) => {
      const runs = Array.from({ length: RUNS }, (_, r) => {
        const s = parse(res.files[`b${bi}-o${oi}-r${r}.json`] ?? '');
        const err = (res.files[`b${bi}-o${oi}-r${r}.err`] ?? '').trim();
        return s.length ? s : [{ error: err || 'no output' }];
      });
      rows.push({ build: b.label, object: o, kernel, stats: combine(runs) });
    });
  }
  return rows;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/lb/verifier needs root (loading BPF programs)');
  const bin = compileC(path.join(ROOT, 'bench/lb/verifier-stats.c'), tempDir('vstats'));
  const rows = hostRows(bin);
  if (GUEST) rows.push(...(await guestRows(bin)));

  const t = new Table({
    head: ['object', 'build', 'kernel', 'program', 'loads', 'ELF insns', 'insns processed', 'states (peak)', 'verify ms (med)', 'JITed bytes'],
    style: { head: [], border: [] },
  });
  const errors: string[] = [];
  for (const r of rows) {
    for (const s of r.stats) {
      if (!s.prog) {
        errors.push(`${r.object} (${r.build}) on ${r.kernel}: ${s.error}`);
        continue;
      }
      t.push([r.object, r.build, r.kernel, s.prog, s.loaded ? 'yes' : 'NO', s.elfInsns, s.loaded ? s.processed : '-', s.loaded ? `${s.states} (${s.peakStates})` : '-', s.loaded ? ((s.verifyUs ?? 0) / 1000).toFixed(0) : '-', s.loaded ? s.jitedBytes : '-']);
    }
  }
  console.log(`\nbench/lb/verifier: ${RUNS} load(s) per object and kernel; ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(t.toString());
  for (const e of errors) console.log(`\n${e}`);
}

await main();
