#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// ebpfmon-widget: the apps talking most right now, from ebpfmon's D-Bus API - what a
// desktop panel applet does, in a terminal. It asks GetTopTalkers once, calls Subscribe,
// and redraws in place from BandwidthChanged (at most once a second) and
// ProcessStarted/ProcessStopped; when the daemon restarts it subscribes again. Needs no
// privileges: the daemon shows a user its own processes (everyone's to root and the
// ebpfmon group). docs/dbus.md.
//
//   ebpfmon-widget [--address ADDR] [--limit N] [--once] [--json]
import type { EventEmitter } from 'node:events';
import { Command, CommanderError } from 'commander';
import dbus, { type Message, type MessageBus, type Variant } from 'dbus-next';
import { BUS_NAME, FDO, FDO_ERROR, MANAGER_IFACE, MANAGER_METHOD, MANAGER_PATH, MANAGER_SIGNAL } from '../../../daemon/src/contract/dbus.js';
import { ERRORS } from '../../../daemon/src/contract/errors.js';
import { VERSION } from '../../../daemon/src/version.js';
import { intArg } from '../commands/common.js';
import { CliError, EXIT, exitFlushed, quietOnBrokenPipe } from '../exit.js';
import { bytes, rate, userName } from '../render/format.js';
import { renderTable } from '../render/table.js';

/** One row of GetTopTalkers / BandwidthChanged, variants unwrapped. */
interface TopRow {
  pid?: number;
  comm?: string;
  uid?: number;
  txBytesPerSec: number;
  rxBytesPerSec: number;
  txBytes: number;
  rxBytes: number;
}

interface WidgetEvent {
  time: string;
  kind: 'started' | 'stopped';
  pid: number;
  comm: string;
  uid: number;
  txBytes?: number;
  rxBytes?: number;
}

interface Frame {
  version: string;
  seesAll: boolean;
  top: TopRow[];
  events: WidgetEvent[];
  note: string | null;
}

const RECENT_EVENTS = 5;
/** BandwidthChanged carries the daemon's top 10; a longer list is asked for. */
const SIGNAL_TOP = 10;
const CALL_TIMEOUT_MS = 10_000;

function unwrap(d: Record<string, Variant>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, typeof v.value === 'bigint' ? Number(v.value) : v.value]));
}

function rows(list: unknown): TopRow[] {
  return (list as Array<Record<string, Variant>>).map((d) => {
    const o = unwrap(d);
    return {
      pid: o.pid as number | undefined, comm: o.comm as string | undefined, uid: o.uid as number | undefined,
      txBytesPerSec: (o.txBytesPerSec as number) ?? 0, rxBytesPerSec: (o.rxBytesPerSec as number) ?? 0,
      txBytes: (o.txBytes as number) ?? 0, rxBytes: (o.rxBytes as number) ?? 0,
    };
  });
}

function renderFrame(f: Frame, width = process.stdout.columns || 100): string {
  const scope = f.seesAll ? 'all users' : `${userName(process.getuid?.() ?? null)}'s processes`;
  const lines = [`ebpfmon ${f.version} - top talkers - ${scope} - ${new Date().toLocaleTimeString()}`, ''];
  if (f.note) lines.push(f.note, '');
  if (f.top.length === 0) lines.push('(no traffic yet)');
  else {
    lines.push(renderTable(f.top, [
      { header: 'PID', value: (r) => (r.pid === undefined ? '-' : String(r.pid)), align: 'right' },
      { header: 'USER', value: (r) => userName(r.uid ?? null) },
      { header: 'PROGRAM', value: (r) => r.comm ?? '(unknown process)', flex: true },
      { header: 'SENT/s', value: (r) => rate(r.txBytesPerSec), align: 'right' },
      { header: 'RECV/s', value: (r) => rate(r.rxBytesPerSec), align: 'right' },
      { header: 'SENT', value: (r) => bytes(r.txBytes), align: 'right' },
      { header: 'RECV', value: (r) => bytes(r.rxBytes), align: 'right' },
    ], width));
  }
  if (f.events.length > 0) {
    lines.push('', 'recent:');
    for (const e of f.events) {
      const who = `${e.comm} (pid ${e.pid}, ${userName(e.uid)})`;
      lines.push(e.kind === 'started'
        ? `  ${e.time}  + ${who} started talking`
        : `  ${e.time}  - ${who} stopped: sent ${bytes(e.txBytes ?? 0)}, received ${bytes(e.rxBytes ?? 0)}`);
    }
  }
  return lines.join('\n');
}

