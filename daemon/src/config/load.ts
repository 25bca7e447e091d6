// SPDX-License-Identifier: Apache-2.0
// Loading the configuration: defaults, then the JSON file, then EBPFMON_* variables.
// A missing default file is fine; a missing named file, a malformed file, an unknown key
// or a bad value is a ConfigError whose lines each name the key, the value and what was
// expected.
import fs from 'node:fs';
import { FORMATS, makeConfig, schema, type Config } from './schema.js';

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
    const shape = shapeErrors(parsed as Record<string, unknown>);
    if (shape.length) throw new ConfigError(shape.map((l) => `${file}: ${l}`).join('\n'));
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
  for (const [name, key] of collectEnv()) {
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

/** A key of the schema (schema.ts): a leaf has a `doc` and a `format`; anything else is a group. */
type SchemaNode = { doc: string; format: unknown; env?: string } | { [k: string]: SchemaNode };

const isLeaf = (n: SchemaNode): n is { doc: string; format: unknown; env?: string } => typeof (n as { doc?: unknown }).doc === 'string' && 'format' in n;

/** What JSON.parse leaves of a number too large for a double ("1e309"). */
const describe = (v: unknown): string => (typeof v === 'number' && !Number.isFinite(v) ? 'a number too large to represent' : JSON.stringify(v));

/** What a list key's own format says it wants (its message names the items), else "a list". */
function listMessage(format: unknown): string {
  const own = typeof format === 'string' ? FORMATS[format] : undefined;
  if (own) {
    try {
      own.validate(undefined);
    } catch (e) {
      return (e as Error).message;
    }
  }
  return 'must be a list (JSON array)';
}

/**
 * The file's structure against the schema, before convict sees it: convict reports a group
 * given a scalar once per child ("did you override its parent?"), says "got null" for
 * 1e309, accepts `__proto__` and turns an object given for a list into nothing.
 * One line per problem, each naming the key.
 */
export function shapeErrors(value: Record<string, unknown>, node: SchemaNode = schema as unknown as SchemaNode, prefix = ''): string[] {
  const out: string[] = [];
  const known = Object.keys(node);
  for (const k of Object.keys(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const v = value[k];
    if (!Object.hasOwn(node, k)) {
      out.push(`${key}: unknown key (known${prefix ? ` in ${prefix}` : ''}: ${known.join(', ')})`);
      continue;
    }
    const child = (node as Record<string, SchemaNode>)[k]!;
    if (isLeaf(child)) {
      const def = (child as { default?: unknown }).default;
      if (typeof v === 'number' && !Number.isFinite(v)) out.push(`${key}: must be a finite number: got ${describe(v)}`);
      else if (Array.isArray(def) && !Array.isArray(v)) out.push(`${key}: ${listMessage(child.format)}: got ${describe(v)}`);
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      out.push(`${key}: must be an object with the keys ${Object.keys(child).join(', ')}: got ${describe(v)}`);
      continue;
    }
    out.push(...shapeErrors(v as Record<string, unknown>, child, key));
  }
  return out;
}

/** Every [environment variable, key] of the schema (our own object, not convict's internals). */
export function collectEnv(node: SchemaNode = schema as unknown as SchemaNode, prefix = ''): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, child] of Object.entries(node)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const c = child as SchemaNode;
    if (isLeaf(c)) {
      if (c.env) out.push([c.env, key]);
    } else out.push(...collectEnv(c, key));
  }
  return out;
}
