// SPDX-License-Identifier: Apache-2.0
// An exclusive lock on a pin directory itself, so that two daemons never manage the same
// pins, whatever else their configurations say (socket, interfaces). flock(2) on the
// directory (bpffs allows it) is released by the kernel when the process dies, even by
// kill -9. The directory is created if needed; a lock taken on a directory that was removed
// and recreated meanwhile (a teardown) is dropped and taken again on the new one.
import fs from 'node:fs';
import { flock, lastErrno, LOCK_EX, LOCK_NB } from './libc.js';
import { ERRNO, errnoName } from './errno.js';

export class LockError extends Error {
  override readonly name = 'LockError';
  readonly code = 'LOCKED';
}

export interface Lock {
  release(): void;
}

export function lockPinPath(pinPath: string): Lock {
  for (let attempt = 0; attempt < 5; attempt++) {
    fs.mkdirSync(pinPath, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(pinPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      const e = lastErrno();
      fs.closeSync(fd);
      if (e === ERRNO.EWOULDBLOCK) throw new LockError(`another ebpfmon is managing ${pinPath} (it holds the lock on that directory)`);
      throw new LockError(`locking ${pinPath}: ${errnoName(e)}`);
    }
    // The directory we locked must still be the one at that path.
    let same = false;
    try {
      same = fs.statSync(pinPath).ino === fs.fstatSync(fd).ino;
    } catch {
      same = false;
    }
    if (same) return { release: () => fs.closeSync(fd) };
    fs.closeSync(fd);
  }
  throw new LockError(`locking ${pinPath}: the directory keeps being replaced`);
}
