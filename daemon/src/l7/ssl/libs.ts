// SPDX-License-Identifier: Apache-2.0
// Which TLS library a process uses, from what it maps (/proc/<pid>/maps) and, for its
// executable, the ELF section names. Only OpenSSL's libssl (and executables that carry
// OpenSSL's SSL_write symbol: statically linked with symbols) can be hooked; the rest are
// named so that `status` can say why a process's HTTPS is not decrypted.
// The ELF reading (section names: a Go binary has `.go.buildinfo`) is sys/elf.ts.
import fs from 'node:fs';
import path from 'node:path';

export { elfSectionNames } from '../../sys/elf.js';

/** A mapped file, as the process sees it and as this daemon can open it. */
export interface MappedFile {
  /** Path in the process's mount namespace (what /proc/<pid>/maps says). */
  path: string;
  /** The same file through /proc/<pid>/root (works across mount namespaces). */
  hostPath: string;
  /** st_dev:st_ino of the file: uprobes belong to the inode, so one attachment per identity. */
  identity: string;
}

export type TlsLibraryKind = 'openssl' | 'gnutls' | 'nss' | 'wolfssl' | 'mbedtls';

/** libssl.so.3, libssl.so.1.1 (OpenSSL); not NSS's libssl3.so. */
const OPENSSL_RE = /\/libssl\.so(\.[0-9.]+)?$/;
const OTHER_LIBS: Array<[RegExp, TlsLibraryKind]> = [
  [/\/libgnutls\.so(\.[0-9.]+)?$/, 'gnutls'],
  [/\/libssl3\.so$|\/libnss3\.so$/, 'nss'],
  [/\/libwolfssl\.so(\.[0-9.]+)?$/, 'wolfssl'],
  [/\/libmbedtls\.so(\.[0-9.]+)?$/, 'mbedtls'],
];

export function tlsLibraryKind(file: string): TlsLibraryKind | null {
  if (OPENSSL_RE.test(file)) return 'openssl';
  for (const [re, kind] of OTHER_LIBS) if (re.test(file)) return kind;
  return null;
}

/** The files a process maps (executable mappings only), deduplicated; [] when it is gone. */
export function mappedFiles(pid: number, procRoot = '/proc'): string[] {
  let text: string;
  try {
    text = fs.readFileSync(`${procRoot}/${pid}/maps`, 'latin1');
  } catch {
    return [];
  }
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    // address perms offset dev inode path
    const m = /^\S+ (\S{4}) \S+ \S+ (\d+)\s+(\/.*)$/.exec(line);
    if (!m || m[1]![2] !== 'x' || m[2] === '0') continue;
    out.add(m[3]!.replace(/ \(deleted\)$/, ''));
  }
  return [...out];
}

/** A file of process `pid` opened through its root; null when it cannot be stat'ed. */
export function resolveMapped(pid: number, file: string, procRoot = '/proc'): MappedFile | null {
  const hostPath = path.join(`${procRoot}/${pid}/root`, file);
  try {
    const st = fs.statSync(hostPath);
    return { path: file, hostPath, identity: `${st.dev}:${st.ino}` };
  } catch {
    return null;
  }
}

/** The executable of a process (through /proc/<pid>/exe); null when it is gone. */
export function executableOf(pid: number, procRoot = '/proc'): MappedFile | null {
  try {
    const target = fs.readlinkSync(`${procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, '');
    const st = fs.statSync(`${procRoot}/${pid}/exe`);
    return { path: target, hostPath: `${procRoot}/${pid}/exe`, identity: `${st.dev}:${st.ino}` };
  } catch {
    return null;
  }
}

export function isGoBinary(sections: readonly string[]): boolean {
  return sections.includes('.go.buildinfo') || sections.includes('.note.go.buildid') || sections.includes('.gopclntab');
}

/** Directories where the dynamic linker finds libraries by default on Debian and most
 * distributions, plus those /etc/ld.so.conf(.d) names. */
export function libraryDirs(etc = '/etc'): string[] {
  const dirs = new Set(['/lib', '/usr/lib', '/lib64', '/usr/lib64', '/usr/local/lib', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu']);
  const conf = (f: string, depth: number): void => {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      return;
    }
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      if (line.startsWith('include ') && depth < 2) {
        const pattern = line.slice(8).trim();
        const dir = path.dirname(pattern);
        const re = new RegExp(`^${path.basename(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
        let entries: string[] = [];
        try {
          entries = fs.readdirSync(dir);
        } catch {
          /* none */
        }
        for (const e of entries.sort()) if (re.test(e)) conf(path.join(dir, e), depth + 1);
      } else if (line.startsWith('/')) {
        dirs.add(line);
      }
    }
  };
  conf(path.join(etc, 'ld.so.conf'), 0);
  return [...dirs];
}

/** OpenSSL libssl files in the library directories (the system's own copies). */
export function systemOpenSsl(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    let entries: string[];
    try {
      entries = fs.readdirSync(d);
    } catch {
      continue;
    }
    for (const e of entries) if (/^libssl\.so\.[0-9.]+$/.test(e)) out.push(path.join(d, e));
  }
  return out;
}
