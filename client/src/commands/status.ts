// SPDX-License-Identifier: Apache-2.0
import { Command } from 'commander';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import type { ExportStatus } from '../../../daemon/src/contract/export.js';
import { bytes, duration } from '../render/format.js';
import { renderTable } from '../render/table.js';
import { withClient } from './common.js';

export function statusCommand(): Command {
  return new Command('status')
    .description('daemon version, uptime, attached programs, probes, map fill, loss counters')
    .option('--json', 'print the status object')
    .action(async (o, cmd: Command) => {
      const s = await withClient(cmd, (c) => c.call(METHODS.status));
      if (o.json) return void process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      const out: string[] = [];
      out.push(`ebpfmon ${s.version}, pid ${s.pid}, up ${duration(s.uptimeMs)}; programs pinned since ${s.deployedAt} under ${s.pinPath}`);
      const r = s.resources;
      if (r) {
        const cpu = r.cpuPercent === null ? 'CPU -' : `CPU ${r.cpuPercent.toFixed(2)}% of a core over the last ${duration(r.cpuWindowMs)}`;
        out.push(`resources: RSS ${bytes(r.rssBytes)} (heap ${bytes(r.heapUsedBytes)} of ${bytes(r.heapTotalBytes)}, outside it ${bytes(r.externalBytes)}); ${cpu}, ${(r.cpuMs / 1000).toFixed(1)} s of CPU since the start`);
      }
      out.push(`adopted at start: ${Object.entries(s.adopted).map(([k, v]) => `${k} ${v ? 'yes' : 'no (loaded)'}`).join(', ')}`);
      out.push('', 'PROBES');
      for (const p of s.probes) {
        out.push(`  ${p.active ? 'active  ' : 'INACTIVE'} ${p.capability.padEnd(13)} ${p.active ?? '-'}`);
        for (const i of p.inactive) out.push(`           ${''.padEnd(13)} not used: ${i.label}: ${i.reason}`);
      }
      const sc = s.socketScan;
      if (sc) {
        const ran = sc.state === 'done' ? `found the owners of ${sc.sockets} socket(s) in ${sc.durationMs} ms` : sc.state;
        out.push(`  start-up socket scan: ${sc.method ?? '-'}: ${ran}`);
        for (const f of sc.fallbacks) out.push(`           ${''.padEnd(13)} failed when run: ${f.label}: ${f.reason}`);
      }
      const fi = s.flowIndex;
      if (fi) out.push(`  flow table reads (processes, top): ${fi.mode === 'dirty-ring' ? `dirty-flow ring: ${fi.refreshes} refreshes read ${fi.flowsRead} changed flows, ${fi.fullWalks} full walks` : `full walk: ${fi.reason ?? '-'}`}`);
      // Older daemons send no `reads`.
      if (fi?.reads) out.push(`  flows read by key: ${fi.reads.mode === 'batch' ? `in batches (${fi.reads.batchedFlows} flows in ${fi.reads.batches} runs)` : `one lookup each: ${fi.reads.reason ?? '-'}`}`);
      out.push('', 'INTERFACES');
      if (s.interfaces.length === 0) out.push('  (none attached)');
      for (const i of s.interfaces) out.push(`  ${i.name.padEnd(16)} ingress ${i.ingress ?? '-'}, egress ${i.egress ?? '-'} since ${i.attachedAt}`);
      for (const [name, e] of Object.entries(s.interfaceErrors)) out.push(`  ${name.padEnd(16)} FAILED: ${e}`);
      out.push('', 'MAPS');
      out.push(renderTable(s.maps, [
        { header: '  NAME', value: (m) => `  ${m.name}` },
        { header: 'ENTRIES', value: (m) => String(m.entries ?? '?'), align: 'right' },
        { header: 'MAX', value: (m) => String(m.maxEntries), align: 'right' },
        { header: 'FILL', value: (m) => (m.entries === null ? '?' : `${((100 * m.entries) / m.maxEntries).toFixed(1)}%`), align: 'right' },
      ]));
      out.push('', 'LOSS');
      out.push(`  events lost in the kernel (ring buffer full): ${s.loss.ringbufFull}`);
      out.push(`  probe runs the kernel skipped and nothing made up for: ${s.loss.probeMisses}`);
      out.push(`  flows evicted from the LRU table before collection: ${s.loss.flowsEvicted}`);
      if (s.counters.closesInferred !== undefined) {
        const cc = s.flowIndex?.closeChecks;
        out.push(`  TCP closes the kernel did not report, inferred from the flow and the socket table: ${s.counters.closesInferred}${cc ? ` (since start: ${cc.checked} checked, ${cc.stillOpen} still open)` : ''}`);
      }
      if (s.counters.closesInferredAtReuse !== undefined) {
        out.push(`  TCP closes the kernel did not report, inferred when a new connection took the tuple: ${s.counters.closesInferredAtReuse}`);
      }
      out.push(`  events dropped for slow subscribers: ${s.loss.subscriberDropped}`);
      if (s.handoff) out.push(`  sockets that changed hands but could not be recorded (map update refused): ${s.handoff.counters.updateFailed}`);
      out.push('', 'EVENTS');
      out.push(`  ${Object.entries(s.events.received).map(([k, v]) => `${k} ${v}`).join(', ')}; ${s.events.pendingBytes} bytes pending; longest drain ${s.events.maxDrainMs} ms`);
      const rpc = s.transports.rpc;
      out.push('', 'CLIENTS');
      out.push(`  JSON-RPC: ${rpc.clients} connected (at most ${rpc.limits.maxClients}, ${rpc.limits.maxClientsPerUid} per user), ${rpc.subscriptions} subscriptions`);
      out.push(`    refused: ${formatCounts(rpc.refused)}`);
      const dbus = s.transports.dbus;
      if (dbus === null) out.push('  D-Bus: not running');
      else {
        out.push(`  D-Bus: ${dbus.callers} callers, ${dbus.subscribers} subscribers, ${dbus.inFlight} calls in flight; ${dbus.calls} calls, ${dbus.errors} errors; signals sent ${dbus.signalsSent}, dropped ${dbus.signalsDropped}`);
        out.push(`    refused: ${formatCounts(dbus.refused)}`);
      }
      const h = s.history;
      if (h) {
        out.push('', 'HISTORY');
        out.push(`  ${h.state}: ${h.file}, ${bytes(h.sizeBytes)} of ${bytes(h.maxBytes)}, ${h.retentionDays} days; records from ${h.oldestRecordAt ?? '-'} to ${h.newestRecordAt ?? '-'}`);
        out.push(`  records written ${h.records.written}, rolled up ${h.records.rolledUp}, pending ${h.records.pending} (oldest waiting ${h.records.lagMs ?? 0} ms), dropped ${h.records.dropped}`);
        if (h.writerHeapBytes !== undefined) out.push(`  writer: ${h.openFlowsTracked} open flows tracked, heap ${bytes(h.writerHeapBytes)}${h.writerCollections ? `, ${h.writerCollections} collections after large writes` : ''}`);
        const j = h.journal;
        if (j) {
          const r = j.replayed;
          out.push(`  journal ${bytes(j.bytes)} in ${j.files} file(s), ${j.uncommittedBatches} batches not committed (last commit ${j.lastCommitAt ?? '-'}), failed appends ${j.failed + j.unjournaled}, `
            + (j.sync ? `flushed to disk ${j.syncs} times (${j.syncMs} ms)` : 'not flushed to disk (history.journalSync false)')
            + (r.batches || r.damaged ? `; replayed at open ${r.batches} batches, dropped ${r.damaged} damaged (${bytes(r.droppedBytes)})` : ''));
        }
        if (h.lastError) out.push(`  last error (${h.lastError.code}) at ${h.lastError.at}: ${h.lastError.message}`);
        for (const m of h.movedAside) out.push(`  moved aside: ${m.path} (${m.reason})`);
      }
      if (s.handoff) {
        const h = s.handoff;
        out.push('', 'SOCKETS THAT CHANGE HANDS');
        out.push(`  ${h.active ? `traffic goes to the process that uses a socket (${h.active})` : 'INACTIVE: traffic stays with the process that created, connected, accepted or bound a socket'}`);
        out.push(`  ${h.sockets} socket(s) recorded; handed over ${h.counters.handoffs}, found shared ${h.counters.shared}, flows moved ${h.counters.flowsPatched}`);
      }
      if (s.identity) {
        const id = s.identity;
        out.push('', 'IDENTITY');
        out.push(`  cgroup2 ${id.cgroupRoot ?? 'not mounted'}; ${id.entries} cgroup(s) cached; ${id.resolved} resolved (by pid ${id.byPid}, by handle ${id.byHandle}${id.handlesDenied ? ' (denied)' : ''}, by walk ${id.byWalk}), ${id.misses} not found, ${id.walks} walk(s)`);
      }
      if (s.export) out.push('', 'EXPORT', ...exportLines(s.export));
      const lbWarnings = s.lb?.warnings ?? [];
      if (lbWarnings.length) {
        out.push('', 'LOAD BALANCER WARNINGS');
        for (const w of lbWarnings) out.push(`  ${w}`);
      }
      const l7 = s.l7;
      if (l7) {
        const on = (['dns', 'http', 'tls'] as const).filter((k) => l7[k]);
        out.push('', 'APPLICATION LAYER (l7)');
        out.push(`  ${l7.state}${on.length ? ` (${on.join(', ')})` : ''}${l7.reason ? `: ${l7.reason}` : ''}`);
        for (const p of l7.probes) {
          out.push(`  ${p.active ? 'active  ' : 'INACTIVE'} ${p.capability.padEnd(13)} ${p.active ?? '-'}`);
          for (const i of p.inactive) out.push(`           ${''.padEnd(13)} not used: ${i.label}: ${i.reason}`);
        }
        if (l7.state === 'running') {
          out.push(`  interfaces: ${l7.interfaces.join(', ') || '(none)'}; loopback DNS tap: ${l7.dnsTap ?? 'off'}`);
          for (const lib of l7.tlsLibraries) out.push(`  TLS hooked: ${lib.path} (${lib.functions.join(', ')})`);
          for (const e of l7.tlsLibraryErrors) out.push(`  TLS NOT hooked: ${e.path}: ${e.reason}`);
          for (const n of l7.tlsNotHooked) out.push(`  TLS not decrypted: ${n.comm ?? '?'}[${n.pid}] ${n.stack}: ${n.reason}`);
          if (l7.tlsSocketsUnavailable) out.push(`  decrypted TLS without its socket: ${l7.tlsSocketsUnavailable}`);
          out.push(`  kept: ${l7.kept.dnsQueries}/${l7.kept.maxDnsQueries} DNS queries, ${l7.kept.httpRequests}/${l7.kept.maxHttpRequests} HTTP requests`);
          out.push(`  loss: ${formatCounts(l7.loss)}; kernel: ring full ${l7.counters.ringbufFull}, payload read failed ${l7.counters.loadFailed}, pieces over the limit ${l7.counters.piecesLimit}, uprobe entries missed ${l7.counters.sslEntryMissed}`);
        }
      }
      const c = s.counters;
      out.push('', 'COUNTERS');
      out.push(`  flows created ${c.flowsCreated}, unattributed at creation ${c.flowsUnattributed}, patched later ${c.flowsPatched}, deleted ${c.flowsDeleted}`);
      out.push(`  owners: socket ${c.ownersSocket}, connect ${c.ownersConnect}, accept ${c.ownersAccept}, bind ${c.ownersBind}, send ${c.ownersSend}, scan ${c.ownersProc}`);
      out.push(`  packets: fragments ${c.packetsFragments} (unmatched ${c.fragmentsUnmatched}), IPv4 options ${c.packetsIpOptions}, IPv6 ext headers ${c.packetsIpv6ExtHeaders}, non-IP ${c.packetsNonIp}, truncated ${c.packetsTruncated}`);
      process.stdout.write(`${out.join('\n')}\n`);
    });
}

