// SPDX-License-Identifier: Apache-2.0
// ebpfmon on a second kernel. The development and CI machines run 6.18 with fentry/fexit
// refused and no kprobes, so there the probe layer falls back (accept through the syscall
// exit tracepoint) and the fexit paths and CO-RE compat code never run. Debian 12's own
// 6.1 kernel has fentry/fexit, kprobes and BTF, and inet_csk_accept still has its pre-6.10
// signature: this test boots it under qemu (test/e2e/qemu/, one boot for the whole file)
// and runs, inside it and with the project's own runner, the kernel-facing integration
// suites. They make their own namespaces and veth pairs in the guest, and compare with
// tcpdump, ss and the pids they spawned, as on the host.
//
// Then, in the same guest, probe-status.js starts the daemon in a lab namespace, has a
// server accept one connection, and records `ebpfmonctl status --json`, the accepted flow,
// and bpftool's view of the accept program (run count, link attach type). On 6.1 the accept
// probe must be the pre-6.10 fexit variant, attached as fexit, and it must have fired.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { privileged, requireTool } from '../helpers/privileged.js';
import { PhaseTimer } from './nspawn/phases.js';
import { qemuLog, secs } from './qemu/cache.js';
import { prepareGuest, runInGuest, type GuestRunResult, type PreparedGuest } from './qemu/guest.js';
import type { ProbeStatus } from '../../daemon/src/bpf/manifest.js';
import { HANDOFF_PROBE } from '../../daemon/src/monitor/components.js';

const SUITES = ['integration/flows', 'integration/events', 'integration/lifecycle', 'integration/errors', 'integration/socketscan', 'integration/kernel-traffic', 'integration/objects', 'integration/capture-engine', 'integration/mirror', 'integration/closes', 'integration/ownerports', 'integration/flowread'];
const ACCEPT_PRE_6_10 = 'fexit/inet_csk_accept (pre-6.10 signature)';
const ACCEPT_6_10 = 'fexit/inet_csk_accept';

// Outputs land in $EBPFMON_GUEST_OUT (on the host-side share); the suites' report also goes
// to stdout, which the host follows live.
const GUEST_SCRIPT = `set -u
out="$EBPFMON_GUEST_OUT"
uname -r > "$out/uname"
EBPFMON_SECOND_KERNEL=1 EBPFMON_CAPTURE_QUICK=1 node build/js/test/run.js ${SUITES.join(' ')} 2>&1 | tee "$out/suites.txt"
echo "\${PIPESTATUS[0]}" > "$out/suites.status"
node build/js/test/e2e/qemu/probe-status.js > "$out/probe-status.txt" 2>&1
echo "$?" > "$out/probe-status.status"
exit "$(cat "$out/suites.status")"
`;

// The suites run unchanged in the guest: each sets the retention and time limits it needs
// (userland runs 10-20x slower under emulation).

interface ProbeReport {
  kernel: string;
  probes?: ProbeStatus[];
  counters?: Record<string, number>;
  accepted?: { serverPid: number; serverPort: number; clientPort: number };
  acceptedFlow?: { pid: number; attributedBy: string; direction: string; localPort: number; remotePort: number } | null;
  acceptPrograms?: Array<{ id: number; name: string; type: string; runCount: number | null }>;
  acceptLinks?: Array<{ prog_id: number; type: string; attach_type?: string }>;
  l7?: { state: string; reason: string | null; probes: ProbeStatus[] } | null;
  capture?: { exit: number; stderr: string; frames: number; tcpdumpFrames: number; onlyOurs: number; onlyTcpdump: number };
  error?: string;
}

