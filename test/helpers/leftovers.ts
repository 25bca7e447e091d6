// SPDX-License-Identifier: Apache-2.0
// What a test run leaves on the machine: test/run.ts takes a snapshot before the first file
// and fails the run when something new is still there after the last one (every test cleans
// up what it creates, also when it fails: docs/testing.md "Labs"). It looks where tests
// create things: temporary directories, network namespaces, links of the root namespace,
// bpffs entries, users, top-level cgroups. Anything else running on the machine at the same
// time (another test run, a bench) shows here too: run them one after the other.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

export type Snapshot = Record<string, Set<string>>;

/**
 * Devices a kernel module creates in the root namespace when it is first loaded, which a
 * test in its own namespace may cause, not create: the fallback devices of the tunnel
 * modules (in every namespace, and not deletable; seen in the 6.1 guest, whose modules load
 * during the run: ip_gre's gre0, gretap0 and erspan0, ip6_gre's ip6gre0, ip6_tunnel's
 * ip6tnl0; the other tunnel modules' alike) and the ifb module's ifb0 and ifb1 (present on
 * this machine).
 */
const MODULE_DEVICES = new Set(['gre0', 'gretap0', 'erspan0', 'ip6gre0', 'ip6tnl0', 'sit0', 'tunl0', 'ip_vti0', 'ip6_vti0', 'ifb0', 'ifb1']);

function names(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function netns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
  } catch {
    return [];
  }
}

function users(): string[] {
  try {
    return fs.readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')[0]!).filter(Boolean);
  } catch {
    return [];
  }
}

export function snapshot(): Snapshot {
  const cgroups = ['unified', 'systemd', ''].flatMap((h) => names(`/sys/fs/cgroup/${h}`).filter((n) => fs.statSync(`/sys/fs/cgroup/${h}/${n}`, { throwIfNoEntry: false })?.isDirectory()).map((n) => `${h || '(v2)'}/${n}`));
  return {
    [os.tmpdir()]: new Set(names(os.tmpdir())),
    'network namespace': new Set(netns()),
    'link of the root namespace': new Set(names('/sys/class/net').filter((n) => !MODULE_DEVICES.has(n))),
    '/sys/fs/bpf': new Set(names('/sys/fs/bpf')),
    user: new Set(users()),
    cgroup: new Set(cgroups),
  };
}

/** What `after` has that `before` had not, one line each ("network namespace: etx1-mon"). */
export function leftovers(before: Snapshot, after: Snapshot, ignore: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  for (const [what, now] of Object.entries(after)) {
    for (const name of now) if (!before[what]?.has(name) && !ignore.has(name)) out.push(`${what}: ${name}`);
  }
  return out;
}
