// SPDX-License-Identifier: Apache-2.0
// `--help` (or `-h`) on any bench prints its usage, which is the header comment of its
// source file, and exits before anything is built. Imported for that effect by every module of
// bench/lib a bench imports (harness, proc, lab), so each bench has it without a line of its own.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The leading `//` comment of a bench's source (SPDX line left out). */
export function benchUsage(script: string): string {
  // build/js/bench/<name>/<script>.js -> bench/<name>/<script>.ts
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
  const rel = path.relative(path.join(root, 'build/js'), path.resolve(script)).replace(/\.js$/, '.ts');
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, rel), 'utf8');
  } catch {
    return `${rel}: no usage found (run it from the built tree: build/js/bench/<name>/main.js)`;
  }
  const lines: string[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('//')) break;
    if (!l.includes('SPDX-License-Identifier')) lines.push(l.replace(/^\/\/ ?/, ''));
  }
  return lines.join('\n');
}

const argv = process.argv.slice(2);
if (process.argv[1] && /\/bench\/[^/]+\/[^/]+\.js$/.test(process.argv[1]) && (argv.includes('--help') || argv.includes('-h'))) {
  process.stdout.write(`${benchUsage(process.argv[1])}\n`);
  process.exit(0);
}
