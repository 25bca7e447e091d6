// SPDX-License-Identifier: Apache-2.0
// Flows read by key in batches (bpf/flowread.bpf.c through daemon/src/monitor/flowread.ts,
// issue 17). First the program alone, loaded privately with its own flow table: every slot
// of every batch (several full ones and a partial one; IPv4 and IPv6 keys; flows present and
// absent) must equal what one bpf(BPF_MAP_LOOKUP_ELEM) per key returns, the truth the
// daemon used before. Then the daemon: status says which read runs, `flows --pid` answers
// exactly what the test wrote through batches, and with the program switched off
// (`probes.disable: flow-read/syscall`) the same answer comes one lookup per flow.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab } from '../helpers/lab.js';
import { privileged } from '../helpers/privileged.js';
import { until } from '../helpers/wait.js';
import { OBJECT_DIR, ctl, destroyMonitorLab, restartDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { fillFlows, ownerOf, type FillSpec } from '../helpers/flow-fill.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { FLOW_READ, MAP } from '../../daemon/src/monitor/components.js';
import { FlowBatchReader } from '../../daemon/src/monitor/flowread.js';
import { keyBytes, keyString } from '../../daemon/src/monitor/ownerindex.js';
import { FLOW, FLOW_KEY, READ_BATCH } from '../../daemon/src/monitor/wire.js';
import type { Flow } from '../../daemon/src/contract/flows.js';
import type { StatusResult } from '../../daemon/src/contract/status.js';

/** A random flow key as the classifier writes them (IPv4: 4 address bytes, the rest zero). */
function randomKey(v6: boolean): Buffer {
  const k = Buffer.alloc(FLOW_KEY.size);
  const K = FLOW_KEY.fields;
  k[K.family.offset] = v6 ? 10 : 2;
  k[K.proto.offset] = [6, 17, 1][crypto.randomInt(3)]!;
  k.writeUInt16LE(crypto.randomInt(65536), K.lport.offset);
  k.writeUInt16LE(crypto.randomInt(65536), K.rport.offset);
  crypto.randomFillSync(k, K.laddr.offset, v6 ? 16 : 4);
  crypto.randomFillSync(k, K.raddr.offset, v6 ? 16 : 4);
  return k;
}

describe('flows read in batches: the program against one lookup per key', privileged({ timeout: 60_000 }), () => {
  let obj: BpfObject;
  let reader: FlowBatchReader;

  before(() => {
    obj = BpfObject.open(path.join(OBJECT_DIR, 'flowread.bpf.o'));
    obj.setMaxEntries(MAP.flows, 8192);
    obj.load();
    reader = new FlowBatchReader(obj.progFd(FLOW_READ.prog), obj.map(FLOW_READ.buffer));
  });
  after(() => {
    reader?.close();
    obj?.close();
  });

  test('every slot equals the lookup syscall, across full and partial batches', () => {
    const flows = obj.map(MAP.flows);
    const keys: string[] = [];
    for (let i = 0; i < 3 * READ_BATCH + 77; i++) {
      const k = randomKey(i % 3 === 0);
      const s = keyString(k, 0);
      if (keys.includes(s)) continue;
      keys.push(s);
      // Two in three are in the table, each with its own random value.
      if (i % 3 !== 2) flows.update(k, crypto.randomBytes(FLOW.size));
    }
    const vb = Buffer.alloc(FLOW.size);
    let found = 0;
    for (let from = 0; from < keys.length; from += READ_BATCH) {
      const n = Math.min(READ_BATCH, keys.length - from);
      reader.read(keys, from, n);
      for (let j = 0; j < n; j++) {
        const k = keys[from + j]!;
        const truth = flows.lookup(keyBytes(k));
        vb.fill(0xee);
        const kb = Buffer.alloc(FLOW_KEY.size);
        const got = reader.take(j, vb, kb);
        assert.deepEqual(kb, keyBytes(k), `flow ${from + j}: key bytes`);
        assert.equal(got, truth !== null, `flow ${from + j}: found ${got}, the lookup says ${truth !== null}`);
        if (truth) {
          assert.deepEqual(vb, truth, `flow ${from + j}: value`);
          found++;
        } else assert.ok(vb.every((b) => b === 0xee), `flow ${from + j}: an absent flow wrote the value`);
      }
    }
    assert.ok(found > 2 * READ_BATCH, `only ${found} flows present`);
    assert.throws(() => reader.read(keys, 0, READ_BATCH + 1), RangeError);
  });
});

const SPEC: FillSpec = { count: 3000, owners: 30, ownerBase: 3_200_000, queriedPid: 3_299_990, queriedFlows: 600 };

describe('flows read in batches: the daemon', privileged({ timeout: 120_000 }), () => {
  let lab: Lab;
  let daemon: TestDaemon;

  before(async () => {
    lab = await Lab.create();
    const host = await lab.host('fr');
    daemon = await startDaemon(host, { config: { history: { enabled: false } } });
    assert.equal(fillFlows(path.join(daemon.pinPath, 'maps', MAP.flows), SPEC), SPEC.count);
    // Flows written from user space push nothing into the dirty ring: a restarted daemon's
    // start-up walk puts them into the index.
    assert.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: a clean stop');
    daemon = await restartDaemon(daemon);
    await until('the start-up walk', async () => ((await daemon.call('status')) as StatusResult).flowIndex.fullWalks >= 1, 10_000);
  });
  after(async () => {
    await destroyMonitorLab(daemon, lab);
  });

  // Each flow as `port tx rx`: fillFlows gives every flow its own byte counts, so a value
  // read into the wrong key's place shows.
  const truth = (): string[] => {
    const t: string[] = [];
    for (let i = 0; i < SPEC.count; i++) if (ownerOf(SPEC, i) === SPEC.queriedPid) t.push(`${i & 0xffff} ${1000 + (i % 5000)} ${2000 + (i % 7000)}`);
    return t.sort();
  };
  const query = async (): Promise<string[]> => {
    const r = await ctl(['flows', '--pid', String(SPEC.queriedPid), '--json', '--limit', '100000'], { socket: daemon.socketPath });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Flow[]).map((f) => `${f.localPort!} ${f.txBytes} ${f.rxBytes}`).sort();
  };
  const reads = async () => ((await daemon.call('status')) as StatusResult).flowIndex.reads;

  test('status names the batch read, and --pid answers exactly through it', async () => {
    const s = (await daemon.call('status')) as StatusResult;
    assert.equal(s.probes.find((p) => p.capability === FLOW_READ.capability)?.active, FLOW_READ.batch);
    assert.equal(s.flowIndex.reads.mode, 'batch');
    assert.equal(s.flowIndex.reads.reason, null);
    const before = s.flowIndex.reads.batchedFlows;
    // Once the start-up walk filled the index, the query reads the pid's 600 flows by key.
    assert.deepEqual(await query(), truth());
    const after = await reads();
    assert.ok(after.batchedFlows - before >= SPEC.queriedFlows, `${after.batchedFlows - before} flows read in batches for a query of ${SPEC.queriedFlows}`);
  });

  test('switched off, status says why, and the same answer comes one lookup per flow', async () => {
    const cfg = JSON.parse(fs.readFileSync(daemon.configPath, 'utf8')) as Record<string, unknown>;
    cfg.probes = { disable: [`${FLOW_READ.capability}/syscall`] };
    fs.writeFileSync(daemon.configPath, JSON.stringify(cfg, null, 2));
    assert.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: a clean stop');
    daemon = await restartDaemon(daemon);
    const s = (await daemon.call('status')) as StatusResult;
    assert.equal(s.probes.find((p) => p.capability === FLOW_READ.capability)?.active, FLOW_READ.lookup);
    assert.equal(s.flowIndex.reads.mode, 'lookup');
    assert.match(s.flowIndex.reads.reason ?? '', /probes/);
    assert.deepEqual(await query(), truth());
    assert.equal((await reads()).batchedFlows, 0);
    const text = await ctl(['status'], { socket: daemon.socketPath });
    assert.match(text.stdout, /flows read by key: one lookup each/);
  });
});
