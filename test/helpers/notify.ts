// SPDX-License-Identifier: Apache-2.0
// A NOTIFY_SOCKET for tests: a Unix datagram socket (Node's dgram cannot bind one) that
// collects what a service sends with sd_notify(3), as systemd would receive it.
import fs from 'node:fs';
import koffi from 'koffi';
import * as C from '../../daemon/src/sys/libc.js';

export class NotifySocket {
  readonly messages: string[] = [];
  private readonly fd: number;
  private readonly poll: ReturnType<typeof koffi.node.poll>;

  constructor(readonly path: string) {
    this.fd = C.socket(C.AF_UNIX, C.SOCK_DGRAM | C.SOCK_CLOEXEC | C.SOCK_NONBLOCK, 0);
    if (this.fd < 0) throw new Error(`socket: errno ${C.lastErrno()}`);
    const addr = Buffer.alloc(110);
    addr.writeUInt16LE(C.AF_UNIX, 0);
    addr.write(path, 2, 'utf8');
    if (C.bind(this.fd, addr, 2 + Buffer.byteLength(path) + 1) !== 0) throw new Error(`bind ${path}: errno ${C.lastErrno()}`);
    fs.chmodSync(path, 0o666);
    const buf = Buffer.alloc(4096);
    this.poll = koffi.node.poll(this.fd, { readable: true }, () => {
      for (;;) {
        const n = C.recv(this.fd, buf, buf.length, C.MSG_DONTWAIT);
        if (n <= 0) break;
        this.messages.push(buf.toString('utf8', 0, n));
      }
    });
  }

  /** Every KEY=VALUE line received, in order. */
  lines(): string[] {
    return this.messages.flatMap((m) => m.split('\n').filter(Boolean));
  }

  async waitFor(pred: (line: string) => boolean, timeoutMs = 15_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const hit = this.lines().find(pred);
      if (hit) return hit;
      if (Date.now() - t0 > timeoutMs) throw new Error(`no matching sd_notify message; got ${JSON.stringify(this.lines())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.poll.close();
    C.close(this.fd);
    fs.rmSync(this.path, { force: true });
  }
}
