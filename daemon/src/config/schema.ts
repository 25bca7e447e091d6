// SPDX-License-Identifier: Apache-2.0
// Every configuration key, its default, its EBPFMON_* environment override and what it
// accepts. docs/configuration.md documents the same keys; a unit test keeps them in step.
import convict from 'convict';
import { EXPORT_SCHEMA } from './export.js';
import { parseHome } from './home.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

function intFormat(name: string, min: number, max: number) {
  return {
    name,
    validate(v: unknown) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`must be an integer from ${min} to ${max}`);
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v),
  };
}

/** The config's own formats, by name (load.ts asks a list format what it wants). */
export const FORMATS: Record<string, { validate(v: unknown): void; coerce?: (v: unknown) => unknown }> = {
  'interface-list': {
    validate(v: unknown) {
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 15 || /[\s/]/.test(s))) {
        throw new Error('must be an array of interface names or globs (1-15 characters, no spaces or slashes), e.g. ["eth0", "veth*"]');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  },
  'absolute-path': {
    validate(v: unknown) {
      if (typeof v !== 'string' || !v.startsWith('/')) throw new Error('must be an absolute path');
    },
  },
  'optional-path': {
    validate(v: unknown) {
      if (typeof v !== 'string' || (v !== '' && !v.startsWith('/'))) throw new Error('must be an absolute path, or "" for the default');
    },
  },
  'ringbuf-size': {
    validate(v: unknown) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 4096 || v > 1 << 30 || (v & (v - 1)) !== 0) {
        throw new Error('must be a power of two from 4096 to 1073741824 (bytes)');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  },
  'map-size': intFormat('map-size', 1024, 1 << 24),
  seconds: intFormat('seconds', 1, 30 * 24 * 3600),
  'seconds-or-zero': intFormat('seconds-or-zero', 0, 30 * 24 * 3600),
  'backends-per-vip': intFormat('backends-per-vip', 1, 1024),
  count: intFormat('count', 1, 1_000_000),
  'count-or-zero': intFormat('count-or-zero', 0, 1_000_000),
  bytes: intFormat('bytes', 1024, 64 << 20),
  'history-days': intFormat('history-days', 1, 3650),
  'history-bytes': intFormat('history-bytes', 16 << 20, Number.MAX_SAFE_INTEGER),
  'history-commit-sec': intFormat('history-commit-sec', 1, 300),
  'history-memory-mb': intFormat('history-memory-mb', 16, 1 << 20),
  'port-range': {
    validate(v: unknown) {
      const m = typeof v === 'string' ? /^(\d{1,5})-(\d{1,5})$/.exec(v) : null;
      if (!m || Number(m[1]) < 1024 || Number(m[2]) > 65535 || Number(m[1]) > Number(m[2])) throw new Error('must be "MIN-MAX" with 1024 <= MIN <= MAX <= 65535');
    },
  },
  'probe-list': {
    validate(v: unknown) {
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !/^[a-z0-9-]+\/[a-z0-9-]+$/.test(s))) {
        throw new Error('must be an array of "capability/alternative" names, e.g. ["socket-scan/task-file"] (ebpfmonctl status lists them)');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  },
  'dbus-address': {
    // What dbus-next connects to: one address, unix (path or abstract) or tcp.
    validate(v: unknown) {
      if (v === '') return;
      const m = typeof v === 'string' ? /^(unix|tcp):(.+)$/.exec(v) : null;
      const kv = m ? Object.fromEntries(m[2]!.split(',').map((p) => p.split('=', 2) as [string, string | undefined])) : null;
      const ok = m && kv && Object.values(kv).every((x) => x !== undefined && x !== '') && (m[1] === 'unix'
        ? (typeof kv.path === 'string' && kv.path.startsWith('/')) || typeof kv.abstract === 'string'
        : typeof kv.port === 'string' && /^\d{1,5}$/.test(kv.port));
      if (!ok) throw new Error('must be "" (the system bus) or one D-Bus address: "unix:path=/ABSOLUTE/PATH", "unix:abstract=NAME" or "tcp:host=HOST,port=PORT"');
    },
  },
  'perf-pages': {
    validate: (v: unknown) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 4096 || (v & (v - 1)) !== 0) throw new Error('must be a power of two from 1 to 4096 (pages per CPU)');
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  },
  port: intFormat('port', 1, 65535),
  'mmdb-path-list': {
    validate(v: unknown) {
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !s.startsWith('/'))) {
        throw new Error('must be an array of absolute paths to MMDB files, e.g. ["/var/lib/GeoIP/GeoLite2-City.mmdb", "/var/lib/GeoIP/GeoLite2-ASN.mmdb"]');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  },
  'geo-cache-size': intFormat('geo-cache-size', 1, 16_777_216),
  'home-location': {
    validate(v: unknown) {
      if (typeof v !== 'string') throw new Error('must be a string "LAT,LON" or "LAT,LON,NAME"');
      parseHome(v);
    },
  },
  'object-list': {
    validate(v: unknown) {
      if (!Array.isArray(v) || v.some((o) => typeof o !== 'object' || o === null || Array.isArray(o))) throw new Error('must be an array of objects');
    },
  },
};
convict.addFormats(FORMATS);

