// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl capture`: packets of chosen processes as pcapng (docs/capture.md). This
// command opens the output itself (-w FILE with the user's own credentials and umask, -w -
// its stdout) and offers the descriptor in capture.start: the daemon takes a duplicate
// (pidfd_getfd) and writes the pcapng into it; this command waits for its `capture.ended`
// line. When the daemon cannot take it (or --stream), the connection carries the pcapng
// stream after the reply (docs/api.md) and this command copies those bytes to the output
// as they come (no decoding on the way; it only walks the block headers to count packets). Ctrl-C asks
// the daemon to finish (last packets and statistics, then it closes); a second Ctrl-C, a
// closed stdout or this process dying ends the session at once.
import fs from 'node:fs';
import net from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  CAPTURE_DIRECTIONS, CAPTURE_LATENCY_MS, CAPTURE_NOTIFICATIONS, type CaptureEndedNotification, type CaptureProgressNotification, type CaptureStartParams, type CaptureStartResult,
} from '../../../daemon/src/contract/capture.js';
import { ERRORS } from '../../../daemon/src/contract/errors.js';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { CliError, EXIT } from '../exit.js';
import { choiceArg, intArg, socketPath } from './common.js';
import { DEFAULT_RECONNECT_SEC, reconnectOption, sleepUnless } from './follow.js';

const collect = <T>(parse: (v: string) => T) => (v: string, prev: T[] = []): T[] => [...prev, parse(v)];
const pidArg = intArg(1, 0x7fffffff);
const commArg = (v: string): string => {
  if (v.length === 0 || Buffer.byteLength(v) > 15) throw new InvalidArgumentError('expected a command name of 1 to 15 bytes');
  return v;
};
const userArg = (v: string): string | number => (/^\d+$/.test(v) ? Number(v) : v);

/** Exit code of a daemon error (as DaemonClient maps them). */
function errorExit(code: number): number {
  if (code === ERRORS.PermissionDenied.code) return EXIT.PERMISSION;
  if (code === ERRORS.InvalidParams.code || code === ERRORS.BadFilter.code || code === ERRORS.FilterUnsupported.code) return EXIT.USAGE;
  return EXIT.DAEMON;
}

/**
 * Passes a pcapng byte stream that arrives in pieces on in whole blocks, and counts the
 * Enhanced Packet Blocks. It reads each block's 8-byte head (type, length) and holds back
 * the bytes of a block not yet complete (references to the chunks, not copies), so that
 * when the daemon goes away mid-block the file ends on a block boundary and the next
 * daemon's section follows a valid one.
 */
export class BlockStream {
  packets = 0;
  private parts: Buffer[] = [];
  private len = 0;
  /** Offset (in `parts`) of the next block whose head has not been read. */
  private scan = 0;

  private u32(at: number): number {
    for (const p of this.parts) {
      if (at + 4 <= p.length) return p.readUInt32LE(at);
      if (at < p.length) return Buffer.concat(this.parts).readUInt32LE(at); // a head split between chunks
      at -= p.length;
    }
    throw new RangeError('offset past the held bytes');
  }

  /** The complete blocks `chunk` ends (possibly none, possibly earlier held bytes too). */
  push(chunk: Buffer): Buffer[] {
    this.parts.push(chunk);
    this.len += chunk.length;
    while (this.len - this.scan >= 8) {
      const type = this.u32(this.scan);
      const size = Math.max(8, this.u32(this.scan + 4));
      if (this.scan + size > this.len) break;
      if (type === 6) this.packets++;
      this.scan += size;
    }
    if (this.scan === 0) return [];
    const out: Buffer[] = [];
    let n = this.scan;
    while (n > 0) {
      const p = this.parts[0]!;
      if (p.length <= n) {
        out.push(p);
        this.parts.shift();
        n -= p.length;
      } else {
        out.push(p.subarray(0, n));
        this.parts[0] = p.subarray(n);
        n = 0;
      }
    }
    this.len -= this.scan;
    this.scan = 0;
    return out;
  }

  /** Bytes of an incomplete block (the connection ended in it): dropped. */
  reset(): number {
    const n = this.len;
    this.parts = [];
    this.len = 0;
    this.scan = 0;
    return n;
  }
}

