// SPDX-License-Identifier: Apache-2.0
import { execFileSync } from 'node:child_process';

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function rate(bytesPerSec: number): string {
  return `${bytes(Math.round(bytesPerSec))}/s`;
}

export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

export function endpoint(addr: string, port: number | null): string {
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === null ? a : `${a}:${port}`;
}

const users = new Map<number, string>();
/**
 * uid -> user name through the system's name service (`getent passwd`: /etc/passwd, LDAP,
 * SSSD...), once per uid; the number when it has none. (The client loads no native code,
 * so it cannot call getpwuid_r itself.)
 */
export function userName(uid: number | null): string {
  if (uid === null) return '-';
  let name = users.get(uid);
  if (name === undefined) {
    name = String(uid);
    try {
      const line = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 });
      const n = line.split(':')[0];
      if (n) name = n;
    } catch {
      /* unknown uid, or no getent: the number */
    }
    users.set(uid, name);
  }
  return name;
}