export const schema = {
  interfaces: {
    doc: 'Interfaces to monitor: names or globs. Loopback only when named. Default: every interface that is up.',
    format: 'interface-list', default: ['*'], env: 'EBPFMON_INTERFACES',
  },
  socketPath: { doc: 'JSON-RPC Unix socket', format: 'absolute-path', default: '/run/ebpfmon/ebpfmon.sock', env: 'EBPFMON_SOCKET' },
  pinPath: { doc: 'bpffs directory holding every pinned map, program and link', format: 'absolute-path', default: '/sys/fs/bpf/ebpfmon', env: 'EBPFMON_PIN_PATH' },
  bpfObjectDir: { doc: 'Directory of the compiled BPF objects ("" = next to the daemon)', format: 'optional-path', default: '', env: 'EBPFMON_BPF_DIR' },
  logLevel: { doc: 'fatal, error, warn, info, debug or trace', format: LOG_LEVELS as unknown as string[], default: 'info', env: 'EBPFMON_LOG_LEVEL' },
  trackAllNamespaces: {
    doc: "Attribute sockets of every network namespace, not only the daemon's own",
    format: Boolean, default: false, env: 'EBPFMON_TRACK_ALL_NAMESPACES',
  },
  maps: {
    flows: { doc: 'Flow table entries (LRU)', format: 'map-size', default: 65536, env: 'EBPFMON_MAPS_FLOWS' },
    owners: { doc: 'Socket owners by cookie (LRU)', format: 'map-size', default: 65536, env: 'EBPFMON_MAPS_OWNERS' },
    tuples: { doc: 'Socket owners by flow tuple (LRU)', format: 'map-size', default: 32768, env: 'EBPFMON_MAPS_TUPLES' },
    binds: { doc: 'Listening/bound endpoints (LRU)', format: 'map-size', default: 8192, env: 'EBPFMON_MAPS_BINDS' },
    ringBufferBytes: { doc: 'Event ring buffer size (kept by existing pins: `ebpfmon --teardown` to resize)', format: 'ringbuf-size', default: 16 * 1024 * 1024, env: 'EBPFMON_MAPS_RING_BUFFER_BYTES' },
  },
  flows: {
    closedRetentionSec: { doc: 'How long closed flows stay queryable', format: 'seconds', default: 60, env: 'EBPFMON_FLOWS_CLOSED_RETENTION_SEC' },
    idleTimeoutSec: { doc: 'UDP/ICMP/other flows idle this long are removed', format: 'seconds', default: 300, env: 'EBPFMON_FLOWS_IDLE_TIMEOUT_SEC' },
    tcpIdleTimeoutSec: { doc: 'TCP flows without a local socket idle this long are removed', format: 'seconds', default: 3600, env: 'EBPFMON_FLOWS_TCP_IDLE_TIMEOUT_SEC' },
    gcIntervalSec: { doc: 'How often expired flows are collected (and once at start)', format: 'seconds', default: 10, env: 'EBPFMON_FLOWS_GC_INTERVAL_SEC' },
    closeCheckSec: {
      doc: 'A TCP flow whose packets ended the connection (FIN both ways, or a reset) and that has had none this long without a close event is checked against the kernel\'s socket table; a socket gone gets the close the kernel did not report (counters.closesInferred). With trackAllNamespaces the socket table cannot be asked: 300 s at least, FINs both ways only',
      format: 'seconds', default: 5, env: 'EBPFMON_FLOWS_CLOSE_CHECK_SEC',
    },
    dirtyRing: { doc: 'processes.list, top and the owner index read only the flows the kernel reports changed (the dirty-flow ring); false: the classifier without it, every read walks the table', format: Boolean, default: true, env: 'EBPFMON_FLOWS_DIRTY_RING' },
  },
  probes: {
    disable: {
      doc: 'Probe alternatives not to use, as "capability/alternative" (e.g. "socket-scan/task-file"): the next one is tried, as if the kernel had refused it',
      format: 'probe-list', default: [] as string[], env: 'EBPFMON_PROBES_DISABLE',
    },
  },
  identity: {
    cacheEntries: { doc: 'Cgroup identities (unit, container, app) kept in memory; the least recently used go first', format: 'count', default: 4096, env: 'EBPFMON_IDENTITY_CACHE_ENTRIES' },
    namesTtlSec: { doc: 'Container and app names are read again after this long (what a cgroup path says never changes)', format: 'seconds', default: 60, env: 'EBPFMON_IDENTITY_NAMES_TTL_SEC' },
    handoffEntries: { doc: 'Sockets that changed hands remembered in the kernel (emon_handoffs, LRU; see docs/identity.md)', format: 'map-size', default: 16384, env: 'EBPFMON_IDENTITY_HANDOFF_ENTRIES' },
  },
  events: {
    execArgs: { doc: 'Capture the first exec arguments', format: Boolean, default: true, env: 'EBPFMON_EVENTS_EXEC_ARGS' },
  },
  l7: {
    dns: { doc: 'DNS names per process: queries and answers (UDP/TCP port 53, and a local stub resolver on lo); flows carry remoteName', format: Boolean, default: false, env: 'EBPFMON_L7_DNS' },
    http: { doc: 'HTTP/1.x requests per process (method, host, path, status, sizes, latency)', format: Boolean, default: false, env: 'EBPFMON_L7_HTTP' },
    tls: { doc: 'TLS server names (SNI) on flows, and the plaintext of OpenSSL users through uprobes on libssl', format: Boolean, default: false, env: 'EBPFMON_L7_TLS' },
    keepQuery: { doc: 'Keep query strings in HTTP paths (they often carry tokens)', format: Boolean, default: false, env: 'EBPFMON_L7_KEEP_QUERY' },
    maxDnsQueries: { doc: 'DNS queries kept in memory for dns.list', format: 'count', default: 10000, env: 'EBPFMON_L7_MAX_DNS_QUERIES' },
    maxHttpRequests: { doc: 'HTTP requests kept in memory for http.list', format: 'count', default: 10000, env: 'EBPFMON_L7_MAX_HTTP_REQUESTS' },
  },
  rpc: {
    maxClients: { doc: 'Simultaneous socket clients', format: 'count', default: 64, env: 'EBPFMON_RPC_MAX_CLIENTS' },
    maxClientsPerUid: { doc: 'Simultaneous socket clients of one user (root included)', format: 'count', default: 16, env: 'EBPFMON_RPC_MAX_CLIENTS_PER_UID' },
    reservedClients: { doc: 'Of maxClients, connections only root and the access.group may take (others never lock them out)', format: 'count-or-zero', default: 8, env: 'EBPFMON_RPC_RESERVED_CLIENTS' },
    idleTimeoutSec: { doc: 'A connection with no request and no subscription for this long is closed (0: never)', format: 'seconds-or-zero', default: 300, env: 'EBPFMON_RPC_IDLE_TIMEOUT_SEC' },
    maxMessageBytes: { doc: 'Largest request line accepted', format: 'bytes', default: 1048576, env: 'EBPFMON_RPC_MAX_MESSAGE_BYTES' },
    maxSubscriptionsPerClient: { doc: 'Event subscriptions per connection', format: 'count', default: 8, env: 'EBPFMON_RPC_MAX_SUBSCRIPTIONS' },
    subscriberQueue: { doc: 'Events queued per slow subscriber before it loses some', format: 'count', default: 10000, env: 'EBPFMON_RPC_SUBSCRIBER_QUEUE' },
    subscriberQueueSeesAll: { doc: 'The same for connections of root and the access.group (trusted, and the ones that see every event: room for a burst at the machine\'s maximum connection rate)', format: 'count', default: 100000, env: 'EBPFMON_RPC_SUBSCRIBER_QUEUE_SEES_ALL' },
  },
  access: {
    group: { doc: 'Members see every flow', format: String, default: 'ebpfmon', env: 'EBPFMON_GROUP' },
    adminGroup: { doc: 'Members may change the load balancer', format: String, default: 'ebpfmon-admin', env: 'EBPFMON_ADMIN_GROUP' },
  },
  dbus: {
    enabled: { doc: 'Serve org.ebpfmon1 on the system bus', format: Boolean, default: true, env: 'EBPFMON_DBUS' },
    address: { doc: 'Bus address: "" for the system bus, or "unix:path=...", "unix:abstract=..." or "tcp:host=...,port=..."', format: 'dbus-address', default: '', env: 'EBPFMON_DBUS_ADDRESS' },
  },
  lb: {
    interfaces: { doc: 'Interfaces that get the XDP load balancer (none: not loaded)', format: 'interface-list', default: [] as string[], env: 'EBPFMON_LB_INTERFACES' },
    xdpMode: { doc: 'native or generic XDP', format: ['native', 'generic'], default: 'native', env: 'EBPFMON_LB_XDP_MODE' },
    natPorts: { doc: 'Source ports for nat-mode flows, "MIN-MAX" (keep it outside ip_local_port_range)', format: 'port-range', default: '61000-65535', env: 'EBPFMON_LB_NAT_PORTS' },
    vips: { doc: 'VIPs declared in the file (see docs/lb.md)', format: 'object-list', default: [] as object[] },
    promoteAfterSec: { doc: 'Flows older than this move into the long-lived table, safe from LRU eviction (0: never)', format: 'seconds-or-zero', default: 30, env: 'EBPFMON_LB_PROMOTE_AFTER_SEC' },
    idleTimeoutSec: {
      tcp: { doc: 'Idle TCP flows leave the long-lived and NAT tables after this long', format: 'seconds', default: 900, env: 'EBPFMON_LB_IDLE_TIMEOUT_SEC_TCP' },
      udp: { doc: 'Idle UDP flows leave the long-lived and NAT tables after this long', format: 'seconds', default: 120, env: 'EBPFMON_LB_IDLE_TIMEOUT_SEC_UDP' },
      embryonic: { doc: 'A NAT entry whose backend never answered is freed after this long', format: 'seconds', default: 10, env: 'EBPFMON_LB_IDLE_TIMEOUT_SEC_EMBRYONIC' },
    },
    gcIntervalSec: { doc: 'How often idle long-lived and NAT entries are collected', format: 'seconds', default: 10, env: 'EBPFMON_LB_GC_INTERVAL_SEC' },
    maxBackendsPerVip: { doc: 'Backends a VIP may have (at most 1024: 64 Maglev table slots per backend keep the imbalance small)', format: 'backends-per-vip', default: 1024, env: 'EBPFMON_LB_MAX_BACKENDS_PER_VIP' },
    healthChecks: { doc: 'Run the health checks VIPs declare', format: Boolean, default: true, env: 'EBPFMON_LB_HEALTH_CHECKS' },
    maps: {
      conns: { doc: 'Connection table entries (LRU)', format: 'map-size', default: 262144, env: 'EBPFMON_LB_MAPS_CONNS' },
      long: { doc: 'Long-lived connection table entries', format: 'map-size', default: 65536, env: 'EBPFMON_LB_MAPS_LONG' },
      nat: { doc: 'NAT table entries', format: 'map-size', default: 131072, env: 'EBPFMON_LB_MAPS_NAT' },
    },
  },
  history: {
    enabled: { doc: 'Keep a history of closed flows and per-process per-minute totals on disk (docs/history.md)', format: Boolean, default: true, env: 'EBPFMON_HISTORY_ENABLED' },
    path: { doc: "Directory of the history database (the unit's StateDirectory=)", format: 'absolute-path', default: '/var/lib/ebpfmon', env: 'EBPFMON_HISTORY_PATH' },
    retentionDays: { doc: 'Flow records and per-minute totals older than this are removed', format: 'history-days', default: 30, env: 'EBPFMON_HISTORY_RETENTION_DAYS' },
    maxBytes: { doc: 'Size limit of the database: the oldest flow records go first, per-minute totals last', format: 'history-bytes', default: 1024 ** 3, env: 'EBPFMON_HISTORY_MAX_BYTES' },
    detailFlowsPerSec: { doc: 'Short flows per second recorded one by one (in bursts of ten times that); beyond, they are summed per process, protocol, family, minute and remote endpoint (its address and service port; for the first 32 endpoints of a process and a quarter of this budget in all, per half second; the rest with the remote unspecified and no ports; interface and direction null when the summed flows differ)', format: 'count', default: 1000, env: 'EBPFMON_HISTORY_DETAIL_FLOWS_PER_SEC' },
    snapshotIntervalSec: { doc: 'How often open flows are recorded (what they gained since the last time)', format: 'seconds', default: 60, env: 'EBPFMON_HISTORY_SNAPSHOT_INTERVAL_SEC' },
    journalSync: { doc: 'Flush each batch the history journal receives to the disk (fdatasync, about two a second) before it is accounted, so a machine that loses power loses what a kill -9 loses (the last half second); false: a power loss may also lose what was not committed yet (up to commitIntervalSec)', format: Boolean, default: true, env: 'EBPFMON_HISTORY_JOURNAL_SYNC' },
    memoryLimitMB: { doc: "Memory the history database engine (DuckDB) may use for its buffers and queries, in MB (10^6 bytes; its memory_limit); the writer thread's own state per tracked flow comes on top", format: 'history-memory-mb', default: 256, env: 'EBPFMON_HISTORY_MEMORY_LIMIT_MB' },
    commitIntervalSec: { doc: 'How often the history database commits on its own (a query commits first; what is not committed yet is in the journal, replayed after a crash)', format: 'history-commit-sec', default: 10, env: 'EBPFMON_HISTORY_COMMIT_INTERVAL_SEC' },
  },
  capture: {
    enabled: { doc: 'Load the capture and mirror programs (docs/capture.md); off: capture.* and mirror.* answer NotAvailable', format: Boolean, default: true, env: 'EBPFMON_CAPTURE' },
    perfPagesPerCpu: { doc: 'Pages per CPU of the perf rings that carry captured packets to the daemon (a power of two, at most 4096 = 16 MiB per CPU)', format: 'perf-pages', default: 256, env: 'EBPFMON_CAPTURE_PERF_PAGES_PER_CPU' },
    statsIntervalSec: { doc: 'Interface Statistics Blocks in a pcapng stream every this many seconds (0: only at the end)', format: 'seconds-or-zero', default: 5, env: 'EBPFMON_CAPTURE_STATS_INTERVAL_SEC' },
    maxClientBacklogBytes: { doc: 'Bytes a capture client may leave unread before its session drops packets (counted in clientDropped)', format: 'bytes', default: 16 << 20, env: 'EBPFMON_CAPTURE_MAX_CLIENT_BACKLOG_BYTES' },
    drain: { doc: 'What reads the perf rings: "auto" (the native drain, build/native/libemoncapdrain.so, when it loads; else the TypeScript drain) or "typescript"', format: ['auto', 'typescript'], default: 'auto', env: 'EBPFMON_CAPTURE_DRAIN' },
    maxSessionsPerUid: { doc: 'Capture sessions one user may run at once', format: 'count', default: 4, env: 'EBPFMON_CAPTURE_MAX_SESSIONS_PER_UID' },
    vxlanPort: { doc: 'UDP port mirror copies are sent to in VXLAN', format: 'port', default: 4789, env: 'EBPFMON_CAPTURE_VXLAN_PORT' },
    mirrors: { doc: 'Mirror sessions declared in the file (see docs/capture.md)', format: 'object-list', default: [] as object[] },
  },
  ...EXPORT_SCHEMA, // metrics.*, export.clickhouse.* (docs/export.md)
  geo: {
    enabled: { doc: 'Look up where remote addresses are (country, city, coordinates, ASN, organisation)', format: Boolean, default: true, env: 'EBPFMON_GEO_ENABLED' },
    databases: {
      doc: 'Your own MMDB files (GeoLite2-City, GeoLite2-ASN, DB-IP Lite...), consulted first for every address, in this order; reloaded when replaced',
      format: 'mmdb-path-list', default: [] as string[], env: 'EBPFMON_GEO_DATABASES',
    },
    defaultDatabases: { doc: 'Also use the country database shipped with ebpfmon (DB-IP Lite, CC BY 4.0)', format: Boolean, default: true, env: 'EBPFMON_GEO_DEFAULT_DATABASES' },
    cacheSize: { doc: 'Addresses whose answer is kept (LRU)', format: 'geo-cache-size', default: 65536, env: 'EBPFMON_GEO_CACHE_SIZE' },
  },
  ui: {
    home: {
      doc: 'Where this machine is on the map of `ebpfmonctl ui`: "LAT,LON" or "LAT,LON,NAME" ("" = pick it on the page)',
      format: 'home-location', default: '', env: 'EBPFMON_UI_HOME',
    },
  },
};

export type Config = ReturnType<ReturnType<typeof makeConfig>['getProperties']>;

export function makeConfig() {
  // Environment and argv are applied by load.ts (so errors name the variable), not here.
  return convict(schema, { env: {}, args: [] });
}
