// SPDX-License-Identifier: Apache-2.0
// The .deb that `npm run package` makes, built once per test run: the packaging test
// (integration/packaging: contents, lintian, the unpacked tree) and the systemd test
// (e2e/systemd-deb: installed under a real systemd) check the same file. It is packaged
// from the existing build/ (EBPFMON_PACKAGE_BUILD=0: `npm test` builds first) without
// lintian (integration/packaging runs lintian on it as a test of its own) and with xz at
// level 1 (EBPFMON_PACKAGE_XZ_LEVEL: the same files, made in seconds instead of half a minute).
//
// test/run.ts gives every test file one directory for the run (EBPFMON_TEST_RUN_DIR) and
// removes it at the end; the first file that needs the package builds it there, the next
// finds it. A file run on its own (no run directory) builds into a directory it removes
// through the returned `release`.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BUILD } from './daemon.js';

const execFileP = promisify(execFile);
const ROOT = path.resolve(BUILD, '../..');

export interface BuiltDeb {
  /** Absolute path of the .deb. */
  deb: string;
  /** Seconds spent building it here (0: the run's copy was there already). */
  builtInS: number;
  /** Removes what this call created that the run does not keep (nothing under a run directory). */
  release(): void;
}

export async function packagedDeb(timeoutMs = 5 * 60_000): Promise<BuiltDeb> {
  const runDir = process.env.EBPFMON_TEST_RUN_DIR;
  const home = runDir && fs.existsSync(runDir) ? path.join(runDir, 'deb') : null;
  const found = home && fs.existsSync(home) ? fs.readdirSync(home).find((f) => f.endsWith('.deb')) : undefined;
  if (home && found) return { deb: path.join(home, found), builtInS: 0, release: () => undefined };
  const out = fs.mkdtempSync(path.join(runDir && fs.existsSync(runDir) ? runDir : os.tmpdir(), 'ebpfmon-deb-'));
  const t0 = performance.now();
  try {
    const env = { ...process.env, EBPFMON_PACKAGE_BUILD: '0', EBPFMON_PACKAGE_LINTIAN: '0', EBPFMON_PACKAGE_XZ_LEVEL: '1', EBPFMON_PACKAGE_OUT: out };
    let stdout: string;
    try {
      ({ stdout } = await execFileP('npm', ['run', '--silent', 'package'], { env, cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 << 20 }));
    } catch (err) {
      const e = err as { stderr?: string };
      throw new Error(`npm run package failed:\n${(e.stderr ?? String(err)).slice(-4000)}`);
    }
    const built = stdout.trim().split('\n').at(-1)!;
    if (!built.endsWith('.deb') || !fs.existsSync(built)) throw new Error(`npm run package printed no .deb path: ${stdout.slice(-400)}`);
    const builtInS = (performance.now() - t0) / 1000;
    if (!home) return { deb: built, builtInS, release: () => fs.rmSync(out, { recursive: true, force: true }) };
    // Keep only the .deb for the run (the staging tree is hundreds of MB); a rename, so a
    // file that looks for it sees all of it or nothing.
    const keep = fs.mkdtempSync(path.join(runDir!, 'deb-'));
    fs.renameSync(built, path.join(keep, path.basename(built)));
    fs.rmSync(out, { recursive: true, force: true });
    fs.renameSync(keep, home);
    return { deb: path.join(home, path.basename(built)), builtInS, release: () => undefined };
  } catch (err) {
    fs.rmSync(out, { recursive: true, force: true });
    throw err;
  }
}
