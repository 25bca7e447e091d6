// SPDX-License-Identifier: Apache-2.0
// The options of `ebpfmonctl ui` (parsed in commands/ui.ts, used by run.ts): here so that
// the command and the code it loads on demand do not import each other.
import type { HomeLocation } from '../../../daemon/src/contract/geo.js';

export interface UiOptions {
  port: number;
  open?: boolean;
  home?: HomeLocation;
  flows: number;
  json?: boolean;
  reconnect: number;
}
