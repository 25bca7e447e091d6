// SPDX-License-Identifier: Apache-2.0
// Capability numbers to the names setpriv(1) accepts, so that commands entered with
// nsenter get the container's bounding set instead of the host's (nsenter keeps the
// caller's capabilities; a login inside the container would not have them).
const NAMES = [
  'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid',
  'setpcap', 'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw',
  'ipc_lock', 'ipc_owner', 'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct',
  'sys_admin', 'sys_boot', 'sys_nice', 'sys_resource', 'sys_time', 'sys_tty_config', 'mknod',
  'lease', 'audit_write', 'audit_control', 'setfcap', 'mac_override', 'mac_admin', 'syslog',
  'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf', 'checkpoint_restore',
] as const;

/** Names of the capabilities set in a /proc/<pid>/status mask (CapBnd: 000000c0fceebfff). */
export function capNames(hexMask: string): string[] {
  const mask = BigInt(`0x${hexMask.trim()}`);
  return NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

/** The `--bounding-set=` value for setpriv that leaves exactly these capabilities. */
export function boundingSetArg(names: readonly string[]): string {
  return ['-all', ...names.map((n) => `+${n}`)].join(',');
}
