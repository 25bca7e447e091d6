// SPDX-License-Identifier: Apache-2.0
// A stand-in for the daemon in LB tests and benchmarks: opens the Deployment at a pin
// path, builds an LbManager, and serves its methods as JSON lines on stdin/stdout. Run it
// inside the balancer's namespace with `nsenter --net=...` (so interfaces, routes and
// bpf_fib_lookup are the balancer's) and kill it (even with SIGKILL) to show that the
// kernel side keeps forwarding on its own.
//
//   node agent.js '{"pinPath": "...", "objectDir": "...", "manager": {...}, "mapSizes": {...}}'
//   stdin:  {"id": 1, "method": "addVip", "params": {...}}
//   stdout: {"ready": true, "pid": N} once, then {"id": 1, "result": ...} or {"id": 1, "error": {...}}
import readline from 'node:readline';
import pino from 'pino';
import { Deployment } from '../../../daemon/src/bpf/deployment.js';
import { AppError } from '../../../daemon/src/errors.js';
import { LbManager, type LbManagerOptions } from '../../../daemon/src/lb/manager.js';
import { LB_PROG, LB_MAP } from '../../../daemon/src/lb/components.js';
import { XdpTestRunner } from '../../../daemon/src/lb/testrun.js';
import { entries } from '../../../daemon/src/lb/kernel.js';
import { listLinks } from '../../../daemon/src/net/netlink.js';
import { LB_EVENTS } from '../../../daemon/src/lb/events.js';
import { frame, tcpSyn } from './packets.js';

interface AgentConfig {
  pinPath: string;
  objectDir: string;
  manager?: LbManagerOptions;
  mapSizes?: Record<string, number>;
  start?: boolean;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as AgentConfig;
const logger = pino({ level: process.env.LB_AGENT_LOG ?? 'warn' }, pino.destination(2));
const deployment = Deployment.open({
  pinPath: cfg.pinPath,
  objectDir: cfg.objectDir,
  layoutVersion: 1,
  daemonVersion: 'test',
  logger,
  ...(cfg.mapSizes ? { mapSizes: cfg.mapSizes } : {}),
});
const lb = new LbManager(deployment, logger, cfg.manager ?? {});
if (cfg.start !== false) lb.start();

const events: Array<{ name: string; payload: unknown }> = [];
for (const name of Object.values(LB_EVENTS)) lb.events.on(name, (payload) => events.push({ name, payload }));

const send = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** Non-API helpers the tests need. */
const extra: Record<string, (p: Record<string, unknown>) => unknown> = {
  table: (p) => {
    const t = lb.table(String(p.vip));
    return { table: Buffer.from(t.table.buffer, t.table.byteOffset, t.table.byteLength).toString('base64'), ids: t.ids };
  },
  events: () => events.splice(0),
  /** Digest of every configuration map (not counters, not flows): equal digests, equal configuration. */
  digest: () => {
    const names = [LB_MAP.vips, LB_MAP.backends, LB_MAP.vipcfg, LB_MAP.drop4, LB_MAP.drop6, LB_MAP.dproto];
    const out: Record<string, string[]> = {};
    for (const n of names) out[n] = entries(deployment.map(n)).map((e) => `${e.key.toString('hex')}=${e.value.toString('hex')}`).sort();
    out[LB_MAP.vports] = entries(deployment.map(LB_MAP.vports)).filter((e) => e.value[0] !== 0).map((e) => `${e.key.readUInt32LE(0)}=${e.value[0]}`);
    out.xdp = deployment.xdpRecords().map((r) => `${r.ifname}:${r.program}:${r.mode}`).sort();
    return out;
  },
  rawEntries: (p) => entries(deployment.map(String(p.map))).map((e) => ({ key: e.key.toString('hex'), value: e.value.toString('hex') })),
  testRun: (p) => {
    const links = listLinks();
    const ifindex = p.ifname ? links.find((l) => l.name === p.ifname)?.ifindex : undefined;
    if (p.ifname && !ifindex) throw new Error(`no interface ${String(p.ifname)}`);
    const r = new XdpTestRunner(deployment.progFd(LB_PROG.xdp), LB_PROG.xdp).run(Buffer.from(String(p.frame), 'hex'), {
      repeat: typeof p.repeat === 'number' ? p.repeat : 1,
      ...(ifindex ? { ingressIfindex: ifindex } : {}),
    });
    return { retval: r.retval, action: r.action, data: r.data.toString('hex'), durationNs: r.durationNs };
  },
  links: () => listLinks(),
  /**
   * `count` flows to a VIP from distinct clients (198.18.200.0/21), through the program: a SYN
   * and then an ACK each, so every flow is referenced twice, like real short connections (the
   * kernel's LRU keeps entries referenced again on its active list).
   */
  flood: (p) => {
    const ifindex = listLinks().find((l) => l.name === p.ifname)?.ifindex;
    if (!ifindex) throw new Error(`no interface ${String(p.ifname)}`);
    const runner = new XdpTestRunner(deployment.progFd(LB_PROG.xdp), LB_PROG.xdp);
    const count = Math.min(Number(p.count), 500_000);
    const actions: Record<string, number> = {};
    for (let i = 0; i < count; i++) {
      const src = `198.18.${200 + ((i >> 16) & 7)}.${(i >> 8) & 255}`;
      const f = frame(tcpSyn(src, String(p.vip), 1024 + (i & 255), Number(p.port)));
      const a = runner.run(f, { ingressIfindex: ifindex }).action;
      actions[a] = (actions[a] ?? 0) + 1;
      f[14 + 20 + 13] = 0x10; // the same tuple again, as an ACK (checksum is not the LB's business)
      runner.run(f, { ingressIfindex: ifindex });
    }
    return actions;
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let req: { id: number; method: string; params?: Record<string, unknown> };
  try {
    req = JSON.parse(line);
  } catch {
    return;
  }
  void (async () => {
    try {
      let result: unknown;
      if (req.method === 'exit') {
        lb.close();
        deployment.close();
        send({ id: req.id, result: true });
        process.exit(0);
      } else if (extra[req.method]) {
        result = extra[req.method]!(req.params ?? {});
      } else {
        const fn = (lb as unknown as Record<string, (p?: unknown) => unknown>)[req.method];
        if (typeof fn !== 'function') throw new Error(`no method ${req.method}`);
        result = await fn.call(lb, req.params);
      }
      send({ id: req.id, result });
    } catch (err) {
      const e = err as Error;
      send({
        id: req.id,
        error: err instanceof AppError ? { kind: err.kind, code: err.code, message: e.message, data: err.data } : { kind: e.name, message: e.message },
      });
    }
  })();
});
send({ ready: true, pid: process.pid });
