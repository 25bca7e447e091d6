// SPDX-License-Identifier: Apache-2.0
// What the balancer host must allow for a VIP to work, checked from the kernel's own
// settings (the sysctls of the daemon's network namespace) whenever a VIP is added or
// listed. A VIP on a host that does not allow it is still added (the sysctls may be set
// after the daemon starts, e.g. by systemd-sysctl, and they change without ebpfmon
// knowing), but every answer about it carries the warnings below, and the CLI prints them.
import fs from 'node:fs';
import type { Family } from '../contract/common.js';

export type ReadSysctl = (name: string) => string | null;

/** Reads /proc/sys/<name with dots as slashes>; null when absent. */
export const readSysctl: ReadSysctl = (name) => {
  try {
    return fs.readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
  } catch {
    return null;
  }
};

/**
 * Warnings for a VIP of `family` served on `ifnames`:
 * - forwarding off: bpf_fib_lookup answers BPF_FIB_LKUP_RET_FWD_DISABLED for a packet that
 *   arrived on an interface without forwarding (IPv4: per interface; IPv6: conf.all), so
 *   the program hands every packet to the stack, which drops it: clients time out.
 * - strict rp_filter: replies from nat backends are handed to the stack with the VIP as
 *   source when they cannot be redirected, and a strict reverse-path check drops them.
 */
export function lbHostWarnings(family: Family, ifnames: readonly string[], read: ReadSysctl = readSysctl): string[] {
  const out: string[] = [];
  if (family === 'ipv4') {
    const off = ifnames.filter((i) => read(`net.ipv4.conf.${i}.forwarding`) === '0');
    if (off.length > 0) {
      out.push(`IPv4 forwarding is off on ${off.join(', ')} (net.ipv4.conf.${off[0]}.forwarding = 0): the kernel refuses to forward ` +
        `the VIP's packets to a backend, so every client connection times out; enable it with \`sysctl -w net.ipv4.ip_forward=1\``);
    }
    const all = Number(read('net.ipv4.conf.all.rp_filter') ?? 0);
    const strict = ifnames.filter((i) => Math.max(all, Number(read(`net.ipv4.conf.${i}.rp_filter`) ?? 0)) === 1);
    if (strict.length > 0) {
      out.push(`strict reverse-path filtering on ${strict.join(', ')} (rp_filter = 1): replies that reach the stack with the VIP ` +
        `as source can be dropped; set net.ipv4.conf.all.rp_filter and net.ipv4.conf.<if>.rp_filter to 0 or 2, or route the VIPs back through ${strict[0]}`);
    }
  } else if (read('net.ipv6.conf.all.forwarding') === '0') {
    out.push('IPv6 forwarding is off (net.ipv6.conf.all.forwarding = 0): the kernel refuses to forward the VIP\'s packets to a backend, ' +
      'so every client connection times out; enable it with `sysctl -w net.ipv6.conf.all.forwarding=1`');
  }
  return out;
}
