// SPDX-License-Identifier: Apache-2.0
// Drives the classifier's hook chain for test/integration/hooks.test.ts, inside a lab host
// (`nsenter --net=...`): the monitor's Deployment with the classifier and the socket probes
// (pinned under the given pin path), the monitor's InterfaceManager on the given
// interface, and the counting stages of test/fixtures/bpf/hook_stage.bpf.o deployed as a
// feature would deploy its stage (reusing the shared maps by pin). It exists because no
// feature of this commit sets hook bits yet: the test reaches the monitor domain's own
// functions (setHookBits, setProgArrayEntry) as a feature will.
//
//   node hook-driver.js <pinPath> <interface pattern>   then JSON lines on stdin, each with an
//   `id` that its one reply carries:
//   {"op":"bits","target":"all"|<ifindex>,"bit":1,"on":true}  {"op":"slot","slot":0,"prog":"tc_stage_l7"|null}
//   {"op":"ctl","value":1}  {"op":"seen"}  {"op":"reset"}  {"op":"reconcile"}  {"op":"ifbits","ifindex":N}
// stdin closed: releases and tears down everything it pinned and attached.
import readline from 'node:readline';
import pino from 'pino';
import { Deployment, type ComponentDef } from '../../daemon/src/bpf/deployment.js';
import { FLOWS, MAP, SOCKETS } from '../../daemon/src/monitor/components.js';
import { InterfaceManager } from '../../daemon/src/monitor/interfaces.js';
import { LAYOUT_VERSION } from '../../daemon/src/monitor/monitor.js';
import { OBJECT_DIR } from './daemon.js';

export const STAGE: ComponentDef = {
  name: 'hook-stage',
  file: 'fixtures/hook_stage.bpf.o',
  groups: [{ capability: 'stage', required: true, alternatives: [{ id: 'tc', label: 'hook chain stages', attach: [{ prog: 'tc_stage_l7', kind: 'tc' }, { prog: 'tc_stage_capture', kind: 'tc' }] }] }],
};

export interface Seen {
  stage: number; ingress: number; proto: number; parsed: number; lport: number; rport: number;
  packets: number; ipBytes: number; tgid: number; uid: number; hooks: number; flags: number;
}

const [pinPath, ifname] = process.argv.slice(2);
if (!pinPath || !ifname) throw new Error('usage: hook-driver.js <pinPath> <ifname>');
const logger = pino({ level: 'warn' }, pino.destination(2));
const dep = Deployment.open({ pinPath, objectDir: OBJECT_DIR, layoutVersion: LAYOUT_VERSION, daemonVersion: 'test', logger });
for (const c of [FLOWS, SOCKETS, STAGE]) dep.deploy(c);
const ifm = new InterfaceManager(dep, logger, [ifname]);
ifm.reconcile();
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function seen(): Seen[] {
  const out: Seen[] = [];
  dep.map('emon_hs_seen').forEachChunk(({ keys, values, count }) => {
    for (let i = 0; i < count; i++) {
      const k = keys.subarray(i * 8, i * 8 + 8);
      const v = values.subarray(i * 32, i * 32 + 32);
      out.push({
        stage: k[0]!, ingress: k[1]!, proto: k[2]!, parsed: k[3]!, lport: k.readUInt16LE(4), rport: k.readUInt16LE(6),
        packets: Number(v.readBigUInt64LE(0)), ipBytes: Number(v.readBigUInt64LE(8)), tgid: v.readUInt32LE(16), uid: v.readUInt32LE(20), hooks: v[24]!, flags: v[25]!,
      });
    }
  });
  return out;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const m = JSON.parse(line) as { id: number; op: string; target?: 'all' | number; bit?: number; on?: boolean; slot?: number; prog?: string | null; value?: number; ifindex?: number };
  let reply: unknown = { ok: true };
  try {
    switch (m.op) {
      case 'bits': ifm.setHookBits(m.target!, m.bit!, m.on!); break;
      case 'slot': dep.setProgArrayEntry(MAP.hooks, m.slot!, m.prog ?? null); break;
      case 'ctl': dep.map('emon_hs_ctl').update(u32(0), u32(m.value!)); break;
      case 'seen': reply = { seen: seen() }; break;
      case 'reset': dep.map('emon_hs_seen').clear(); break;
      case 'reconcile': ifm.reconcile(); break;
      case 'ifbits': reply = { hooks: ifm.hookBits(m.ifindex!) }; break;
      default: throw new Error(`unknown op ${m.op}`);
    }
  } catch (err) {
    reply = { error: (err as Error).message };
  }
  process.stdout.write(`${JSON.stringify({ id: m.id, ...(reply as object) })}\n`);
});
rl.on('close', () => {
  dep.close();
  Deployment.teardown(pinPath, logger);
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
