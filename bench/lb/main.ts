// SPDX-License-Identifier: Apache-2.0
// bench/lb: forwarding capacity client -> balancer -> backend, in one run, for plain
// routing, nftables DNAT and ebpfmon's XDP load balancer (nat and dsr, native XDP on veth),
// plus xdp_lb's per-packet cost with BPF_PROG_TEST_RUN next to an empty xdp_pass.
//
//   sudo node build/js/bench/lb/main.js [--runs 5] [--seconds 2] [--repeat 1000000]
//        [--compare-dir DIR] [--cost-only]
//
// --compare-dir DIR: DIR/lb.bpf.o (another build, e.g. the commit before a change:
// `make -C bpf OUT=DIR`) runs through a second LB agent with its own pins. Forwarding: both
// builds in every round, in alternating order. Per-packet costs: RUNS rounds, each row
// measured for both builds back to back (alternating which goes first; the VIPs move to the
// build being measured, as only one xdp_lb can be attached), so each pair sees the same
// machine; the ratio column is the median of the per-round ratios.
//
// Topology (namespaces from test/helpers/lab.ts):  gen ---- lb ---- be
//   gen: a live-frames XDP generator (BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES)
//        sending one 64-byte UDP flow;
//   lb:  forwards (routing), DNATs (nft), or runs xdp_lb through the LB "daemon"
//        (test/helpers/lb/agent.js);
//   be:  an XDP sink that counts and drops: the rate is what reached the backend.
// The modes alternate within each round (so drift and neighbours' load hit all of them
// alike) and each figure is the median of the rounds. Every loop is bounded by count and
// time; everything is removed on exit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Host } from '../../test/helpers/lab.js';
import { IS_ROOT } from '../../test/helpers/privileged.js';
import { JsonProc, startAgent } from '../../test/helpers/lb/lab.js';
import { udp } from '../../test/helpers/lb/packets.js';
import { strArg } from '../lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WORKER = path.join(here, 'worker.js');

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

const RUNS = Math.min(arg('runs', 5), 50);
const SECONDS = Math.min(arg('seconds', 2), 20);
const REPEAT = Math.min(arg('repeat', 1_000_000), 10_000_000);
const COMPARE_DIR = strArg('compare-dir');
/** Only the per-packet costs (no forwarding rounds). */
const COST_ONLY = process.argv.includes('--cost-only');
const VIP = '198.19.10.10';
const VIP_DSR = '198.19.10.20';
const PORT = 9;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function worker(host: Host, role: string, a: string): Promise<JsonProc> {
  const p = new JsonProc(host.spawn(process.execPath, [WORKER, role, a], { stdio: ['pipe', 'pipe', 'pipe'] }), `worker ${role}`, 'method');
  await p.ready;
  return p;
}

async function mac(host: Host, ifname: string): Promise<Buffer> {
  const j = JSON.parse((await host.exec('ip', ['-j', 'link', 'show', 'dev', ifname])).stdout) as Array<{ address: string }>;
  return Buffer.from(j[0]!.address.replace(/:/g, ''), 'hex');
}

/** A 64-byte Ethernet frame (without FCS) carrying one UDP datagram. */
function frame64(dstMac: Buffer, srcMac: Buffer, src: string, dst: string, dport = PORT): Buffer {
  const eth = Buffer.alloc(14);
  dstMac.copy(eth, 0);
  srcMac.copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, udp(src, dst, 40000, dport, Buffer.alloc(64 - 14 - 28, 0x61))]);
}

