// SPDX-License-Identifier: Apache-2.0
// What `ebpfmonctl ui` does once its options are parsed (commands/ui.ts): asks the daemon
// (as this user) for its geo settings, serves the page, and follows the daemon through
// restarts (follow.ts) until Ctrl-C.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { METHODS } from '../../../daemon/src/contract/methods.js';
import { VERSION } from '../../../daemon/src/version.js';
import { socketPath } from '../commands/common.js';
import { follow } from '../commands/follow.js';
import { CliError, EXIT } from '../exit.js';
import { userName } from '../render/format.js';
import { DaemonClient } from '../rpc.js';
import { LiveModel } from './model.js';
import type { UiOptions } from './options.js';
import { startUiServer } from './server.js';

export async function runUi(o: UiOptions, cmd: Command): Promise<void> {
  // Fail early, with the CLI's usual message, when the daemon is not there.
  const first = await DaemonClient.connect(socketPath(cmd));
  const status = await first.call(METHODS.status);
  first.close();
  const geo = status.geo;
  const uid = process.getuid?.() ?? -1;
  const model = new LiveModel({ poolSize: o.flows });
  const server = await startUiServer({
    model,
    port: o.port,
    hello: {
      version: status.version,
      user: { uid, name: userName(uid) },
      home: o.home ?? geo.home,
      attributions: geo.databases.flatMap((d) => (d.attribution ? [d.attribution] : [])),
      databases: geo.databases.map((d) => ({ source: d.source, databaseType: d.databaseType })),
      geoOff: geo.enabled ? null : geo.error ?? 'geo.enabled is false in the daemon\'s configuration',
    },
  }).catch((err: Error) => {
    throw new CliError(`cannot serve the page: ${err.message}`, (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? EXIT.USAGE : EXIT.DAEMON);
  });
  if (o.json) process.stdout.write(`${JSON.stringify({ urls: server.urls, port: server.port, token: server.token, pid: process.pid, version: VERSION })}\n`);
  else process.stdout.write(`ebpfmon ui for ${userName(uid)}: open\n${server.urls.map((u) => `  ${u}`).join('\n')}\nCtrl-C stops it.\n`);
  if (o.open) {
    const child = spawn('xdg-open', [server.urls[0]!], { detached: true, stdio: 'ignore' });
    child.on('error', (err) => process.stderr.write(`ebpfmonctl: cannot start a browser with xdg-open (${err.message}); open the URL above yourself\n`));
    child.unref();
  }
  try {
    await follow(cmd, {
      reconnectSec: o.reconnect,
      onGap: (gap) => model.setStatus(true, `reconnected; the daemon was away for ${((gap.until.getTime() - gap.since.getTime()) / 1000).toFixed(1)} s`),
    }, async ({ client, signal }) => {
      try {
        await model.session(client, signal);
      } catch (err) {
        // Pages say so at once; follow() reconnects (or gives up after --reconnect).
        model.setStatus(false, (err as Error).message);
        throw err;
      }
    });
  } finally {
    model.stop();
    await server.close();
  }
}
