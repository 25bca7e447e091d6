// SPDX-License-Identifier: Apache-2.0
// This host, as every exported record names it (host name and machine id), so a fleet's
// rows stay apart. A process's unit and container are not read here: flows and process
// totals carry them from the daemon's identity service (daemon/src/identity/).
import fs from 'node:fs';
import os from 'node:os';

export interface HostIdentity {
  hostName: string;
  /** /etc/machine-id (32 hex digits), or "" when the host has none. */
  machineId: string;
}

/**
 * The host name and machine id. In a container the id must be the node's: the DaemonSet
 * mounts the node's /etc/machine-id (packaging/kubernetes/ebpfmon-daemonset.yaml).
 */
export function hostIdentity(files = ['/etc/machine-id', '/var/lib/dbus/machine-id']): HostIdentity {
  let machineId = '';
  for (const f of files) {
    try {
      const id = fs.readFileSync(f, 'utf8').trim();
      if (/^[0-9a-f]{32}$/.test(id)) {
        machineId = id;
        break;
      }
    } catch {
      // next candidate
    }
  }
  return { hostName: os.hostname(), machineId };
}
