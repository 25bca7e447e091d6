// SPDX-License-Identifier: Apache-2.0
// kill -9 with rows waiting for ClickHouse: the next start counts them as lost
// (status dropped.crash == the rows the killed process offered), once; a clean stop leaves
// nothing for the next start to count.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClickHouseFlowExport } from '../../../../daemon/src/export/clickhouse.js';
import { pendingFile } from '../../../../daemon/src/export/spool.js';

const CHILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../helpers/export-writer.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-export-crash-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const exporter = (spoolFile: string) => new ClickHouseFlowExport({
  url: 'http://127.0.0.1:9', database: 'emon', table: 'flows', batchRows: 1000, flushIntervalMs: 100, bufferRows: 10_000, compress: false, timeoutMs: 1000,
  // One attempt, then a long wait: no request is in flight when the test stops it.
  backoff: { initialMs: 60_000, maxMs: 60_000 }, host: { hostName: 'crash-test', machineId: '0123456789abcdef0123456789abcdef' }, updateIntervalMs: 0, spoolFile,
});

/** Waits until the export's first attempt failed (nothing in flight until the next, a minute on). */
async function attempted(x: ClickHouseFlowExport): Promise<void> {
  for (const t0 = Date.now(); x.status().state !== 'retrying'; ) {
    assert.ok(Date.now() - t0 < 20_000, `no failed attempt: ${JSON.stringify(x.status())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('rows waiting at a kill -9 are counted as dropped.crash at the next start, once', { timeout: 60_000 }, async () => {
  const spoolFile = path.join(dir, 'spool.json');
  const ROWS = 37;
  const child = spawn(process.execPath, [CHILD, spoolFile, String(ROWS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  after(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  for (const t0 = Date.now(); !out.includes('"pending"'); ) {
    assert.ok(Date.now() - t0 < 30_000, `the child never recorded its pending rows: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((JSON.parse(out.trim().split('\n').at(-1)!) as { buffered: number }).buffered, ROWS, 'the child had every row waiting');
  assert.equal(child.exitCode, null, 'the child still runs, its rows waiting, when it is killed');
  const exited = new Promise((r) => child.once('exit', (_code, signal) => r(signal)));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.equal(fs.existsSync(spoolFile), false, 'a kill -9 writes no spool');

  const x = exporter(spoolFile);
  x.start();
  assert.equal(x.status().dropped.crash, ROWS, 'the rows the killed run offered, counted as lost');
  await attempted(x);
  assert.equal(fs.existsSync(pendingFile(spoolFile)), false, 'the record is taken');
  await x.stop(0);
  assert.equal(x.status().dropped.shutdown, 0);

  // Counted once: a later start finds nothing.
  const y = exporter(spoolFile);
  y.start();
  assert.equal(y.status().dropped.crash, 0, 'counted once');
  await attempted(y);
  y.onClose({
    at: new Date().toISOString(), protocol: 'tcp', family: 'ipv4', localAddr: '198.18.0.1', localPort: 30_000, remoteAddr: '198.18.0.2', remotePort: 80, pid: 1, uid: 0, comm: 'x',
    attributedBy: 'connect', flowSeen: true, interface: 'veth0', txBytes: 1, rxBytes: 1, txPackets: 1, rxPackets: 1, durationMs: 1, payloadBytesSent: 0, payloadBytesReceived: 0,
  });
  // A clean stop: the row goes to the spool, and no pending record is left behind.
  await y.stop(0);
  assert.equal(fs.existsSync(pendingFile(spoolFile)), false, 'a clean stop leaves no pending record');
  assert.equal((JSON.parse(fs.readFileSync(spoolFile, 'utf8')) as { rows: string[] }).rows.length, 1, 'the waiting row is in the spool');
  const z = exporter(spoolFile);
  z.start();
  await attempted(z);
  assert.deepEqual([z.status().dropped.crash, z.status().spool.restoredRows], [0, 1], 'after a clean stop nothing is counted lost; the spool carries the row');
  await z.stop(0);
});
