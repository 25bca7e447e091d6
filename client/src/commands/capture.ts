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

/** Counts Enhanced Packet Blocks in a pcapng byte stream that arrives in pieces: reads
 * each block's 8-byte head (type, length) and skips the rest; allocates only for a head
 * split between two chunks. */
class BlockCounter {
  packets = 0;
  private skip = 0; // bytes of the current block still to skip
  private partial: Buffer | null = null;

  push(chunk: Buffer): void {
    let off = 0;
    if (this.partial) {
      const joined = Buffer.concat([this.partial, chunk]);
      this.partial = null;
      return this.push(joined);
    }
    while (off < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        this.skip -= n;
        off += n;
        continue;
      }
      if (chunk.length - off < 8) {
        this.partial = Buffer.from(chunk.subarray(off));
        return;
      }
      if (chunk.readUInt32LE(off) === 6) this.packets++;
      const len = chunk.readUInt32LE(off + 4);
      this.skip = Math.max(8, len) - 8;
      off += 8;
    }
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

async function runCapture(o: CaptureOpts, expression: string[], cmd: Command): Promise<void> {
  const params = captureParams(o, expression);
  const toStdout = o.write === '-';
  const sock = await connect(socketPath(cmd));
  sock.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: METHODS.captureStart, params })}\n`);

  let buffered = Buffer.alloc(0);
  let started: CaptureStartResult | null = null;
  let out: NodeJS.WritableStream | null = null;
  const counter = new BlockCounter();
  let stopping = false;
  let failure: CliError | null = null;

  const onSignal = (): void => {
    if (!started || stopping) {
      sock.destroy();
      return;
    }
    stopping = true;
    // Any line asks the daemon to finish: it writes what it holds and the statistics, then closes.
    sock.write(`${JSON.stringify({ jsonrpc: '2.0', method: METHODS.captureStop })}\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const write = (chunk: Buffer): void => {
    counter.push(chunk);
    if (!out!.write(chunk)) {
      sock.pause();
      out!.once('drain', () => sock.resume());
    }
  };

  await new Promise<void>((resolve) => {
    sock.on('data', (chunk: Buffer) => {
      if (started) return write(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(0x0a);
      if (nl < 0) return;
      let reply: { result?: CaptureStartResult; error?: { code: number; message: string } };
      try {
        reply = JSON.parse(buffered.subarray(0, nl).toString('utf8'));
      } catch {
        failure = new CliError('the daemon answered capture.start with something that is not JSON', EXIT.DAEMON);
        sock.destroy();
        return;
      }
      if (reply.error || !reply.result) {
        failure = new CliError(reply.error?.message ?? 'capture.start failed', errorExit(reply.error?.code ?? 0));
        sock.destroy();
        return;
      }
      started = reply.result;
      out = toStdout ? process.stdout : fs.createWriteStream(o.write, { mode: 0o644 });
      if (!toStdout) (out as fs.WriteStream).on('error', (err) => {
        failure = new CliError(`cannot write ${o.write}: ${err.message}`, EXIT.USAGE);
        sock.destroy();
      });
      if (!o.quiet) {
        const on = started.interfaces.map((i) => i.name).join(', ') || 'every monitored interface';
        process.stderr.write(`capturing on ${on} (session ${started.session}, snaplen ${started.snaplen})${started.expressionMissingOn.length ? `; the expression never matches on ${started.expressionMissingOn.join(', ')}` : ''}\n`);
      }
      const rest = buffered.subarray(nl + 1);
      buffered = Buffer.alloc(0);
      if (rest.length) write(rest);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve());
  });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (failure) throw failure;
  if (!started) throw new CliError('lost the connection to the daemon before the capture started', EXIT.UNREACHABLE);
  if (out && !toStdout) await new Promise<void>((r) => (out as fs.WriteStream).end(() => r()));
  if (!o.quiet) process.stderr.write(`${counter.packets} packet${counter.packets === 1 ? '' : 's'} written${toStdout ? '' : ` to ${o.write}`}\n`);
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
    .action((expression: string[], o: CaptureOpts, cmd: Command) => runCapture(o, expression, cmd));
}
