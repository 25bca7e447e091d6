// SPDX-License-Identifier: Apache-2.0
// What a client sees on the system bus through dbus-next, as one JSON line: its unique
// name, the uid the bus daemon attributes to it (GetConnectionUnixUser: the bus's own
// word, not ours), whether systemd is on the bus, and the error a privileged call gets
// (systemd's StartUnit on the unit named in argv[2]). Run it as an unprivileged user in
// the test container.
import dbus from 'dbus-next';

const unit = process.argv[2] ?? 'dbus.service';
const bus = dbus.systemBus();
try {
  const call = (destination: string, path: string, iface: string, member: string, signature = '', body: unknown[] = []) =>
    bus.call(new dbus.Message({ destination, path, interface: iface, member, signature, body }));
  const names = (await call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'ListNames'))?.body[0] as string[];
  const unique = (bus as unknown as { name: string }).name;
  const uid = (await call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetConnectionUnixUser', 's', [unique]))?.body[0] as number;
  let denied: string | null = null;
  try {
    await call('org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'StartUnit', 'ss', [unit, 'replace']);
  } catch (e) {
    denied = (e as { type?: string }).type ?? (e as Error).message;
  }
  console.log(JSON.stringify({ unique, uid, systemdOnBus: names.includes('org.freedesktop.systemd1'), denied }));
} finally {
  bus.disconnect();
}
