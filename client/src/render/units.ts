// SPDX-License-Identifier: Apache-2.0
// Byte counts and rates as people read them. No Node.js imports: the web page of
// `ebpfmonctl ui` bundles this file too.

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
