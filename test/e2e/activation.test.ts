// SPDX-License-Identifier: Apache-2.0
// Socket activation in a real systemd 252 (the nspawn harness): systemd creates and binds
// the sockets, the services use them. The daemon (with its handoff probes, bpf/handoff.bpf.c)
// runs in the container; the flows of a socket-activated TCP service (Accept=no: the service
// accepts; Accept=yes: systemd accepts and passes each connection to a new instance) and of
// a socket-activated UDP service name the service's process and its unit, never systemd,
// and `ebpfmonctl flows --unit` finds them by unit. (Without the handoff probes they name
// the short-lived helpers systemd 252 forks to bind and to accept in the socket unit's
// cgroup, `(sd-listen)` and `(sd-accept)`: docs/identity.md.)
// Truth: systemd's MainPID and unit names (systemctl show), the pid the service itself
// sends on each TCP connection, what the client sent and got back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_ARGS } from '../helpers/daemon.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { Container, type ContainerProcess } from './nspawn/container.js';
import type { Flow } from '../../daemon/src/contract/flows.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const ECHO = path.join(root, 'build/bpf/fixtures/net/activated_echo');
const DAEMON = path.join(root, 'build/js/daemon/src/ebpfmon.js');
const CTL = path.join(root, 'build/js/client/src/ebpfmonctl.js');
const SOCK = '/run/emon-test/ebpfmon.sock';
const PINS = '/sys/fs/bpf/ebpfmon';
const IP_UDP = 28;

const units: Record<string, string> = {
  'echo-tcp.socket': '[Socket]\nListenStream=127.0.0.1:7001\n',
  'echo-tcp.service': `[Service]\nExecStart=${ECHO}\n`,
  'echo-tcpa.socket': '[Socket]\nListenStream=127.0.0.1:7002\nAccept=yes\n',
  'echo-tcpa@.service': `[Service]\nExecStart=${ECHO} 60000\n`,
  'echo-udp.socket': '[Socket]\nListenDatagram=127.0.0.1:7003\n',
  'echo-udp.service': `[Service]\nExecStart=${ECHO}\n`,
};

describe('socket activation in systemd: the service owns its traffic', privileged({ timeout: 10 * 60_000 }), () => {
  let c: Container | undefined;
  let daemon: ContainerProcess | undefined;
  const box = () => {
    assert.ok(c, 'the container did not start (see the before hook)');
    return c;
  };
  /** `ebpfmonctl flows --json` with these arguments, as a client in the container runs it. */
  const flows = async (...args: string[]): Promise<Flow[]> => {
    const r = await box().exec(['node', CTL, '--socket', SOCK, 'flows', ...args, '--json']);
    return JSON.parse(r.stdout) as Flow[];
  };

  before(async () => {
    requireTool('systemd-nspawn', 'debootstrap');
    c = await Container.create({ binds: [root] });
    await c.writeFile('/etc/emon-test.json', JSON.stringify({ socketPath: SOCK, pinPath: PINS, bpfObjectDir: path.join(root, 'build/bpf'), interfaces: ['lo'], dbus: { enabled: false }, flows: { closedRetentionSec: 600 } }));
    await c.exec(['mkdir', '-p', '/run/emon-test']);
    daemon = c.spawn(['node', ...DAEMON_NODE_ARGS, DAEMON, '--config', '/etc/emon-test.json']);
    await daemon.waitForOutput(/"msg":"ebpfmon ready"/, 60_000);
    for (const [name, text] of Object.entries(units)) await c.writeFile(`/etc/systemd/system/${name}`, text);
    await c.systemctl(['daemon-reload']);
    await c.systemctl(['start', 'echo-tcp.socket', 'echo-tcpa.socket', 'echo-udp.socket']);
  });

  after(async () => {
    await daemon?.kill();
    await c?.destroy();
  });

  test('TCP, Accept=no: the service accepts; the flow is the service\'s main process and unit', async () => {
    const ct = box();
    const r = JSON.parse((await ct.exec([ECHO, 'tcp', '127.0.0.1', '7001', '5000'])).stdout) as { serverPid: number; localPort: number; received: number };
    assert.equal(r.received, 5000, 'the service echoed every byte');
    const main = Number((await ct.show('echo-tcp.service', ['MainPID'])).MainPID);
    assert.equal(r.serverPid, main, 'the connection was served by the unit\'s main process');
    const f = (await flows('--unit', 'echo-tcp.service', '--port', '7001')).find((x) => x.localPort === 7001 && x.remotePort === r.localPort);
    assert.ok(f, 'the service side of the connection is a flow of its unit');
    assert.deepEqual([f.pid, f.comm, f.attributedBy, f.unit, f.slice], [main, 'activated_echo', 'accept', 'echo-tcp.service', 'system.slice']);
  });

  test('TCP, Accept=yes: systemd accepts, the instance it passes the connection to owns it', async () => {
    const ct = box();
    const r = JSON.parse((await ct.exec([ECHO, 'tcp', '127.0.0.1', '7002', '7000'])).stdout) as { serverPid: number; localPort: number; received: number };
    assert.equal(r.received, 7000);
    assert.ok(r.serverPid > 1);
    const f = (await flows('--unit', 'echo-tcpa@*', '--port', '7002')).find((x) => x.localPort === 7002 && x.remotePort === r.localPort);
    assert.ok(f, 'the flow, found by the template\'s instances');
    assert.ok(!['systemd', '(sd-accept)'].includes(f.comm!), `not systemd, which accepted the connection: ${f.comm}`);
    assert.deepEqual([f.pid, f.comm, f.attributedBy], [r.serverPid, 'activated_echo', 'user']);
    assert.match(f.unit ?? '', /^echo-tcpa@\d+-127\.0\.0\.1:7002-127\.0\.0\.1:\d+\.service$/, JSON.stringify(f));
    assert.equal(f.slice, 'system-echo\\x2dtcpa.slice');
    const main = Number((await ct.show(f.unit!, ['MainPID'])).MainPID);
    assert.equal(main, r.serverPid, 'the instance unit\'s main process');
  });

  test('UDP: systemd binds, the service receives and answers; the flow is the service\'s (not PID 1\'s)', async () => {
    const ct = box();
    const r = JSON.parse((await ct.exec([ECHO, 'udp', '127.0.0.1', '7003', '3', '200'])).stdout) as { localPort: number; replies: number };
    assert.equal(r.replies, 3, 'the service answered every datagram');
    const main = Number((await ct.show('echo-udp.service', ['MainPID'])).MainPID);
    assert.ok(main > 1);
    const f = (await flows('--unit', 'echo-udp.service', '--port', '7003')).find((x) => x.localPort === 7003 && x.remotePort === r.localPort);
    assert.ok(f);
    assert.deepEqual([f.pid, f.comm, f.attributedBy, f.unit], [main, 'activated_echo', 'user', 'echo-udp.service']);
    assert.deepEqual([f.rxPackets, f.txPackets, f.rxBytes, f.txBytes], [3, 3, 3 * (200 + IP_UDP), 3 * (200 + IP_UDP)], 'the datagrams the client sent and got back');
    // And nothing of it is left with systemd (PID 1 or its helpers) under the socket unit.
    assert.deepEqual(await flows('--unit', 'echo-udp.socket'), []);
  });
});
