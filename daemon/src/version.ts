// SPDX-License-Identifier: Apache-2.0
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package version, read from package.json next to the build (dev tree or installed package). */
export const VERSION: string = (() => {
  for (const rel of ['../../../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(fs.readFileSync(fileURLToPath(new URL(rel, import.meta.url)), 'utf8')) as { version: string }).version;
    } catch {
      /* try the next layout */
    }
  }
  return '0.0.0';
})();

/**
 * build/ (the directory that holds js/, bpf/ and native/), from this module's URL. Files
 * that the daemon finds next to its build are found from here, not from their own module's
 * URL: this module sits at the same depth as main.js, so the answer is the same in the
 * compiled tree and in the bundle next to main.js (daemon/bundle.mjs), whose chunks all sit
 * in main.js's directory.
 */
export const BUILD_DIR = fileURLToPath(new URL('../../../', import.meta.url));

/** Compiled BPF objects: build/bpf next to build/js. */
export const DEFAULT_OBJECT_DIR = fileURLToPath(new URL('../../../bpf/', import.meta.url));