function failure(err: unknown, what: string): CliError {
  const e = err as { type?: string; text?: string; message?: string };
  const text = e.text ?? e.message ?? String(err);
  if (e.type === FDO_ERROR.ServiceUnknown || e.type === FDO_ERROR.NameHasNoOwner) return new CliError(`ebpfmon is not running on this bus (no ${BUS_NAME})`, EXIT.UNREACHABLE);
  if (e.type === FDO_ERROR.AccessDenied || e.type === ERRORS.PermissionDenied.dbus) return new CliError(`${what}: ${text}`, EXIT.PERMISSION);
  return new CliError(`${what}: ${text}`, EXIT.DAEMON);
}

async function connect(address: string | undefined): Promise<MessageBus> {
  const bus = address ? dbus.sessionBus({ busAddress: address }) : dbus.systemBus();
  const where = address ?? 'the system bus';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new CliError(`cannot connect to ${where}: no answer`, EXIT.UNREACHABLE)), CALL_TIMEOUT_MS);
    bus.once('connect', () => {
      clearTimeout(t);
      resolve();
    });
    bus.once('error', (err: Error) => {
      clearTimeout(t);
      reject(new CliError(`cannot connect to ${where}: ${err.message}`, EXIT.UNREACHABLE));
    });
  });
  bus.on('error', () => undefined);
  return bus;
}

async function call(bus: MessageBus, dest: string, path: string, iface: string, member: string, signature = '', body: unknown[] = []): Promise<unknown[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CliError(`${member}: no answer in ${CALL_TIMEOUT_MS / 1000} s`, EXIT.DAEMON)), CALL_TIMEOUT_MS);
  });
  try {
    const reply = await Promise.race([bus.call(new dbus.Message({ destination: dest, path, interface: iface, member, signature, body })), timeout]);
    return reply?.body ?? [];
  } catch (err) {
    throw err instanceof CliError ? err : failure(err, member);
  } finally {
    clearTimeout(timer);
  }
}

const manager = (bus: MessageBus, member: string, signature = '', body: unknown[] = []) => call(bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, member, signature, body);

