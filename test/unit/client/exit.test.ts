// SPDX-License-Identifier: Apache-2.0
// CliError across two copies of its module: the bundled client (client/bundle.mjs) and the
// compiled tree that `ebpfmonctl ui` imports its server from each have one, and main's
// `instanceof CliError` must recognise an error from either; a subclass's instanceof
// (ConnectionLost, which follow.ts reconnects on) must still test the class.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError, EXIT } from '../../../client/src/exit.js';
import type * as ExitModule from '../../../client/src/exit.js';
import { ConnectionLost } from '../../../client/src/rpc.js';

test('a CliError from another copy of the module is a CliError; a plain CliError is not a ConnectionLost', async () => {
  const other = (await import(new URL('../../../client/src/exit.js?another-copy', import.meta.url).href)) as typeof ExitModule;
  assert.notEqual(other.CliError, CliError, 'two copies of the module');
  const theirs = new other.CliError('from the other copy', EXIT.UNREACHABLE);
  assert.ok(theirs instanceof CliError, 'recognised across copies');
  assert.ok(new CliError('ours', EXIT.USAGE) instanceof other.CliError);
  assert.ok(!(new Error('plain') instanceof CliError), 'not any error');
  assert.ok(!((null as unknown) instanceof CliError) && !(('text' as unknown) instanceof CliError));
  const lost = new ConnectionLost('reset');
  assert.ok(lost instanceof ConnectionLost && lost instanceof CliError);
  assert.ok(!(new CliError('unreachable', EXIT.UNREACHABLE) instanceof ConnectionLost), 'a subclass keeps its class test');
  assert.ok(!(theirs instanceof ConnectionLost));
});