function connect(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EACCES') reject(new CliError(`cannot open ${path}: permission denied`, EXIT.PERMISSION));
      else reject(new CliError(`cannot reach the ebpfmon daemon at ${path} (${err.code ?? err.message})`, EXIT.UNREACHABLE));
    });
  });
}

interface CaptureOpts {
  pid?: number[];
  comm?: string[];
  user?: string | number;
  unit?: string;
  cgroup?: string;
  container?: string;
  app?: string;
  interface?: string[];
  direction?: 'in' | 'out';
  snaplen?: number;
  count?: number;
  duration?: number;
  statsInterval?: number;
  latency?: number;
  write: string;
  quiet?: boolean;
  reconnect?: number;
  stream?: boolean;
}

export function captureParams(o: CaptureOpts, expression: string[]): CaptureStartParams {
  const expr = expression.join(' ').trim();
  return {
    stream: true,
    ...(o.pid?.length ? { pids: o.pid } : {}),
    ...(o.comm?.length ? { comms: o.comm } : {}),
    ...(o.user !== undefined ? { user: o.user } : {}),
    ...(o.unit ? { unit: o.unit } : {}),
    ...(o.cgroup ? { cgroup: o.cgroup } : {}),
    ...(o.container ? { container: o.container } : {}),
    ...(o.app ? { app: o.app } : {}),
    ...(o.interface?.length ? { interfaces: o.interface } : {}),
    ...(o.direction ? { direction: o.direction } : {}),
    ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
    ...(o.count !== undefined ? { count: o.count } : {}),
    ...(o.duration !== undefined ? { durationSec: o.duration } : {}),
    ...(o.statsInterval !== undefined ? { statsIntervalSec: o.statsInterval } : {}),
    ...(o.latency !== undefined ? { latencyMs: o.latency } : {}),
    ...(expr ? { expression: expr } : {}),
  };
}

/** How one connection's session ended. */
type Outcome =
  | { kind: 'done' } // stopped, count or duration reached, or ended by the daemon
  | { kind: 'lost'; at: Date } // the connection ended under a running session
  | { kind: 'failed'; error: CliError };

/** The output as opened here: its descriptor, whether it can be read back (a regular file opened read-write). */
interface Output {
  fd: number;
  kind: 'file' | 'fifo' | 'socket' | 'other';
  readable: boolean;
  created: boolean;
}

/**
 * Opens the output with this user's own credentials and umask (as tcpdump -w does): the
 * daemon only ever writes into this descriptor (fd delivery), it never opens the path.
 * Read-write when allowed, so that after a daemon restart the packets already in the
 * file can be counted (and a block a killed daemon left torn cut off).
 */
