// SPDX-License-Identifier: Apache-2.0
// Runs INSIDE the qemu guest (kernel-6.1.test.ts starts it after the integration suites):
// which probe alternatives the daemon picks on this kernel, and whether the accept hook it
// picked fires. The daemon runs in a lab namespace with its own pins and socket, a server
// there accepts one TCP connection from a peer namespace, and then:
//   - `ebpfmonctl status --json` (the real client) gives the probes and the owner counters;
//   - the daemon's flows give the accepted connection's owner and how it was learned;
//   - bpftool (with kernel.bpf_stats_enabled) gives the accept program's kernel-side run
//     count and its link's attach type: an independent view of what is attached;
//   - `ebpfmonctl capture -p <server> tcp` ran while the connection was served: its frames
//     (read back by tcpdump's libpcap, which reads pcapng) against tcpdump's own capture of
//     the server's port on the same interface, byte for byte.
// Everything goes to $EBPFMON_GUEST_OUT/probe-status.json; a summary to stdout.
//
// It changes a sysctl and makes namespaces, so it refuses to run outside the guest.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, jsonLines } from '../../helpers/lab.js';
import { ctl, daemonOnce, PEER, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { frameDiff, framesOf, startCapture, startTcpdump, stopTcpdump } from '../../helpers/capture-truth.js';
import { readPcapRecords } from '../../helpers/pcap-frames.js';
import type {  StatusResult } from '../../../daemon/src/contract/index.js';

const out = process.env.EBPFMON_GUEST_OUT;
if (!out || os.hostname() !== 'ebpfmon-guest') {
  console.error('probe-status: runs only inside the qemu test guest (test/e2e/qemu/guest.ts sets EBPFMON_GUEST_OUT)');
  process.exit(2);
}
const ACCEPT_PROGS = ['fexit_inet_csk_accept', 'fexit_inet_csk_accept_old', 'tp_sys_exit_accept4', 'tp_sys_exit_accept'];

const report: Record<string, unknown> = { kernel: os.release() };
const bpftool = (args: string[]): unknown => JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8', timeout: 60_000 }) || 'null');

const lab = await Lab.create();
let daemon: TestDaemon | undefined;
try {
  fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
  const mon = await lab.host('mon');
  const peer = await lab.host('peer');
  const link = await lab.link(mon, peer);
  // The application layer switched on: whatever the kernel says of its programs, the daemon
  // must start and serve; status.l7 says whether the L7 stage runs, or why not.
  daemon = await startDaemon(mon, { config: { l7: { dns: true, http: true, tls: true } } });

  const srv = mon.spawn(process.execPath, [PEER, 'tcp-server', link.a.ip4, '0', '500']);
  const srvOut = jsonLines(srv);
  const port = Number((await srvOut.next((o) => o.event === 'listening', 60_000)).port);
  // A capture of the server's packets (pid and an expression: the generated filter program
  // and the capture path on this verifier), with tcpdump on the same interface as the truth.
  const dir = lab.tmpdir();
  const truthFile = path.join(dir, 'tcpdump.pcap');
  const capFile = path.join(dir, 'capture.pcapng');
  const tcpdump = await startTcpdump(mon, link.a.ifname, truthFile);
  const cap = await startCapture(mon, daemon.socketPath, ['-p', String(srv.pid), '-w', capFile, 'tcp'], 120_000);
  const client = peer.spawn(process.execPath, [PEER, 'tcp-client', link.a.ip4, String(port), '1000', '--expect', '500']);
  const done = await jsonLines(client).next((o) => o.event === 'done', 60_000);
  await srvOut.next((o) => o.event === 'served', 60_000);
  report.accepted = { serverPid: srv.pid, serverPort: port, clientPort: done.localPort };
  // The last FIN/ACK may still be on its way: let both captures see the connection end.
  await new Promise((r) => setTimeout(r, 2000));
  cap.child.kill('SIGINT');
  const capExit = await cap.exit;
  await stopTcpdump(tcpdump);
  execFileSync('tcpdump', ['-r', capFile, '-w', `${capFile}.pcap`], { stdio: 'pipe', timeout: 60_000 });
  const ours = readPcapRecords(`${capFile}.pcap`).records;
  const truth = framesOf(readPcapRecords(truthFile).records, [{ proto: 'tcp', localPort: port }]);
  const diff = frameDiff(ours, truth);
  report.capture = { exit: capExit, stderr: cap.stderr().slice(-2000), frames: ours.length, tcpdumpFrames: truth.length, onlyOurs: diff.onlyA.length, onlyTcpdump: diff.onlyB.length };

  const st = await ctl(['status', '--json'], { socket: daemon.socketPath });
  if (st.code !== 0) throw new Error(`ebpfmonctl status failed (${st.code}): ${st.stderr}`);
  const status = JSON.parse(st.stdout) as StatusResult;
  report.probes = status.probes;
  report.counters = status.counters;
  report.l7 = status.l7 ? { state: status.l7.state, reason: status.l7.reason, probes: status.l7.probes } : null;
  const flows = (await daemon.call('flows.list', { pid: srv.pid, protocol: 'tcp', limit: 1000 })).flows;
  report.acceptedFlow = flows.find((f) => f.remotePort === done.localPort) ?? null;

  const progs = (bpftool(['prog', 'show']) as Array<{ id: number; name: string; type: string; run_cnt?: number; run_time_ns?: number }>)
    .filter((p) => ACCEPT_PROGS.some((n) => n.startsWith(p.name) || p.name.startsWith(n.slice(0, 15))));
  report.acceptPrograms = progs.map((p) => ({ id: p.id, name: p.name, type: p.type, runCount: p.run_cnt ?? null }));
  const ids = new Set(progs.map((p) => p.id));
  report.acceptLinks = (bpftool(['link', 'show']) as Array<Record<string, unknown>>).filter((l) => ids.has(l.prog_id as number));
} catch (e) {
  report.error = (e as Error).stack ?? String(e);
  process.exitCode = 1;
} finally {
  await daemon?.stop('SIGTERM');
  if (daemon) await daemonOnce(daemon.host, daemon.configPath, ['--teardown']);
  await lab.destroy();
  fs.writeFileSync(path.join(out, 'probe-status.json'), `${JSON.stringify(report, null, 2)}\n`);
}

console.log(`probe status on ${report.kernel} (ebpfmonctl status --json):`);
for (const p of (report.probes as StatusResult['probes'] | undefined) ?? []) {
  console.log(`  ${p.capability.padEnd(13)} ${p.active ?? 'INACTIVE'}`);
  for (const i of p.inactive) console.log(`  ${''.padEnd(13)} not used: ${i.label}: ${i.reason}`);
}
console.log(`  accept programs (bpftool): ${JSON.stringify(report.acceptPrograms ?? null)}`);
console.log(`  accept links (bpftool): ${JSON.stringify((report.acceptLinks as Array<Record<string, unknown>> | undefined)?.map((l) => ({ id: l.id, type: l.type, attach_type: l.attach_type })) ?? null)}`);
console.log(`  accepted flow attributed by: ${(report.acceptedFlow as { attributedBy?: string } | null)?.attributedBy ?? 'none'}`);
console.log(`  capture -p server tcp: ${JSON.stringify(report.capture ?? null)}`);
const l7 = report.l7 as { state: string; reason: string | null } | null | undefined;
console.log(`  l7: ${l7 ? `${l7.state}${l7.reason ? `: ${l7.reason}` : ''}` : 'not in status'}`);
if (report.error) console.log(`  error: ${report.error}`);