describe('second kernel: the integration suites on Debian 12 6.1 under qemu', privileged({ timeout: 28 * 60_000 }), () => {
  const timer = new PhaseTimer();
  let guest: PreparedGuest | undefined;
  let run: GuestRunResult | undefined;
  const ran = () => {
    assert.ok(run, 'the guest did not run (see the before hook)');
    return run;
  };

  before(async () => {
    requireTool('qemu-system-x86_64', 'debootstrap', 'zstd', 'mkfs.ext4', 'depmod', 'apt-get', 'dpkg', 'xz', 'setpriv', 'timeout');
    guest = await timer.time('prepare (kernel, initramfs, image)', () => prepareGuest());
    run = await timer.time('guest: boot, suites, probe status, power-off', () =>
      runInGuest(GUEST_SCRIPT, {
        guest: guest!,
        timeoutMs: 20 * 60_000,
        // Progress: suites and tests as they end, with their times (where the guest's
        // minutes go), and the summary; the full report is printed when a test fails.
        onOutput: (line, stream) => {
          if (stream === 'stdout' && /^ *(▶|✔|✖|ℹ) /.test(line)) qemuLog(`guest: ${line}`);
        },
      }),
    );
  });

  after(() => {
    const caches = guest ? `kernel ${guest.kernel.source}, initramfs ${guest.initramfs.source}, image ${guest.image.source}` : 'not prepared';
    const lines = [timer.table(`kernel-6.1 phases (${caches})`)];
    if (run) {
      const suiteMs = /ℹ duration_ms ([\d.]+)/.exec(run.files['suites.txt'] ?? '')?.[1];
      lines.push(`  within the guest run: boot ${secs(run.timings.bootMs)} (attempts ${run.attempts}), command ${secs(run.timings.commandMs)}` +
        `${suiteMs ? ` (suites ${secs(Number(suiteMs))})` : ''}, power-off ${secs(run.timings.totalMs - run.timings.bootMs - run.timings.commandMs)}`);
      // Which probes the daemon chose on 6.1, for the CI log whatever the outcome.
      if (run.files['probe-status.txt']) lines.push(run.files['probe-status.txt'].trimEnd());
    }
    process.stderr.write(`\n${lines.join('\n')}\n`);
  });

  it('boots Debian 12\'s 6.1 kernel', () => {
    const r = ran();
    assert.match((r.files.uname ?? '').trim(), /^6\.1\.\d+-\d+-amd64$/, `guest uname -r: ${r.files.uname}`);
  });

  it(`passes ${SUITES.join(', ')} inside the guest`, () => {
    const r = ran();
    const report = r.files['suites.txt'] ?? r.stdout;
    const status = (r.files['suites.status'] ?? '').trim();
    if (r.code !== 0 || status !== '0') {
      process.stderr.write(`\n===== guest test report (kernel ${(r.files.uname ?? '?').trim()}) =====\n${report}\n===== guest stderr =====\n${r.stderr}\n===== end of guest report =====\n`);
    }
    const failing = report.slice(Math.max(0, report.lastIndexOf('✖ failing tests:')));
    assert.equal(status, '0', `the suites failed in the 6.1 guest (exit ${status || r.code}); full report above.\n${report.includes('✖ failing tests:') ? failing.slice(0, 6000) : report.slice(-4000)}`);
    assert.match(report, /ℹ fail 0\b/);
    assert.match(report, /ℹ skipped 0\b/);
  });

  it('runs the application layer\'s L7 stage on 6.1 (l7.* switched on in probe-status\'s daemon)', () => {
    const raw = ran().files['probe-status.json'];
    assert.ok(raw, `probe-status.js wrote no report:\n${ran().files['probe-status.txt'] ?? ''}`);
    const p = JSON.parse(raw) as ProbeReport;
    assert.equal(p.error, undefined, `probe-status.js failed:\n${p.error}`);
    // Before the record emitters became global functions, 6.1's verifier refused tc_l7_flow
    // (E2BIG after 1M instructions) and the daemon ran without L7: docs/l7.md.
    assert.equal(p.l7?.state, 'running', JSON.stringify(p.l7));
    assert.ok(p.l7.probes.find((x) => x.capability === 'l7-flows')?.active, JSON.stringify(p.l7.probes));
  });

  it('captures a process\'s packets on 6.1: ebpfmonctl capture -p <server> tcp = tcpdump on the same interface, frame for frame', () => {
    const raw = ran().files['probe-status.json'];
    assert.ok(raw, `probe-status.js wrote no report:\n${ran().files['probe-status.txt'] ?? ''}`);
    const p = JSON.parse(raw) as ProbeReport;
    assert.equal(p.error, undefined, `probe-status.js failed:\n${p.error}`);
    const c = p.capture;
    assert.ok(c, 'no capture in the report');
    assert.equal(c.exit, 0, `ebpfmonctl capture exited ${c.exit}: ${c.stderr}`);
    // 1000 bytes up and 500 down with the handshake and the close: a handful of frames at least.
    assert.ok(c.tcpdumpFrames >= 6, JSON.stringify(c));
    assert.deepEqual([c.frames, c.onlyOurs, c.onlyTcpdump], [c.tcpdumpFrames, 0, 0], JSON.stringify(c));
  });

  it(`chooses ${ACCEPT_PRE_6_10} for accept on 6.1, attaches it as fexit, and it fires`, () => {
    const r = ran();
    const raw = r.files['probe-status.json'];
    assert.ok(raw, `probe-status.js wrote no report:\n${r.files['probe-status.txt'] ?? ''}`);
    const p = JSON.parse(raw) as ProbeReport;
    assert.equal(p.error, undefined, `probe-status.js failed:\n${p.error}`);
    const accept = p.probes?.find((x) => x.capability === 'accept');
    assert.ok(accept, `no accept probe in the status: ${JSON.stringify(p.probes)}`);
    assert.equal(accept.active, ACCEPT_PRE_6_10, `accept probe: ${JSON.stringify(accept)}`);
    // The 6.10+ variant was skipped for the kernel's BTF (no struct proto_accept_arg), not tried.
    assert.ok(accept.inactive.some((i) => i.label === ACCEPT_6_10 && /proto_accept_arg/.test(i.reason)), JSON.stringify(accept.inactive));
    // TCP state changes attach as tp_btf there too.
    assert.equal(p.probes!.find((x) => x.capability === 'tcp-state')?.active, 'tp_btf/inet_sock_set_state', JSON.stringify(p.probes));
    // Sockets that change hands: no sock_send_length tracepoints in 6.1, so the fexit
    // alternative on the inet ops (integration/flows checks that SCM_RIGHTS and fork handoffs
    // go to the user there).
    assert.equal(p.probes!.find((x) => x.capability === HANDOFF_PROBE.capability)?.active, HANDOFF_PROBE.fexit, JSON.stringify(p.probes));
    // Every other probe group found an alternative too.
    assert.deepEqual(p.probes!.filter((x) => !x.active).map((x) => x.capability), [], JSON.stringify(p.probes));

    // bpftool, independently: the old-signature program is the only accept program, its
    // link is an fexit attachment, and the kernel ran it for the one accepted connection.
    const progs = p.acceptPrograms ?? [];
    assert.deepEqual(progs.map((x) => x.name), ['fexit_inet_csk_accept_old'], JSON.stringify(progs));
    assert.ok((progs[0]!.runCount ?? 0) >= 1, `run count ${progs[0]!.runCount}`);
    assert.deepEqual((p.acceptLinks ?? []).map((l) => l.attach_type), ['trace_fexit'], JSON.stringify(p.acceptLinks));

    // And the daemon's answer: the accepted connection belongs to the server that accepted it.
    const f = p.acceptedFlow;
    assert.ok(f, 'no flow for the accepted connection');
    assert.deepEqual([f.pid, f.attributedBy, f.direction, f.localPort, f.remotePort], [p.accepted!.serverPid, 'accept', 'inbound', p.accepted!.serverPort, p.accepted!.clientPort]);
    assert.ok((p.counters?.ownersAccept ?? 0) >= 1, JSON.stringify(p.counters));
  });
});
