// SPDX-License-Identifier: Apache-2.0
// The in-kernel filter engines against libpcap itself. For every expression (the issue's
// own, ones that use every cBPF feature libpcap emits, and seeded random combinations),
// compiled for Ethernet and for raw IP, optimized and not, each engine's program runs in
// the kernel (BPF_PROG_TEST_RUN) on every packet of a corpus (seeded generated frames and
// a real tcpdump capture of varied traffic). Its return value must equal what libpcap's
// own interpreter, bpf_filter(), returns for the same bytes: the same verdict and the same
// snap length, packet by packet.
//
// Raw-IP code runs on the Ethernet frames with the translator's base offset 14 (the test
// run always builds an Ethernet skb); libpcap sees the IP packet alone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../helpers/lab.js';
import { privileged, requireTool } from '../helpers/privileged.js';
import { FIXED_EXPRESSIONS, generateFrames, randomExpressions, type CorpusPacket } from '../helpers/capture-corpus.js';
import { realFrames } from '../helpers/capture-traffic.js';
import { CaptureError } from '../../daemon/src/capture/errors.js';
import { compileFilter, DLT, pcapFilter, type CbpfProgram, type LinkType } from '../../daemon/src/capture/pcap.js';
import { ENGINES, type EngineUnderTest } from '../helpers/capture-engines.js';
import { checkProgram } from '../../daemon/src/capture/cbpf.js';
import { loadSchedCls } from '../../daemon/src/capture/progload.js';
import { DEFAULT_LOOPS, verdictProgram } from '../../daemon/src/capture/translate.js';
import { TcTestRunner } from '../../bench/classifier/testrun.js';

const SEED = Number(process.env.EBPFMON_CAPTURE_SEED ?? 0x5eed13);
/** EBPFMON_CAPTURE_QUICK=1: a smaller corpus, for the 6.1 guest (emulated, 10-20x slower). */
const QUICK = process.env.EBPFMON_CAPTURE_QUICK === '1';
const GENERATED = QUICK ? 150 : 700;
const RANDOM_EXPRESSIONS = QUICK ? 12 : 60;

interface Mismatch {
  expression: string;
  linkType: string;
  optimize: boolean;
  origin: string;
  want: number;
  got: number;
  hex: string;
}

