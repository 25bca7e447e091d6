// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl capture`: packets of chosen processes as pcapng (docs/capture.md). The
// daemon answers capture.start with one JSON line, then the connection carries the pcapng
// stream (docs/api.md): this command copies those bytes to the file or stdout as they come
// (no decoding on the way; it only walks the block headers to count packets). Ctrl-C asks
// the daemon to finish (last packets and statistics, then it closes); a second Ctrl-C, a
// closed stdout or this process dying ends the session at once.
import fs from 'node:fs';
import net from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CAPTURE_DIRECTIONS, type CaptureStartParams, type CaptureStartResult } from '../../../daemon/src/contract/capture.js';
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
  interface?: string[];
  direction?: 'in' | 'out';
  snaplen?: number;
  count?: number;
  duration?: number;
  statsInterval?: number;
  write: string;
  quiet?: boolean;
  reconnect?: number;
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
    ...(o.interface?.length ? { interfaces: o.interface } : {}),
    ...(o.direction ? { direction: o.direction } : {}),
    ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
    ...(o.count !== undefined ? { count: o.count } : {}),
    ...(o.duration !== undefined ? { durationSec: o.duration } : {}),
    ...(o.statsInterval !== undefined ? { statsIntervalSec: o.statsInterval } : {}),
    ...(expr ? { expression: expr } : {}),
  };
}

/** How one connection's session ended. */
type Outcome =
  | { kind: 'done' } // stopped, count or duration reached, or ended by the daemon
  | { kind: 'lost'; at: Date } // the connection ended under a running session
  | { kind: 'failed'; error: CliError };

async function runCapture(o: CaptureOpts, expression: string[], cmd: Command): Promise<void> {
  const base = captureParams(o, expression);
  const toStdout = o.write === '-';
  const path = socketPath(cmd);
  const blocks = new BlockStream();
  const t0 = Date.now();
  let out: NodeJS.WritableStream | null = null;
  let first: CaptureStartResult | null = null;
  let sock: net.Socket | null = null;
  let live = false; // a session streams on `sock`
  let stopping = false;
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
    stopping || (o.count !== undefined && blocks.packets >= o.count) || (o.duration !== undefined && Date.now() - t0 >= o.duration * 1000 - 250);

  const openOutput = (): NodeJS.WritableStream => {
    const w = toStdout ? process.stdout : fs.createWriteStream(o.write, { mode: 0o644 });
    if (!toStdout) (w as fs.WriteStream).on('error', (err) => {
      failure = new CliError(`cannot write ${o.write}: ${err.message}`, EXIT.USAGE);
      sock?.destroy();
    });
    return w;
  };
  let failure: CliError | null = null;

  /** One connection: capture.start (or its resume), then the stream until the connection ends. */
  const session = (s: net.Socket, params: CaptureStartParams): Promise<Outcome> => new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    let started = false;
    const write = (chunk: Buffer): void => {
      for (const b of blocks.push(chunk)) {
        if (!out!.write(b)) {
          s.pause();
          out!.once('drain', () => s.resume());
        }
      }
    };
    s.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: METHODS.captureStart, params })}\n`);
    s.on('data', (chunk: Buffer) => {
      if (started) return write(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(0x0a);
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
      if (!first) {
        first = r;
        out = openOutput();
        if (!o.quiet) {
          const on = r.interfaces.map((i) => i.name).join(', ') || 'every monitored interface';
          process.stderr.write(`capturing on ${on} (session ${r.session}, snaplen ${r.snaplen})${r.expressionMissingOn.length ? `; the expression never matches on ${r.expressionMissingOn.join(', ')}` : ''}\n`);
        }
      } else if (!o.quiet) {
        process.stderr.write(`ebpfmonctl: resumed session ${r.session} with the restarted daemon (a new pcapng section; packets lost meanwhile are counted in its statistics)\n`);
      }
      resumeOf = { session: r.session, instance: r.instance, received: 0 };
      const rest = buffered.subarray(nl + 1);
      buffered = Buffer.alloc(0);
      if (rest.length) write(rest);
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      live = false;
      const torn = blocks.reset();
      if (failure) return resolve({ kind: 'failed', error: failure });
      if (!started || finished()) {
        if (!started && !params.resume) return resolve({ kind: 'failed', error: new CliError('lost the connection to the daemon before the capture started', EXIT.UNREACHABLE) });
        return resolve({ kind: 'done' });
      }
      if (torn && !o.quiet) process.stderr.write(`ebpfmonctl: dropped ${torn} bytes of a block the daemon did not finish\n`);
      resolve({ kind: 'lost', at: new Date() });
    });
  });
  let resumeOf: { session: string; instance: string; received: number } | null = null;

  try {
    sock = await connect(path);
    let outcome = await session(sock, base);
    while (outcome.kind === 'lost' && resumeOf) {
      const reconnectSec = o.reconnect ?? DEFAULT_RECONNECT_SEC;
      if (!o.quiet) process.stderr.write(`ebpfmonctl: lost the daemon at ${outcome.at.toLocaleTimeString()} with ${blocks.packets} packets written; waiting up to ${reconnectSec} s to resume the session\n`);
      sock = await reconnectRaw(path, outcome.at.getTime() + reconnectSec * 1000, waiting.signal);
      if (!sock) {
        if (stopping) break;
        throw new CliError(`the daemon did not come back within ${reconnectSec} s (${path}); ${blocks.packets} packets written`, EXIT.UNREACHABLE);
      }
      const r = resumeOf as { session: string; instance: string };
      const params: CaptureStartParams = { ...base, resume: { session: r.session, instance: r.instance, received: blocks.packets } };
      if (o.count !== undefined) params.count = Math.max(1, o.count - blocks.packets);
      if (o.duration !== undefined) params.durationSec = Math.max(1, Math.ceil(o.duration - (Date.now() - t0) / 1000));
      outcome = await session(sock, params);
    }
    if (outcome.kind === 'failed') throw outcome.error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (out && !toStdout) await new Promise<void>((r) => (out as fs.WriteStream).end(() => r()));
  }
  if (!o.quiet) process.stderr.write(`${blocks.packets} packet${blocks.packets === 1 ? '' : 's'} written${toStdout ? '' : ` to ${o.write}`}\n`);
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
    .option('-i, --interface <name>', 'an interface; repeatable (default: every monitored interface)', collect((v: string) => v))
    .addOption(new Option('--direction <dir>', 'only packets that arrive (in) or leave (out)').argParser(choiceArg(CAPTURE_DIRECTIONS)))
    .option('-s, --snaplen <bytes>', 'bytes kept of each packet (default 262144)', intArg(1, 262144))
    .option('-c, --count <n>', 'stop after this many packets', intArg(1, 1_000_000_000))
    .option('--duration <seconds>', 'stop after this long', intArg(1, 30 * 24 * 3600))
    .option('--stats-interval <seconds>', 'statistics blocks while streaming, every this long (0: only at the end)', intArg(0, 3600))
    .requiredOption('-w, --write <file>', 'the pcapng file, or - for stdout (| tshark -r -)')
    .option('-q, --quiet', 'no messages on stderr')
    .addOption(reconnectOption())
    .action((expression: string[], o: CaptureOpts, cmd: Command) => runCapture(o, expression, cmd));
}
