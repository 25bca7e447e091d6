// SPDX-License-Identifier: Apache-2.0
// ebpfmon's contract: every shape and name its interfaces (JSON-RPC, D-Bus, CLI --json)
// expose, as types and constants only. It imports nothing outside this directory; the
// daemon, its adapters and the client import it (test/unit/architecture.test.ts checks).
export * from './common.js';
export * from './flows.js';
export * from './events.js';
export * from './status.js';
export * from './identity.js';
export * from './lb.js';
export * from './history.js';
export * from './l7.js';
export * from './capture.js';
export * from './export.js';
export * from './geo.js';
export * from './errors.js';
export * from './methods.js';
export * as dbusApi from './dbus.js';