describe('capture filter engines: the kernel agrees with libpcap on every packet', privileged({ timeout: 20 * 60_000 }), () => {
  let lab: Lab;
  let corpus: CorpusPacket[] = [];
  const runner = new TcTestRunner();
  const expressions = [...FIXED_EXPRESSIONS, ...randomExpressions(SEED, RANDOM_EXPRESSIONS)];

  before(async () => {
    requireTool('tcpdump', 'ping');
    lab = await Lab.create();
    const real = await realFrames(lab);
    assert.ok(real.length >= 30, `the real capture has only ${real.length} frames`);
    corpus = [...generateFrames(SEED, GENERATED), ...real];
  });
  after(() => lab?.destroy());

  /** Compiles for a link type; expressions about the link layer (arp, ether, vlan) do not
   * exist for raw IP: libpcap must say so clearly, and the engines are not run. */
  function compileOrSkip(expr: string, linkType: LinkType, optimize: boolean, refused: string[]): CbpfProgram | null {
    try {
      return compileFilter(expr, { linkType, optimize });
    } catch (err) {
      assert.ok(err instanceof CaptureError && err.code === 'BAD_FILTER', `${expr}: ${String(err)}`);
      assert.ok(err.message.includes(JSON.stringify(expr)), `the error names the expression: ${err.message}`);
      // Link-layer expressions for raw IP; contradictions, which libpcap's optimizer
      // reports ("expression rejects all packets").
      const linkLayer = linkType === DLT.RAW && /(^|\W)(arp|vlan|ether)(\W|$)/.test(expr);
      assert.ok(linkLayer || /rejects all packets/.test(err.message), `refused: ${err.message}`);
      refused.push(`${expr} (${linkType === DLT.RAW ? 'raw' : 'ethernet'}${linkLayer ? '' : ', rejects all'})`);
      return null;
    }
  }

  function check(engine: EngineUnderTest): { programs: number; runs: number; matches: number; refused: string[]; mismatches: Mismatch[] } {
    const mismatches: Mismatch[] = [];
    const refused: string[] = [];
    let programs = 0;
    let runs = 0;
    let matches = 0;
    for (const expr of expressions) {
      for (const linkType of [DLT.EN10MB, DLT.RAW] as const) {
        for (const optimize of engine.optimizeModes) {
          const prog = compileOrSkip(expr, linkType, optimize, refused);
          if (!prog) continue;
          const base = linkType === DLT.RAW ? 14 : 0;
          const loaded = engine.load(prog, base);
          programs++;
          try {
            for (const p of corpus) {
              if (linkType === DLT.RAW && !p.ip) continue;
              const bytes = base ? p.frame.subarray(base) : p.frame;
              const want = pcapFilter(prog, bytes);
              const got = loaded.run(runner, p.frame);
              runs++;
              if (want) matches++;
              if (got !== want && mismatches.length < 20) {
                mismatches.push({ expression: expr, linkType: linkType === DLT.RAW ? 'raw' : 'ethernet', optimize, origin: p.origin, want, got, hex: p.frame.toString('hex') });
              }
            }
          } finally {
            loaded.close();
          }
        }
      }
    }
    return { programs, runs, matches, refused, mismatches };
  }

  test(`the translator follows protochain through ${DEFAULT_LOOPS} extension headers (libpcap: any number), no further`, () => {
    const prog = compileFilter('ip6 protochain 6', { linkType: DLT.EN10MB });
    const p = loadSchedCls('emon_cap_test', verdictProgram(checkProgram(prog)));
    try {
      const frame = (exts: number): Buffer => {
        const hdrs = Array.from({ length: exts }, (_, i) => Buffer.from([i + 1 < exts ? 60 : 6, 0, 1, 4, 0, 0, 0, 0]));
        const tcp = Buffer.alloc(20);
        tcp[12] = 0x50;
        const ip6 = Buffer.alloc(40);
        ip6[0] = 0x60;
        ip6.writeUInt16BE(exts * 8 + 20, 4);
        ip6[6] = 0; // hop-by-hop first
        ip6[7] = 64;
        return Buffer.concat([Buffer.from('02000000000102000000000286dd', 'hex'), ip6, ...hdrs, tcp]);
      };
      const at = (n: number) => ({ libpcap: pcapFilter(prog, frame(n)), kernel: runner.run(p.fd, p.name, frame(n), 1).retval >>> 0 });
      assert.deepEqual(at(DEFAULT_LOOPS), { libpcap: 262144, kernel: 262144 });
      assert.deepEqual(at(DEFAULT_LOOPS + 1), { libpcap: 262144, kernel: 0 });
    } finally {
      p.close();
    }
  });

  for (const engine of ENGINES) {
    test(`${engine.name}: ${expressions.length} expressions x 2 link types, every corpus packet, same return value as bpf_filter`, () => {
      const r = check(engine);
      const diag = JSON.stringify(r.mismatches.slice(0, 5), null, 1);
      assert.equal(r.mismatches.length, 0, `${r.mismatches.length}+ mismatches (seed ${SEED}):\n${diag}`);
      // The corpus exercises both outcomes (a test where nothing ever matched proves little).
      assert.ok(r.matches > r.runs * 0.05 && r.matches < r.runs * 0.95, `matches ${r.matches} of ${r.runs}`);
      process.stderr.write(`${engine.name}: ${r.programs} programs, ${r.runs} test runs, ${r.matches} matches, refused for raw IP: ${r.refused.join(', ')}\n`);
    });
  }
});
