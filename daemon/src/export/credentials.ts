// SPDX-License-Identifier: Apache-2.0
// The ClickHouse credentials file (`export.clickhouse.credentialsFile`): "USER:PASSWORD" on
// its first line, read at start and again when the server refuses the credentials.
import fs from 'node:fs';
import { ExportConfigError } from './errors.js';

/** "USER:PASSWORD" from the first line of the credentials file (the password may contain ':'). */
export function readCredentials(file: string): { user: string; password: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ExportConfigError(`export.clickhouse.credentialsFile: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const line = text.split('\n')[0]!.replace(/\r$/, '');
  const i = line.indexOf(':');
  if (i <= 0) throw new ExportConfigError(`export.clickhouse.credentialsFile: ${file} must hold "USER:PASSWORD" on its first line`);
  return { user: line.slice(0, i), password: line.slice(i + 1) };
}
