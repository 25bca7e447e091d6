// SPDX-License-Identifier: Apache-2.0
// TlsHooks over a fake /proc tree and a recording attacher: one attachment per library
// file (inode), not per process; copies found by scans; not-hooked reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TlsHooks } from '../../../../daemon/src/l7/ssl/hooks.js';
import type { HookResult, SslAttacher } from '../../../../daemon/src/l7/ssl/probes.js';
import type { MappedFile } from '../../../../daemon/src/l7/ssl/libs.js';

function fakeProc() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'emon-hooks-'));
  const lib = path.join(root, 'files');
  fs.mkdirSync(lib);
  const file = (name: string) => {
    const p = path.join(lib, name);
    fs.writeFileSync(p, name);
    return p;
  };
  const proc = (pid: number, mapped: string[], exe: string) => {
    const d = path.join(root, 'proc', String(pid));
    fs.mkdirSync(d, { recursive: true });
    // Each process sees the files at their real paths through its root (here: /).
    fs.symlinkSync('/', path.join(d, 'root'));
    fs.symlinkSync(exe, path.join(d, 'exe'));
    fs.writeFileSync(path.join(d, 'maps'), mapped.map((m, i) => `7f00${i}000-7f00${i}fff r-xp 00000000 08:01 ${1000 + i}  ${m}`).join('\n') + '\n');
  };
  return { root, procRoot: path.join(root, 'proc'), file, proc, done: () => fs.rmSync(root, { recursive: true, force: true }) };
}

class Recorder implements SslAttacher {
  hooked: MappedFile[] = [];
  hook(f: MappedFile): HookResult {
    if (f.path.endsWith('broken/libssl.so.3')) return { ok: false, reason: 'attaching uprobe_ssl_write: ENOENT' };
    if (path.basename(f.path).startsWith('exe')) return { ok: false, reason: 'no SSL_write' };
    this.hooked.push(f);
    return { ok: true, functions: ['SSL_write', 'SSL_read'], adopted: false };
  }
}

test('one attachment per library file however many processes map it; a copy is its own file', () => {
  const p = fakeProc();
  try {
    const sys = p.file('libssl.so.3');
    fs.mkdirSync(path.join(p.root, 'files/app'));
    const copy = path.join(p.root, 'files/app/libssl.so.3');
    fs.writeFileSync(copy, 'copy');
    const exe = p.file('exe-curl');
    p.proc(100, [exe, sys], exe);
    p.proc(101, [exe, sys], exe);
    p.proc(102, [exe, copy], exe);
    const r = new Recorder();
    const h = new TlsHooks({ probes: r, procRoot: p.procRoot, libraryDirs: [path.dirname(sys)] });
    h.start();
    assert.deepEqual(r.hooked.map((f) => f.path).sort(), [copy, sys].sort());
    const st = h.status();
    assert.deepEqual(st.tlsLibraries.find((l) => l.path === sys)?.pids.sort(), [100, 101]);
    assert.deepEqual(st.tlsLibraries.find((l) => l.path === copy)?.pids, [102]);
    assert.ok(h.isCovered(100) && h.isCovered(102));
    h.scanPid(101);
    assert.equal(r.hooked.length, 2, 'no second attachment');
  } finally {
    p.done();
  }
});

test('a TLS flow from a process without OpenSSL: GnuTLS and a failed hook are named, with the reason', () => {
  const p = fakeProc();
  try {
    const exe = p.file('exe-wget');
    const gnutls = p.file('libgnutls.so.30');
    fs.mkdirSync(path.join(p.root, 'files/broken'));
    const broken = path.join(p.root, 'files/broken/libssl.so.3');
    fs.writeFileSync(broken, 'x');
    p.proc(200, [exe, gnutls], exe);
    p.proc(201, [exe, broken], exe);
    p.proc(202, [exe], exe);
    const h = new TlsHooks({ probes: new Recorder(), procRoot: p.procRoot, libraryDirs: [] });
    h.start();
    for (const pid of [200, 201, 202]) h.onTlsFlow(pid, `p${pid}`);
    const st = h.status();
    const by = new Map(st.tlsNotHooked.map((e) => [e.pid, e]));
    assert.equal(by.get(200)?.stack, 'gnutls');
    assert.match(by.get(200)!.reason, /libgnutls\.so\.30/);
    assert.equal(by.get(201)?.stack, 'openssl');
    assert.match(by.get(201)!.reason, /ENOENT/);
    assert.deepEqual(st.tlsLibraryErrors.map((e) => e.path), [broken]);
    assert.equal(by.get(202)?.stack, 'unknown');
    h.onExit(200);
    assert.equal(h.status().tlsNotHooked.some((e) => e.pid === 200), false);
  } finally {
    p.done();
  }
});
