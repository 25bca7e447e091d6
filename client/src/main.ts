#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// ebpfmonctl: the command-line client. Talks JSON-RPC to the daemon's socket; needs no
// privileges (the daemon scopes what each user sees).
import { Command, CommanderError } from 'commander';
import { CliError, EXIT, exitFlushed, quietOnBrokenPipe } from './exit.js';
import { eventsCommand } from './commands/events.js';
import { flowsCommand } from './commands/flows.js';
import { programsCommand } from './commands/programs.js';
import { statusCommand } from './commands/status.js';
import { topCommand } from './commands/top.js';
import { lbCommand } from './commands/lb.js';
import { historyCommand } from './commands/history.js';
import { dnsCommand } from './commands/dns.js';
import { httpCommand } from './commands/http.js';
import { captureCommand } from './commands/capture.js';
import { mirrorCommand } from './commands/mirror.js';
import { identityCommand } from './commands/identity.js';
import { uiCommand } from './commands/ui.js';
import { VERSION } from '../../daemon/src/version.js';

const program = new Command('ebpfmonctl')
  .description('Which process talks to whom, and how much - ask the ebpfmon daemon')
  .option('-s, --socket <path>', 'daemon socket (default $EBPFMON_SOCKET or /run/ebpfmon/ebpfmon.sock)')
  .version(VERSION)
  .showHelpAfterError()
  .exitOverride();

for (const c of [statusCommand(), flowsCommand(), eventsCommand(), topCommand(), identityCommand(), programsCommand(), lbCommand(), historyCommand(), dnsCommand(), httpCommand(), captureCommand(), mirrorCommand(), uiCommand()]) {
  program.addCommand(c.exitOverride().showHelpAfterError());
}

quietOnBrokenPipe();
program.parseAsync(process.argv).then(
  () => exitFlushed(EXIT.OK),
  (err: unknown) => {
    if (err instanceof CommanderError) {
      // help and version exit 0; usage errors have been printed by commander
      return exitFlushed(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    }
    if (err instanceof CliError) {
      process.stderr.write(`ebpfmonctl: ${err.message}\n`);
      return exitFlushed(err.exitCode);
    }
    process.stderr.write(`ebpfmonctl: ${(err as Error).stack ?? String(err)}\n`);
    return exitFlushed(EXIT.DAEMON);
  },
);
