// SPDX-License-Identifier: Apache-2.0
// What the systemd unit, the default configuration and the maintainer scripts must agree
// on with the daemon's own code, checked without installing anything: the unit's paths
// match the configuration schema's defaults, the shipped /etc/ebpfmon/ebpfmon.json is
// accepted by the daemon's loader, the unit keeps what the daemon needs (notify, watchdog,
// writable bpffs, no W^X), and the maintainer scripts parse. The unit on a real systemd:
// test/integration/packaging.test.ts (systemd-analyze verify) and the nspawn e2e test.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../../daemon/src/config/load.js';
import { makeConfig } from '../../../daemon/src/config/schema.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const read = (rel: string) => fs.readFileSync(path.join(root, rel), 'utf8');

/** [Section] -> key -> values (a key may repeat). Comments and blank lines dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let cur: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      cur = new Map();
      sections.set(sec[1]!, cur);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(cur && eq > 0, `unit line outside a section or without '=': ${line}`);
    const key = line.slice(0, eq);
    cur.set(key, [...(cur.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

describe('systemd/ebpfmon.service', () => {
  const unit = parseUnit(read('systemd/ebpfmon.service'));
  const service = unit.get('Service')!;
  const one = (key: string) => {
    const v = service.get(key);
    assert.equal(v?.length, 1, `exactly one ${key}=`);
    return v[0]!;
  };
  const defaults = makeConfig().getProperties();

  it('is a notify service with a watchdog, reload by SIGHUP and restart on failure', () => {
    assert.equal(one('Type'), 'notify');
    assert.match(one('WatchdogSec'), /^\d+s$/);
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('ExecStart'), '/usr/sbin/ebpfmon');
    // exit code 2 = invalid configuration (daemon/src/main.ts EXIT.CONFIG)
    assert.equal(one('RestartPreventExitStatus'), '2');
    assert.deepEqual(unit.get('Install')?.get('WantedBy'), ['multi-user.target']);
  });

  it('boosts the daemon (its event loop keeps it; daemon/src/sys/priority.ts) within nice\'s range', () => {
    const nice = Number(one('Nice'));
    assert.ok(Number.isInteger(nice) && nice < 0 && nice >= -20, `Nice=${one('Nice')}`);
  });

  it('its runtime directory holds the default socket, and the default pins are writable', () => {
    assert.equal(`/run/${one('RuntimeDirectory')}`, path.dirname(defaults.socketPath));
    const rw = one('ReadWritePaths').split(/\s+/);
    assert.ok(rw.some((p) => defaults.pinPath.startsWith(`${p}/`)), `ReadWritePaths ${rw.join(' ')} covers ${defaults.pinPath}`);
    // systemd 252 keeps /sys/fs/bpf read-only under ProtectKernelTunables=yes whatever
    // ReadWritePaths= says (found in the nspawn container): the unit spells it out instead.
    assert.equal(service.get('ProtectKernelTunables'), undefined);
    assert.ok(one('ReadOnlyPaths').split(/\s+/).includes('/sys'));
  });

  it('mounts happen outside the sandbox, before the daemon, with full privileges', () => {
    assert.deepEqual(service.get('ExecStartPre'), ['+/usr/lib/ebpfmon/ebpfmon-mounts']);
    assert.match(unit.get('Unit')?.get('RequiresMountsFor')?.[0] ?? '', /\/sys\/fs\/bpf.*\/sys\/kernel\/tracing/);
  });

  it('bounds capabilities to what the daemon uses, without CAP_SYS_ADMIN', () => {
    assert.deepEqual(one('CapabilityBoundingSet').split(/\s+/).sort(), ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_PTRACE']);
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(service.get('User'), undefined, 'runs as root (see the unit\'s comment)');
  });

  it('sandboxes the rest, but keeps what Node and BPF need', () => {
    for (const [k, v] of [['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['ProtectControlGroups', 'yes'], ['SystemCallArchitectures', 'native'], ['SystemCallErrorNumber', 'EPERM']]) {
      assert.equal(one(k!), v, k);
    }
    assert.deepEqual(one('RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    const filters = service.get('SystemCallFilter') ?? [];
    assert.deepEqual(filters[0]?.split(/\s+/), ['@system-service', 'bpf', 'perf_event_open', 'pidfd_getfd']);
    assert.ok(filters.slice(1).every((f) => f.startsWith('~')), 'later filters only remove');
    assert.equal(service.get('MemoryDenyWriteExecute'), undefined, "V8's JIT needs W+X pages");
    for (const k of ['PrivateNetwork', 'PrivateUsers', 'ProtectProc', 'ProcSubset', 'IPAddressDeny']) assert.equal(service.get(k), undefined, k);
  });
});

describe('packaging/config/ebpfmon.json (installed as /etc/ebpfmon/ebpfmon.json)', () => {
  it('is accepted by the daemon and keeps the paths the unit assumes', () => {
    const { config, file } = loadConfig({ file: path.join(root, 'packaging/config/ebpfmon.json'), env: {} });
    assert.ok(file);
    const defaults = makeConfig().getProperties();
    assert.equal(config.socketPath, defaults.socketPath);
    assert.equal(config.pinPath, defaults.pinPath);
    assert.equal(config.access.group, 'ebpfmon');
    assert.equal(config.access.adminGroup, 'ebpfmon-admin');
  });
});

describe('packaging/sysusers.d/ebpfmon.conf', () => {
  it('creates exactly the two groups the default configuration names', () => {
    const lines = read('packaging/sysusers.d/ebpfmon.conf').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    const entries = lines.map((l) => l.trim().split(/\s+/));
    assert.deepEqual(entries.map((e) => `${e[0]} ${e[1]}`).sort(), ['g ebpfmon', 'g ebpfmon-admin']);
  });
});

describe('maintainer scripts and helpers', () => {
  for (const f of ['packaging/debian/postinst', 'packaging/debian/prerm', 'packaging/debian/postrm', 'packaging/bin/ebpfmon-mounts', 'packaging/bin/ebpfmon', 'packaging/bin/ebpfmonctl']) {
    it(`${f} is a POSIX sh script that parses and is executable`, () => {
      const text = read(f);
      assert.ok(text.startsWith('#!/bin/sh\n'), 'shebang #!/bin/sh');
      execFileSync('sh', ['-n', path.join(root, f)]);
      assert.ok((fs.statSync(path.join(root, f)).mode & 0o111) !== 0, 'executable');
    });
  }

  it('prerm tears down on removal only (an upgrade keeps monitoring running)', () => {
    const prerm = read('packaging/debian/prerm').split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
    const removeBranch = /^\s*remove\)([\s\S]*?);;/m.exec(prerm)?.[1] ?? '';
    assert.match(removeBranch, /--teardown/);
    assert.doesNotMatch(prerm.replace(removeBranch, ''), /--teardown/);
  });
});
