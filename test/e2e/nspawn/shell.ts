// SPDX-License-Identifier: Apache-2.0
// An interactive root shell in a fresh test container, for poking at what an e2e test
// sees (the project is bound read-only at its own path, /usr/bin/node is the host's):
//
//   sudo node build/js/test/e2e/nspawn/shell.js [host path to bind read-only ...]
//
// The container is destroyed when the shell exits.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Container } from './container.js';

const project = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const c = await Container.create({ binds: [project, ...process.argv.slice(2).map((p) => path.resolve(p))], keep: false });
try {
  console.error(`container ${c.name}: systemd is host pid ${c.leader}; bpffs at ${c.bpffs}; exit the shell to destroy it`);
  spawnSync('nsenter', [`--target=${c.leader}`, '--all', 'env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm', 'HOME=/root', 'bash', '-l'], { stdio: 'inherit' });
} finally {
  await c.destroy();
}