function openOutput(file: string): Output {
  if (file === '-') return { fd: 1, kind: kindOf(1), readable: false, created: false };
  const existed = fs.existsSync(file);
  let fd: number;
  let readable = true;
  try {
    fd = fs.openSync(file, 'w+', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw new CliError(`cannot write ${file}: ${(err as Error).message}`, EXIT.USAGE);
    try {
      fd = fs.openSync(file, 'w', 0o644);
      readable = false;
    } catch (err2) {
      throw new CliError(`cannot write ${file}: ${(err2 as Error).message}`, EXIT.USAGE);
    }
  }
  return { fd, kind: kindOf(fd), readable, created: !existed };
}

function kindOf(fd: number): Output['kind'] {
  try {
    const st = fs.fstatSync(fd);
    return st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'other';
  } catch {
    return 'other';
  }
}

/**
 * Enhanced Packet Blocks in the output file (read through its own descriptor, after the
 * daemon that wrote it went away). A block left torn at the end is cut off, so that the
 * next daemon's section follows a whole block (it appends at the end).
 */
export function countFileBlocks(fd: number): number {
  const size = fs.fstatSync(fd).size;
  // Read in 1 MiB windows (a block head per read() would be millions of calls for a large file).
  const win = Buffer.alloc(1 << 20);
  let winAt = 0;
  let winLen = 0;
  const u32 = (at: number): number | null => {
    if (at < winAt || at + 4 > winAt + winLen) {
      winAt = at;
      winLen = fs.readSync(fd, win, 0, win.length, at);
      if (winLen < 4) return null;
    }
    return win.readUInt32LE(at - winAt);
  };
  let epb = 0;
  let off = 0;
  while (off + 8 <= size) {
    const type = u32(off);
    const len = u32(off + 4);
    if (type === null || len === null || len < 12 || off + len > size) break;
    if (type === 6) epb++;
    off += len;
  }
  if (off < size) fs.ftruncateSync(fd, off);
  return epb;
}

/** Asked to use the stream (no descriptor offered): --stream or EBPFMON_CAPTURE_STREAM=1. */
const forceStream = (o: CaptureOpts): boolean => o.stream === true || process.env.EBPFMON_CAPTURE_STREAM === '1';

async function runCapture(o: CaptureOpts, expression: string[], cmd: Command): Promise<void> {
  const base = captureParams(o, expression);
  const toStdout = o.write === '-';
  const path = socketPath(cmd);
  const blocks = new BlockStream();
  const t0 = Date.now();
  const output = openOutput(o.write);
  // The descriptor is offered unless asked not to or it is something the daemon refuses (a terminal, /dev/null).
  const offer = !forceStream(o) && output.kind !== 'other';
  /** Where stream delivery writes (made when a connection streams). */
  let out: NodeJS.WritableStream | null = null;
  let first: CaptureStartResult | null = null;
  let sock: net.Socket | null = null;
  let live = false; // a session runs on `sock`
  let stopping = false;
  /** Packets in the output (every connection). */
  let total = 0;
  let delivery: CaptureStartResult['delivery'] | null = null;
  const waiting = new AbortController();

  const onSignal = (): void => {
    if (!live || stopping) {
      stopping = true;
      waiting.abort();
      sock?.destroy();
      return;
    }
    stopping = true;
    // Any line asks the daemon to finish: it writes what it holds and the statistics, then closes.
    sock!.write(`${JSON.stringify({ jsonrpc: '2.0', method: METHODS.captureStop })}\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  /** Did the session reach its end by itself (then the daemon closing is the end)? */
  const finished = (): boolean =>
    stopping || (o.count !== undefined && total >= o.count) || (o.duration !== undefined && Date.now() - t0 >= o.duration * 1000 - 250);

  const streamOutput = (): NodeJS.WritableStream => {
    if (out) return out;
    const w = toStdout ? process.stdout : fs.createWriteStream('', { fd: output.fd, autoClose: false });
    if (!toStdout) (w as fs.WriteStream).on('error', (err) => {
      failure = new CliError(`cannot write ${o.write}: ${err.message}`, EXIT.USAGE);
      sock?.destroy();
    });
    out = w;
    return w;
  };
  let failure: CliError | null = null;

  /** One connection: capture.start (or its resume), then the stream or the daemon's lines until the connection ends. */
  const session = (s: net.Socket, params: CaptureStartParams): Promise<Outcome> => new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    let started = false;
    let ended = false;
    const connBase = total;
    const blocksAtStart = blocks.packets;
    const write = (chunk: Buffer): void => {
      for (const b of blocks.push(chunk)) {
        if (!out!.write(b)) {
          s.pause();
          out!.once('drain', () => s.resume());
        }
      }
      total = connBase + blocks.packets - blocksAtStart;
    };
    /** fd delivery: the daemon's lines (progress, then the end). */
    const onLine = (text: string): void => {
      let m: { method?: string; params?: CaptureProgressNotification & CaptureEndedNotification };
      try {
        m = JSON.parse(text);
      } catch {
        return;
      }
      if (m.method === CAPTURE_NOTIFICATIONS.progress && m.params) total = m.params.written;
      else if (m.method === CAPTURE_NOTIFICATIONS.ended && m.params) {
        ended = true;
        total = m.params.counters.written;
        const err = m.params.error;
        if (err && !/EPIPE/.test(err)) failure = new CliError(`the daemon could not write ${toStdout ? 'stdout' : o.write}: ${err}`, EXIT.USAGE);
        else if (err && !o.quiet) process.stderr.write(`ebpfmonctl: ${err}: the capture ended\n`);
      }
    };
    s.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: METHODS.captureStart, params })}\n`);
    s.on('data', (chunk: Buffer) => {
      if (started && delivery === 'stream') return write(chunk);
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      let nl: number;
      while (started && (nl = buffered.indexOf(0x0a)) >= 0) {
        onLine(buffered.subarray(0, nl).toString('utf8'));
        buffered = buffered.subarray(nl + 1);
      }
      if (started) return;
      nl = buffered.indexOf(0x0a);
      if (nl < 0) return;
      let reply: { result?: CaptureStartResult; error?: { code: number; message: string; data?: { reason?: string } } };
      try {
        reply = JSON.parse(buffered.subarray(0, nl).toString('utf8'));
      } catch {
        failure = new CliError('the daemon answered capture.start with something that is not JSON', EXIT.DAEMON);
        s.destroy();
        return;
      }
      if (reply.error || !reply.result) {
        // The daemon we resumed with says the session ended there: that is its end.
        if (params.resume && reply.error?.data?.reason === 'ended') failure = null;
        else failure = new CliError(reply.error?.message ?? 'capture.start failed', errorExit(reply.error?.code ?? 0));
        s.destroy();
        return;
      }
      started = true;
      live = true;
      const r = reply.result;
      delivery = r.delivery ?? 'stream';
      if (delivery === 'stream') streamOutput();
      if (!first) {
        first = r;
        if (!o.quiet) {
          const on = r.interfaces.map((i) => i.name).join(', ') || 'every monitored interface';
          process.stderr.write(`capturing on ${on} (session ${r.session}, snaplen ${r.snaplen})${r.expressionMissingOn.length ? `; the expression never matches on ${r.expressionMissingOn.join(', ')}` : ''}\n`);
        }
        if (process.env.EBPFMONCTL_ANNOUNCE) process.stderr.write(`delivery ${delivery}${r.deliveryReason ? ` (${r.deliveryReason})` : ''}\n`);
      } else if (!o.quiet) {
        process.stderr.write(`ebpfmonctl: resumed session ${r.session} with the restarted daemon (a new pcapng section; packets lost meanwhile are counted in its statistics)\n`);
      }
      resumeOf = { session: r.session, instance: r.instance, received: 0 };
      const rest = buffered.subarray(nl + 1);
      buffered = Buffer.alloc(0);
      if (rest.length) s.emit('data', rest);
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      live = false;
      const torn = delivery === 'stream' ? blocks.reset() : 0;
      if (failure) return resolve({ kind: 'failed', error: failure });
      // fd delivery: what the file holds is what was received (no progress lines for a
      // file; a pipe's last one may be older). Counted before finished() looks at -c.
      if (!ended && delivery === 'fd' && output.readable && output.kind === 'file') total = countFileBlocks(output.fd);
      if (!started || ended || finished()) {
        if (!started && !params.resume) return resolve({ kind: 'failed', error: new CliError('lost the connection to the daemon before the capture started', EXIT.UNREACHABLE) });
        return resolve({ kind: 'done' });
      }
      if (torn && !o.quiet) process.stderr.write(`ebpfmonctl: dropped ${torn} bytes of a block the daemon did not finish\n`);
      resolve({ kind: 'lost', at: new Date() });
    });
  });
  let resumeOf: { session: string; instance: string; received: number } | null = null;
  // A regular file opened here: the daemon's progress lines are not needed (the file is
  // counted after a lost connection) and each would wake this process; a pipe's count (and
  // that of a file on stdout, which is not read back) comes from them.
  const startParams = offer ? { ...base, fd: output.fd, ...(output.kind === 'file' && output.readable ? { progress: false } : {}) } : base;

  try {
    sock = await connect(path);
    let outcome = await session(sock, startParams);
    if (outcome.kind === 'failed' && !first && output.created && fs.fstatSync(output.fd).size === 0) fs.rmSync(o.write, { force: true });
    while (outcome.kind === 'lost' && resumeOf) {
      const reconnectSec = o.reconnect ?? DEFAULT_RECONNECT_SEC;
      if (!o.quiet) process.stderr.write(`ebpfmonctl: lost the daemon at ${outcome.at.toLocaleTimeString()} with ${total} packets written; waiting up to ${reconnectSec} s to resume the session\n`);
      sock = await reconnectRaw(path, outcome.at.getTime() + reconnectSec * 1000, waiting.signal);
      if (!sock) {
        if (stopping) break;
        throw new CliError(`the daemon did not come back within ${reconnectSec} s (${path}); ${total} packets written`, EXIT.UNREACHABLE);
      }
      const r = resumeOf as { session: string; instance: string };
      // The descriptor is offered again: the new daemon takes its own duplicate.
      const params: CaptureStartParams = { ...startParams, resume: { session: r.session, instance: r.instance, received: total } };
      if (o.count !== undefined) params.count = Math.max(1, o.count - total);
      if (o.duration !== undefined) params.durationSec = Math.max(1, Math.ceil(o.duration - (Date.now() - t0) / 1000));
      outcome = await session(sock, params);
    }
    if (outcome.kind === 'failed') throw outcome.error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const w = out as NodeJS.WritableStream | null;
    if (w && !toStdout) await new Promise<void>((r) => (w as fs.WriteStream).end(() => r()));
    if (!toStdout) fs.closeSync(output.fd);
  }
  if (!o.quiet) process.stderr.write(`${total} packet${total === 1 ? '' : 's'} written${toStdout ? '' : ` to ${o.write}`}\n`);
}