async function main(): Promise<void> {
  if (!IS_ROOT) {
    console.error('bench/lb needs root (network namespaces, XDP)');
    process.exitCode = 1;
    return;
  }
  const lab = await Lab.create();
  const cleanup = () => void lab.destroy();
  process.once('SIGINT', cleanup);
  process.once('SIGTERM', cleanup);
  try {
    const gen = await lab.host('gen');
    const lb = await lab.host('lb');
    const be = await lab.host('be');
    const l1 = await lab.link(gen, lb, { ipv6: false });
    const l2 = await lab.link(lb, be, { ipv6: false });
    await lb.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    await gen.exec('ip', ['route', 'add', '198.19.10.0/24', 'via', l1.b.ip4]);
    await gen.exec('ip', ['route', 'add', `${l2.b.ip4.replace(/\.\d+$/, '.0')}/24`, 'via', l1.b.ip4]);
    // Frames the generator redirects into its veth arrive at the balancer only if the
    // balancer's end has GRO on (or an XDP program): routing and nft need GRO.
    await lb.exec('ethtool', ['-K', l1.b.ifname, 'gro', 'on']);
    await be.exec('ethtool', ['-K', l2.b.ifname, 'gro', 'on']);

    const sink = await worker(be, 'sink', l2.b.ifname);
    const sender = await worker(gen, 'gen', l1.a.ifname);
    // Wide NAT range: the per-packet new-flow measurement makes tens of thousands of flows.
    const manager = { gcIntervalMs: 0, healthChecks: false, natPorts: { min: 10000, max: 65535 } };
    const pin = lab.pinPath('bench');
    const agent = await startAgent(lb, { pinPath: pin, manager });
    // The build compared with this one: its own agent, object and pins (startAgent's
    // objectDir defaults to this build's; a config spread after it overrides it).
    type Build = { key: '' | 'Cmp'; label: string; agent: JsonProc; pin: string };
    const builds: Build[] = [{ key: '', label: 'this build', agent, pin }];
    if (COMPARE_DIR) {
      if (!fs.existsSync(path.join(COMPARE_DIR, 'lb.bpf.o'))) throw new Error(`--compare-dir: ${path.join(COMPARE_DIR, 'lb.bpf.o')} does not exist`);
      const cmpPin = lab.pinPath('bench-cmp');
      const cfg = { pinPath: cmpPin, manager, objectDir: path.resolve(COMPARE_DIR) };
      builds.push({ key: 'Cmp', label: `--compare-dir ${COMPARE_DIR}`, agent: await startAgent(lb, cfg), pin: cmpPin });
    }
    /** Round r's order of the builds: alternating, so that neither always goes first. */
    const inTurn = (r: number): Build[] => (r % 2 === 0 ? builds : [...builds].reverse());
    const lbMac = await mac(lb, l1.b.ifname);
    const genMac = await mac(gen, l1.a.ifname);
    const frames = {
      route: frame64(lbMac, genMac, l1.a.ip4, l2.b.ip4),
      vip: frame64(lbMac, genMac, l1.a.ip4, VIP),
      dsr: frame64(lbMac, genMac, l1.a.ip4, VIP_DSR),
      otherPort: frame64(lbMac, genMac, l1.a.ip4, l2.b.ip4, 7777),
    };

    const measure = async (f: Buffer): Promise<{ mpps: number; offered: number }> => {
      await sender.call('send', { frame: f.toString('hex'), seconds: 0.2 }); // warm-up: neighbours, conntrack, conn table
      await sleep(50);
      const c0 = (await sink.call<{ count: number }>('count')).count;
      const r = await sender.call<{ sent: number; ns: number }>('send', { frame: f.toString('hex'), seconds: SECONDS }, (SECONDS + 30) * 1000);
      await sleep(50);
      const c1 = (await sink.call<{ count: number }>('count')).count;
      return { mpps: (c1 - c0) / (r.ns / 1e3), offered: r.sent / (r.ns / 1e3) };
    };
    const nat = `${VIP}:${PORT}/udp`;
    const dsr = `${VIP_DSR}:${PORT}/udp`;
    const addVips = async (a: JsonProc = agent) => {
      await a.call('addVip', { vip: nat, mode: 'nat', interface: l1.b.ifname });
      await a.call('addBackend', { vip: nat, backend: `${l2.b.ip4}:${PORT}` });
      await a.call('addVip', { vip: dsr, mode: 'dsr', interface: l1.b.ifname });
      await a.call('addBackend', { vip: dsr, backend: `${l2.b.ip4}:${PORT}` });
    };
    const removeVips = async (a: JsonProc = agent) => {
      await a.call('removeVip', { vip: nat });
      await a.call('removeVip', { vip: dsr }); // the last VIP: xdp_lb leaves the interfaces
    };
    const nftRules = `table ip ebpfmon_bench {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  ip daddr ${VIP} udp dport ${PORT} dnat to ${l2.b.ip4}:${PORT}\n }\n}\n`;
    const nftFile = path.join(lab.tmpdir(), 'dnat.nft');
    fs.writeFileSync(nftFile, nftRules);

    const rates: Record<string, number[]> = { route: [], nft: [], xdpNat: [], xdpDsr: [] };
    if (COMPARE_DIR) Object.assign(rates, { xdpNatCmp: [], xdpDsrCmp: [] });
    const offered: number[] = [];
    for (let r = 0; r < (COST_ONLY ? 0 : RUNS); r++) {
      const a = await measure(frames.route);
      rates.route!.push(a.mpps);
      offered.push(a.offered);
      await lb.exec('nft', ['-f', nftFile]);
      rates.nft!.push((await measure(frames.vip)).mpps);
      await lb.exec('nft', ['delete', 'table', 'ip', 'ebpfmon_bench']);
      for (const b of inTurn(r)) {
        await addVips(b.agent);
        rates[`xdpNat${b.key}`]!.push((await measure(frames.vip)).mpps);
        rates[`xdpDsr${b.key}`]!.push((await measure(frames.dsr)).mpps);
        await removeVips(b.agent);
      }
      process.stderr.write(`round ${r + 1}/${RUNS}: ${Object.entries(rates).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(3)}`).join(', ')} Mpps\n`);
    }

    // Per-packet cost, in the balancer's namespace (bpf_fib_lookup resolves there).
    type Cost = { passNs: number; replayPassNs: number; replayLbNs: number; lbNs: number; action: string };
    const sportOff = 14 + 20;
    const costRounds = COMPARE_DIR ? RUNS : 1;
    // New flows: few enough that the NAT ports stay mostly free (a full port range costs
    // probes). Compared builds: each round's runs start where the last round's ended
    // (sportBase), and all rounds together stay under the 60000 source ports xdp_replay
    // cycles through, so that every run meets a flow its build has not seen.
    const natNew = COMPARE_DIR ? Math.max(100, Math.floor(2000 / costRounds)) : 2000;
    const dsrNew = COMPARE_DIR ? Math.min(20_000, Math.floor(12_000 / costRounds)) : 20_000;
    type RowDef = { label: string; frame: Buffer; newFlows?: number; dropList?: boolean };
    const rowDefs: RowDef[] = [
      { label: 'nat, established flow (forwarding path)', frame: frames.vip },
      { label: 'dsr, established flow', frame: frames.dsr },
      { label: 'nat, new flow each packet (Maglev + conn + NAT port)', frame: frames.vip, newFlows: natNew },
      { label: 'dsr, new flow each packet (Maglev + conn insert)', frame: frames.dsr, newFlows: dsrNew },
      { label: 'not for a VIP, port no VIP uses (passed untouched)', frame: frames.otherPort },
      { label: 'not for a VIP, on a VIP port (passed untouched)', frame: frames.route },
      { label: 'nat, established, with a drop list (2 rules)', frame: frames.vip, dropList: true },
    ];
    await addVips(agent);
    let hasVips: Build = builds[0]!;
    /** The VIPs (and xdp_lb's interfaces) to build `b`. */
    const vipsTo = async (b: Build) => {
      if (hasVips === b) return;
      await removeVips(hasVips.agent);
      await addVips(b.agent);
      hasVips = b;
    };
    const cost = await worker(lb, 'cost', pin);
    const call = (f: Buffer, extra: Record<string, unknown>) =>
      cost.call<Cost>('cost', { frame: f.toString('hex'), ifname: l1.b.ifname, repeat: REPEAT, rounds: 5, ...extra }, 600_000);
    await cost.call('minDnat', { vip: VIP, port: PORT, proto: 17, backend: l2.b.ip4 });
    const minDnat: Cost[] = [];
    const results = new Map<string, Cost[]>(); // `${build key}|${row label}` -> one Cost per round
    for (let r = 0; r < costRounds; r++) {
      minDnat.push(await call(frames.vip, { target: 'min_dnat' }));
      for (const [ri, row] of rowDefs.entries()) {
        for (const b of inTurn(r + ri)) {
          await vipsTo(b);
          if (row.dropList) {
            await b.agent.call('addDropRule', { rule: '203.0.113.0/24' });
            await b.agent.call('addDropRule', { rule: 'tcp:23' });
          }
          const extra: Record<string, unknown> = { pin: b.pin };
          if (row.newFlows) {
            Object.assign(extra, { sportOffset: sportOff, repeat: row.newFlows });
            // This round's xdp_lb runs get ports r * 5n ... (the replay before them takes 5n).
            if (COMPARE_DIR) extra.sportBase = 60_000 + (r - 1) * 5 * row.newFlows;
          }
          const key = `${b.key}|${row.label}`;
          results.set(key, [...(results.get(key) ?? []), await call(row.frame, extra)]);
          if (row.dropList) {
            await b.agent.call('removeDropRule', { rule: '203.0.113.0/24' });
            await b.agent.call('removeDropRule', { rule: 'tcp:23' });
          }
        }
      }
      if (COMPARE_DIR) process.stderr.write(`cost round ${r + 1}/${costRounds} done\n`);
    }
    const stats = await agent.call<{ drops: Record<string, number> }>('stats');

    // --- report ---
    if (!COST_ONLY) {
      const m = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)])) as Record<string, number>;
      const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
      console.log(`\nbench/lb: ${RUNS} rounds x ${SECONDS} s, one 64-byte UDP flow, veth, native XDP; kernel ${os.release()}, ${os.cpus().length} CPUs, load ${load}`);
      console.log(`generator offered ${median(offered).toFixed(3)} Mpps (median); rates are what reached the backend's sink\n`);
      const rows: Array<[string, string, string, string]> = [
        ['plain routing (baseline)', m.route!.toFixed(3), '1.00', (m.route! / m.nft!).toFixed(2)],
        ['nftables DNAT', m.nft!.toFixed(3), (m.nft! / m.route!).toFixed(2), '1.00'],
      ];
      for (const b of builds) {
        const tag = b.key ? ' (--compare-dir)' : '';
        for (const [mode, k] of [['nat', `xdpNat${b.key}`], ['dsr', `xdpDsr${b.key}`]] as const) {
          rows.push([`ebpfmon XDP LB, ${mode}${tag}`, m[k]!.toFixed(3), (m[k]! / m.route!).toFixed(2), (m[k]! / m.nft!).toFixed(2)]);
        }
      }
      const w = [34, 12, 12, 12];
      const line = (cols: string[]) => console.log(cols.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join(' '));
      line(['forwarding capacity', 'Mpps (med)', 'vs routing', 'vs nft DNAT']);
      line(['-'.repeat(34), '-'.repeat(12), '-'.repeat(12), '-'.repeat(12)]);
      for (const r of rows) line(r);
      console.log(`\nall rounds (Mpps): ${Object.entries(rates).map(([k, v]) => `${k} [${v.map((x) => x.toFixed(3)).join(', ')}]`).join('; ')}`);
      console.log(`XDP LB (nat) / nftables DNAT = ${(m.xdpNat! / m.nft!).toFixed(2)} (target >= 1.7)`);
      if (COMPARE_DIR) {
        const paired = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]!)).toFixed(2);
        console.log(`this build / --compare-dir ${COMPARE_DIR}: nat ${(m.xdpNat! / m.xdpNatCmp!).toFixed(2)}, dsr ${(m.xdpDsr! / m.xdpDsrCmp!).toFixed(2)} (ratio of medians); ` +
          `nat ${paired(rates.xdpNat!, rates.xdpNatCmp!)}, dsr ${paired(rates.xdpDsr!, rates.xdpDsrCmp!)} (median of per-round ratios)`);
      }
      console.log('');
    } else {
      console.log(`\nbench/lb --cost-only: kernel ${os.release()}, ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
    }
    const med = (xs: Cost[], f: (c: Cost) => number) => median(xs.map(f));
    const all = [...results.values()].flat();
    const head = COMPARE_DIR ? `BPF_PROG_TEST_RUN per packet (median of ${costRounds} rounds of 5)` : 'BPF_PROG_TEST_RUN per packet (median of 5)';
    // "above": ns above the empty program, [replay + program] - [replay + xdp_pass] of the
    // same measurement (the issue's target is stated that way), median over the rounds.
    const w2 = COMPARE_DIR ? [56, 10, 7, 12, 9, 7, 9] : [56, 10, 7, 9];
    const line2 = (cols: string[]) => console.log(cols.map((x, i) => (i === 0 ? x.padEnd(w2[i]!) : x.padStart(w2[i]!))).join(' '));
    line2(COMPARE_DIR ? [head, 'ns/packet', 'above', 'compare ns', 'above', 'ratio*', 'verdict'] : [head, 'ns/packet', 'above', 'verdict']);
    line2(w2.map((n) => '-'.repeat(n)));
    const above = (xs: Cost[]) => med(xs, (c) => c.lbNs - c.passNs).toFixed(0);
    const blank = COMPARE_DIR ? ['', '', '', ''] : [''];
    line2(['xdp_pass (empty program, baseline)', med(all, (c) => c.passNs).toFixed(0), ...blank, 'pass']);
    line2(['minimal XDP DNAT fixture (baseline: 1 lookup + fib)', med(minDnat, (c) => c.lbNs).toFixed(0), above(minDnat), ...(COMPARE_DIR ? ['', '', ''] : []), minDnat[0]!.action]);
    for (const row of rowDefs) {
      const mine = results.get(`|${row.label}`)!;
      const ns = med(mine, (c) => c.lbNs);
      if (!COMPARE_DIR) {
        line2([`xdp_lb: ${row.label}`, ns.toFixed(0), above(mine), mine[0]!.action]);
        continue;
      }
      const theirs = results.get(`Cmp|${row.label}`)!;
      const cns = med(theirs, (c) => c.lbNs);
      const ratio = median(mine.map((c, i) => c.lbNs / theirs[i]!.lbNs));
      line2([`xdp_lb: ${row.label}`, ns.toFixed(0), above(mine), cns.toFixed(0), above(theirs), ratio.toFixed(2), mine[0]!.action === theirs[0]!.action ? mine[0]!.action : `${mine[0]!.action}/${theirs[0]!.action}`]);
    }
    console.log(`\n(program ns = [replay + program] - [replay + xdp_pass] + xdp_pass: a fixture rewrites the frame before each run; raw, this build's first round: ${rowDefs
      .map((row) => {
        const x = results.get(`|${row.label}`)![0]!;
        return `${row.label.split(' (')[0]}: ${x.replayLbNs}/${x.replayPassNs}/${x.passNs}`;
      })
      .join('; ')})`);
    if (COMPARE_DIR) {
      console.log(`all rounds (ns/packet, this build | compare): ${rowDefs
        .map((row) => `${row.label.split(' (')[0]} [${results.get(`|${row.label}`)!.map((c) => c.lbNs.toFixed(0)).join(', ')} | ${results.get(`Cmp|${row.label}`)!.map((c) => c.lbNs.toFixed(0)).join(', ')}]`)
        .join('; ')}`);
      console.log(`* ratio: median over the rounds of this build / the compared build, measured back to back. New-flow rows: ${natNew} (nat) and ${dsrNew} (dsr) test runs x 5 per round and build`);
    }
    const fwdAbove = Number(above(results.get(`|${rowDefs[0]!.label}`)!));
    console.log(`target: forwarding path at most 60 ns above the empty program: ${fwdAbove} ns, ${fwdAbove <= 60 ? 'PASS' : 'FAIL'}; drops during the cost runs (this build): ${JSON.stringify(Object.fromEntries(Object.entries(stats.drops).filter(([, n]) => n)))}`);

    for (const p of [cost, sink, sender, ...builds.map((b) => b.agent)]) p.kill();
  } finally {
    await lab.destroy();
  }
}

await main();
