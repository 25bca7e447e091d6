// SPDX-License-Identifier: Apache-2.0
import { execFileSync } from 'node:child_process';

export { bytes, rate } from './units.js';

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