async function run(o: { address?: string; limit: number; once?: boolean; json?: boolean }): Promise<void> {
  const bus = await connect(o.address);
  const frame: Frame = { version: '', seesAll: false, top: [], events: [], note: null };
  const draw = () => {
    if (o.json) process.stdout.write(`${JSON.stringify({ seesAll: frame.seesAll, top: frame.top, events: frame.events, note: frame.note })}\n`);
    // In a terminal: home, the frame with each line cleared to its end, then clear below.
    else if (process.stdout.isTTY && !o.once) process.stdout.write(`\x1b[H${renderFrame(frame).split('\n').join('\x1b[K\n')}\x1b[K\n\x1b[J`);
    else process.stdout.write(`${renderFrame(frame)}\n\n`);
  };
  const refresh = async () => {
    const [props] = await call(bus, BUS_NAME, MANAGER_PATH, FDO.properties, 'GetAll', 's', [MANAGER_IFACE]);
    const p = unwrap(props as Record<string, Variant>);
    frame.version = p.Version as string;
    frame.seesAll = p.SeesAllUsers as boolean;
    frame.top = rows((await manager(bus, MANAGER_METHOD.GetTopTalkers, 'u', [o.limit]))[0]);
  };

  if (o.once) {
    try {
      await refresh();
      draw();
    } finally {
      bus.disconnect();
    }
    return;
  }

  // dbus-next reports a closed bus connection only on its internal connection object.
  (bus as unknown as { _connection: EventEmitter })._connection.once('end', () => {
    process.stderr.write('ebpfmon-widget: lost the connection to the bus\n');
    void exitFlushed(EXIT.UNREACHABLE);
  });
  let owner = (await call(bus, FDO.name, FDO.path, FDO.iface, 'GetNameOwner', 's', [BUS_NAME]))[0] as string;
  const pushEvent = (e: WidgetEvent) => {
    frame.events.push(e);
    if (frame.events.length > RECENT_EVENTS) frame.events.shift();
  };
  bus.on('message', (m: Message) => {
    if (m.type !== dbus.MessageType.SIGNAL) return;
    if (m.sender === FDO.name && m.member === 'NameOwnerChanged' && m.body[0] === BUS_NAME) {
      owner = m.body[2] as string;
      if (!owner) {
        frame.note = 'ebpfmon stopped; waiting for it to come back';
        draw();
        return;
      }
      // A new daemon: subscriptions do not survive it.
      frame.note = null;
      void manager(bus, MANAGER_METHOD.Subscribe).then(refresh).then(draw, (err: Error) => {
        frame.note = `ebpfmon restarted but cannot be followed: ${err.message}`;
        draw();
      });
      return;
    }
    if (m.sender !== owner || m.path !== MANAGER_PATH || m.interface !== MANAGER_IFACE) return;
    const time = new Date().toLocaleTimeString();
    switch (m.member) {
      case MANAGER_SIGNAL.BandwidthChanged:
        if (o.limit <= SIGNAL_TOP) {
          frame.top = rows(m.body[0]).slice(0, o.limit);
          draw();
        } else {
          void manager(bus, MANAGER_METHOD.GetTopTalkers, 'u', [o.limit]).then(([top]) => {
            frame.top = rows(top);
            draw();
          }, () => undefined);
        }
        break;
      case MANAGER_SIGNAL.ProcessStarted: {
        const [pid, comm, uid] = m.body as [number, string, number];
        pushEvent({ time, kind: 'started', pid, comm, uid });
        draw();
        break;
      }
      case MANAGER_SIGNAL.ProcessStopped: {
        const [pid, comm, uid, tx, rx] = m.body as [number, string, number, bigint, bigint];
        pushEvent({ time, kind: 'stopped', pid, comm, uid, txBytes: Number(tx), rxBytes: Number(rx) });
        draw();
        break;
      }
    }
  });
  await call(bus, FDO.name, FDO.path, FDO.iface, 'AddMatch', 's', [`type='signal',sender='${FDO.name}',interface='${FDO.iface}',member='NameOwnerChanged',arg0='${BUS_NAME}'`]);
  await manager(bus, MANAGER_METHOD.Subscribe);
  await refresh();
  draw();

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  // Disconnecting unsubscribes too; saying so is polite and quick.
  await manager(bus, MANAGER_METHOD.Unsubscribe).catch(() => undefined);
  bus.disconnect();
}

const program = new Command('ebpfmon-widget')
  .description('the apps talking most right now, live from ebpfmon on D-Bus')
  .option('--address <address>', 'D-Bus address of the bus (default: the system bus)')
  .option('--limit <n>', 'rows to show', intArg(1, 1000), 10)
  .option('--once', 'print one frame and exit')
  .option('--json', 'one JSON object per frame instead of a table')
  .version(VERSION)
  .showHelpAfterError()
  .exitOverride();

quietOnBrokenPipe();
program.parseAsync(process.argv).then(
  async () => {
    await run(program.opts<{ address?: string; limit: number; once?: boolean; json?: boolean }>());
    await exitFlushed(EXIT.OK);
  },
  (err: unknown) => {
    if (err instanceof CommanderError) return exitFlushed(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    throw err;
  },
).catch((err: unknown) => {
  if (err instanceof CliError) {
    process.stderr.write(`ebpfmon-widget: ${err.message}\n`);
    return exitFlushed(err.exitCode);
  }
  process.stderr.write(`ebpfmon-widget: ${(err as Error).stack ?? String(err)}\n`);
  return exitFlushed(EXIT.DAEMON);
});
