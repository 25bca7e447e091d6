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

/** Compiled BPF objects: build/bpf next to build/js. */
export const DEFAULT_OBJECT_DIR = fileURLToPath(new URL('../../../bpf/', import.meta.url));
