// SPDX-License-Identifier: Apache-2.0
// Loads the whole capture path (the classifier with its hook chain, the delivery program, the
// interpreter, a generated engine) and sends test packets through it: every packet a
// capture session matches must be counted and read back from the perf rings. Run by
// capture-61.ts inside the 6.1 guest (and on the host: `sudo node build/js/test/e2e/qemu/capture-path-check.js`).
import { CapturePath, filtersFor } from '../../../bench/capture/setup.js';
import { PACKETS } from '../../../bench/classifier/packets.js';
import { TcTestRunner } from '../../../bench/classifier/testrun.js';
import { PerfRingReader } from '../../../daemon/src/capture/perfbuf.js';
import { CAP_MAPS } from '../../../daemon/src/capture/wire.js';

const cap = new CapturePath();
const perf = new PerfRingReader(cap.capMap(CAP_MAPS.events).fd, 256);
const runner = new TcTestRunner();
cap.iface(1, 14, true);
cap.session(0, 'CAPTURE');
cap.session(1, 'CAPTURE', 64);
cap.useDeliver('tc_cap_deliver');
cap.useGenerated([
  { slot: 0, filters: filtersFor('tcp port 443') },
  { slot: 1, filters: filtersFor('ip6'), tgids: [] },
]);
const N = 500;
let samples = 0;
for (const p of PACKETS) runner.run(cap.flows.progFd('tc_ingress'), 'tc_ingress', p.frame, N);
while (perf.drain(() => void samples++, 1000) > 0);
const c0 = cap.counters(0);
const c1 = cap.counters(1);
// PACKETS: IPv4 TCP 443, IPv4 UDP 53, IPv6 TCP 443, IPv4 TCP 443 + options, IPv6 TCP 443 +
// extension headers. libpcap's `tcp` looks at IPv6's first next header only, so `tcp port
// 443` takes 3 of them; `ip6` takes 2; one record per packet either took: 4.
const want0 = 3 * N;
const want1 = 2 * N;
const ok = c0.matched === want0 && c0.captured === want0 && c1.matched === want1 && c1.captured === want1 && samples === 4 * N && perf.stats.lost === 0;
console.log(JSON.stringify({ ok, c0, c1, samples, lost: perf.stats.lost }));
perf.close();
cap.close();
process.exit(ok ? 0 : 1);