/** `a 1, b 2`, or `none` when every count is zero. */
function formatCounts(counts: Record<string, number>): string {
  const nonZero = Object.entries(counts).filter(([, v]) => v > 0);
  return nonZero.length === 0 ? 'none' : nonZero.map(([k, v]) => `${k} ${v}`).join(', ');
}

/** The EXPORT section: where metrics are served, and where flow records go with what was lost. */
export function exportLines(x: ExportStatus): string[] {
  const out: string[] = [];
  const m = x.metrics;
  if (m) {
    const ps = m.processSeries;
    out.push(`  Prometheus: http://${m.listen}/metrics, ${m.scrapes} scrapes; process series ${ps.admitted} of ${ps.limit} + [other] (${ps.candidates} ranked, ${ps.evictions} evicted)`);
    if (m.lastError) out.push(`    last refresh failed: ${m.lastError}`);
  }
  const c = x.clickhouse;
  if (c) {
    out.push(`  ClickHouse: ${c.url} ${c.table}: ${c.state}${c.serverVersion ? ` (server ${c.serverVersion})` : ''}; sent ${c.sent.rows} rows in ${c.sent.batches} batches (${c.sent.bytes} bytes)`);
    out.push(`    buffered ${c.buffered} of ${c.bufferCapacity} rows; dropped: ${formatCounts(c.dropped)}; ${c.retries} retries${c.consecutiveFailures ? `, ${c.consecutiveFailures} failures in a row, next attempt ${c.nextAttemptAt ?? '-'}` : ''}`);
    if (c.lastError) out.push(`    last error ${c.lastError.at}: ${c.lastError.message}`);
    if (c.schema.missingColumns.length) out.push(`    table lacks columns: ${c.schema.missingColumns.join(', ')}`);
    const sp = c.spool;
    if (sp.file) out.push(`    spool ${sp.file}: took over ${sp.restoredRows} rows${sp.restoredUncertainRows ? ` (${sp.restoredUncertainRows} of a batch cut off at the last stop, sent again)` : ''} and ${sp.restoredFlows} flows at start${sp.error ? `; ${sp.error}` : ''}`);
    if (c.trackerOverflow) out.push(`    flows forgotten by the update tracker (full): ${c.trackerOverflow}`);
  }
  return out;
}