/** Connects every 250 ms until `deadline` (ms since the epoch); null when it passed or `signal` fired. */
async function reconnectRaw(path: string, deadline: number, signal: AbortSignal): Promise<net.Socket | null> {
  while (!signal.aborted && Date.now() < deadline) {
    try {
      return await connect(path);
    } catch (err) {
      if (!(err instanceof CliError) || err.exitCode !== EXIT.UNREACHABLE) throw err;
    }
    await sleepUnless(250, signal);
  }
  return null;
}

export function captureCommand(): Command {
  return new Command('capture')
    .description('write the packets of chosen processes as pcapng (Wireshark shows the process of each packet)')
    .argument('[expression...]', 'a pcap-filter expression, as tcpdump takes it')
    .option('-p, --pid <pid>', 'a process (and its threads); repeatable', collect(pidArg))
    .option('--comm <name>', 'processes with this command name; repeatable', collect(commArg))
    .option('--user <name|uid>', "a user's processes", userArg)
    .option('--unit <unit>', 'a systemd unit (its cgroup and those below it)')
    .option('--cgroup <path>', 'a cgroup v2 path (and those below it)')
    .option('--container <id|name>', "a container's processes: its id (12+ hex digits), name, pod name, namespace/pod or pod UID")
    .option('--app <id|name>', "a desktop app's processes: its Flatpak id, snap name, .desktop id or name")
    .option('-i, --interface <name>', 'an interface; repeatable (default: every monitored interface)', collect((v: string) => v))
    .addOption(new Option('--direction <dir>', 'only packets that arrive (in) or leave (out)').argParser(choiceArg(CAPTURE_DIRECTIONS)))
    .option('-s, --snaplen <bytes>', 'bytes kept of each packet (default 262144)', intArg(1, 262144))
    .option('-c, --count <n>', 'stop after this many packets', intArg(1, 1_000_000_000))
    .option('--duration <seconds>', 'stop after this long', intArg(1, 30 * 24 * 3600))
    .option('--stats-interval <seconds>', 'statistics blocks while streaming, every this long (0: only at the end)', intArg(0, 3600))
    .option('--latency <ms>', `the longest a packet waits before it is written (default ${CAPTURE_LATENCY_MS.default}, as Wireshark's dumpcap; shorter costs the daemon more wakeups)`, intArg(CAPTURE_LATENCY_MS.min, CAPTURE_LATENCY_MS.max))
    .requiredOption('-w, --write <file>', 'the pcapng file, or - for stdout (| tshark -r -)')
    .option('-q, --quiet', 'no messages on stderr')
    .option('--stream', 'the daemon sends the pcapng over its socket and this command writes it (default: the daemon writes into the file this command opened; also EBPFMON_CAPTURE_STREAM=1)')
    .addOption(reconnectOption())
    .action((expression: string[], o: CaptureOpts, cmd: Command) => runCapture(o, expression, cmd));
}
