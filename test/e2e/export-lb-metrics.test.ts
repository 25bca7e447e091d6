// SPDX-License-Identifier: Apache-2.0
// Per-VIP and per-backend load-balancer counters on the daemon's Prometheus endpoint
// (`metrics.listen`), scraped by a real Prometheus (Debian's 2.42, started here in the root
// namespace; it reaches the balancer host over a link of its own). The VIP is configured
// through ebpfmonctl, the client's requests go through the XDP balancer, and the truth is
// which backend answered each request (each server answers with its own name).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { ctl, daemonOnce, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildTopo, startServer, type LbTopo } from '../helpers/lb/lab.js';
import { PrometheusServer } from '../helpers/servers.js';

const VIP = '198.19.10.10:8080/tcp';
const REQUESTS = 30;

describe('load-balancer counters per VIP and per backend, scraped by a real Prometheus', privileged({ timeout: 240_000 }), () => {
  let lab: Lab;
  let topo: LbTopo;
  let daemon: TestDaemon;
  let prom: PrometheusServer;
  let target: string;

  before(async () => {
    requireTool('curl', 'prometheus');
    lab = await Lab.create();
    topo = await buildTopo(lab, 2);
    await startServer(topo.backends[0]!, 'b1');
    await startServer(topo.backends[1]!, 'b2');
    const scrape = await lab.link(lab.root, topo.lb, { ipv6: false });
    target = `${scrape.b.ip4}:9417`;
    daemon = await startDaemon(topo.lb, { config: { interfaces: [topo.front.b.ifname], lb: { interfaces: [topo.front.b.ifname] }, metrics: { listen: target } } });
    prom = await PrometheusServer.start(lab, [target], 1);
  });
  after(async () => {
    await prom?.stop();
    await daemon?.stop('SIGKILL');
    if (daemon) await daemonOnce(topo.lb, daemon.configPath, ['--teardown']);
    await lab?.destroy();
  });

  test('flows per backend in Prometheus == the requests each backend answered; per VIP == all of them', async () => {
    const lb = (args: string[]) => ctl(['lb', ...args], { socket: daemon.socketPath });
    let r = await lb(['vip', 'add', VIP]);
    assert.equal(r.code, 0, r.stderr);
    for (const l of topo.back) {
      r = await lb(['backend', 'add', VIP, l.b.ip4]);
      assert.equal(r.code, 0, r.stderr);
    }
    const answered: Record<string, number> = {};
    for (let i = 0; i < REQUESTS; i++) {
      const c = await topo.client.exec('curl', ['-s', '--max-time', '5', 'http://198.19.10.10:8080/']);
      answered[c.stdout.trim()] = (answered[c.stdout.trim()] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(answered).sort(), ['b1', 'b2'], `every backend answered: ${JSON.stringify(answered)}`);

    const vipFlows = await prom.waitFor(`ebpfmon_lb_vip_flows_total{vip="${VIP}"}`, (v) => v === REQUESTS);
    assert.equal(vipFlows, REQUESTS, 'new flows to the VIP == requests made');
    for (const [i, name] of ['b1', 'b2'].entries()) {
      const q = `ebpfmon_lb_backend_flows_total{vip="${VIP}", backend=~"${topo.back[i]!.b.ip4.replaceAll('.', '\\\\.')}(:.*)?"}`;
      assert.equal(await prom.waitFor(q, (v) => v === answered[name]), answered[name], `${q} == requests ${name} answered`);
    }
    // Packets and bytes per VIP are the sum of its backends' (each request went to one).
    const sum = await prom.scalar(`sum(ebpfmon_lb_backend_packets_total{vip="${VIP}"})`);
    assert.equal(await prom.scalar(`ebpfmon_lb_vip_packets_total{vip="${VIP}"}`), sum);
    assert.ok(sum >= REQUESTS * 3, `at least a SYN, a request and an ACK per request: ${sum}`);
    assert.ok((await prom.query('ebpfmon_lb_table_capacity')).length >= 3, 'the balancer\'s tables have their capacity');
  });
});
