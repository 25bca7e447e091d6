// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl ui`: a local web page with a live map of where this machine talks to, the
// processes that talk (like `top`), their flows and events. Run by any user: it reads the
// daemon as that user, so the page shows what that user may see. Listens on 127.0.0.1 and
// ::1 only, behind a random token in the URL it prints. The work is in ../ui/run.ts, loaded
// only when this command runs (other commands do not load the web server).
import { Command, InvalidArgumentError } from 'commander';
import type { HomeLocation } from '../../../daemon/src/contract/geo.js';
import type { UiOptions } from '../ui/options.js';
import { intArg } from './common.js';
import { reconnectOption } from './follow.js';

/**
 * "LAT,LON[,NAME]", as `ui.home` in the daemon's configuration (daemon/src/config/home.ts
 * checks that one; the client reaches the daemon only through its contract, so it parses
 * its own flag).
 */
export function parseHomeArg(v: string): HomeLocation {
  const [latS = '', lonS = '', ...rest] = v.split(',');
  const num = (s: string) => (/^\s*[-+]?\d+(\.\d+)?\s*$/.test(s) ? Number(s) : NaN);
  const lat = num(latS);
  const lon = num(lonS);
  if (!(Math.abs(lat) <= 90)) throw new InvalidArgumentError('latitude must be a number from -90 to 90 (expected "LAT,LON" or "LAT,LON,NAME")');
  if (!(Math.abs(lon) <= 180)) throw new InvalidArgumentError('longitude must be a number from -180 to 180 (expected "LAT,LON" or "LAT,LON,NAME")');
  const name = rest.join(',').trim();
  return { lat, lon, name: name === '' ? null : name };
}

export function uiCommand(): Command {
  return new Command('ui')
    .description('a live map and tables in your browser, served on 127.0.0.1 and ::1 behind a random token')
    .option('--port <n>', 'port to listen on (0: any free port)', intArg(0, 65535), 0)
    .option('--open', 'open the page in the desktop browser (xdg-open)')
    .option('--home <lat,lon[,name]>', "where this machine is on the map (default: the daemon's ui.home)", parseHomeArg)
    .option('--flows <n>', 'largest flows read each second for the flow table and the hover details', intArg(100, 100_000), 2000)
    .option('--json', 'print the URLs, port and token as one JSON line instead of text')
    .addOption(reconnectOption())
    .action(async (o: UiOptions, cmd: Command) => (await import('../ui/run.js')).runUi(o, cmd));
}
