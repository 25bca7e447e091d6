// SPDX-License-Identifier: Apache-2.0
// An exclusive lock per pin directory, so two daemons never manage the same pins.
// flock(2) is released by the kernel when the process dies, even by kill -9.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { flock, lastErrno, LOCK_EX, LOCK_NB } from './libc.js';
import { ERRNO } from './errno.js';

export class LockError extends Error {
  override readonly name = 'LockError';
  readonly code = 'LOCKED';
}

export interface Lock {
  release(): void;
}

export function lockPinPath(pinPath: string, lockDir: string): Lock {
  fs.mkdirSync(lockDir, { recursive: true });
  const file = path.join(lockDir, `pins-${crypto.createHash('sha256').update(path.resolve(pinPath)).digest('hex').slice(0, 16)}.lock`);
  const fd = fs.openSync(file, 'w', 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const e = lastErrno();
    fs.closeSync(fd);
    if (e === ERRNO.EWOULDBLOCK) throw new LockError(`another ebpfmon is managing ${pinPath} (lock ${file})`);
    throw new LockError(`locking ${file}: errno ${e}`);
  }
  fs.writeFileSync(file, `${process.pid}\n`);
  return {
    release() {
      fs.closeSync(fd);
    },
  };
}
