// SPDX-License-Identifier: Apache-2.0
// Loading the configuration: defaults, then the JSON file, then EBPFMON_* variables.
// A missing default file is fine; a missing named file, a malformed file, an unknown key
// or a bad value is a ConfigError whose lines each name the key, the value and what was
// expected.
import fs from 'node:fs';
import { makeConfig, type Config } from './schema.js';

export const DEFAULT_CONFIG_FILE = '/etc/ebpfmon/ebpfmon.json';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): { config: Config; file: string | null } {
  const cfg = makeConfig();
  const file = opts.file ?? DEFAULT_CONFIG_FILE;
  let used: string | null = null;
  if (fs.existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${file}: must contain a JSON object`);
    try {
      cfg.load(parsed as object);
    } catch (err) {
      throw new ConfigError(`${file}: ${(err as Error).message}`);
    }
    used = file;
  } else if (opts.file !== undefined) {
    throw new ConfigError(`${file}: no such configuration file`);
  }
  // Environment overrides, applied by hand so that the caller's env (tests) is honoured.
  const env = opts.env ?? process.env;
  const fromEnv = new Map<string, string>();
  for (const [name, key] of collectEnv(cfg.getSchema() as unknown as SchemaNode)) {
    const v = env[name];
    if (v === undefined) continue;
    cfg.set(key, v);
    fromEnv.set(key, name);
  }
  try {
    cfg.validate({ allowed: 'strict', output: () => undefined });
  } catch (err) {
    const lines = (err as Error).message.split('\n').map((l) => {
      const key = l.slice(0, l.indexOf(':'));
      const text = l.replace(/: value was /, ': got ');
      const envName = fromEnv.get(key);
      return envName ? `environment ${envName} (${text})` : `${used ?? 'configuration'}: ${text}`;
    });
    throw new ConfigError(lines.join('\n'));
  }
  return { config: cfg.getProperties(), file: used };
}

interface SchemaNode {
  _cvtProperties?: Record<string, SchemaNode>;
  env?: string;
  format?: unknown;
  _format?: unknown;
}

function collectEnv(node: SchemaNode, prefix = ''): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, child] of Object.entries(node._cvtProperties ?? {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (child._cvtProperties) out.push(...collectEnv(child, key));
    else if (child.env) out.push([child.env, key]);
  }
  return out;
}
