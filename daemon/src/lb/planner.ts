// SPDX-License-Identifier: Apache-2.0
// The declared configuration (lb.vips in the configuration file) against the running one:
// which declared VIPs to add, which to update, which to leave alone, and which conflict.
// A declaration applied once is not re-applied while it stays the same (its hash is kept
// in the VIP's settings), so live changes (a removed backend, a drain) survive restarts;
// when the declaration changes, its new backends and weights are applied. A change of mode
// or interface is a conflict: it needs `lb vip remove` first. Pure: the manager carries
// the plan out.
import crypto from 'node:crypto';
import { invalidParam } from '../errors.js';
import type { DeclaredVip } from '../contract/lb.js';
import type { BackendState, VipState } from './state.js';
import {
  objectParam, parseBackend, parseHealth, parseIfname, parseMode, parseVip, parseWeight,
  type BackendSpec, type HealthSpec, type VipSpec,
} from './validate.js';
import type { LbMode } from './wire.js';

export interface DeclaredPlan {
  spec: VipSpec;
  mode: LbMode;
  ifname: string | null;
  health: HealthSpec | null;
  backends: Array<{ spec: BackendSpec; weight: number }>;
  /** Hash of the normalized declaration (never 0: 0 marks a VIP added live). */
  hash: bigint;
}

const DECLARATION_KEYS = ['vip', 'mode', 'interface', 'health', 'backends'];

/**
 * Validates every declaration (InvalidParams names the entry: `lb.vips[1].backends[0].weight`).
 * `ebpfmon --check-config`, the start and a reload all run it, so a declaration the daemon
 * would refuse is a configuration error (exit 2).
 */
export function parseDeclarations(declared: DeclaredVip[] | unknown): DeclaredPlan[] {
  if (!Array.isArray(declared)) throw invalidParam('lb.vips', declared, 'a list of VIP declarations');
  const texts = new Set<string>();
  const plans = declared.map((d, i) => {
    const f = `lb.vips[${i}]`;
    const p = objectParam(d, '{ vip, mode?, interface?, health?, backends? }', f);
    const unknown = Object.keys(p).find((k) => !DECLARATION_KEYS.includes(k));
    if (unknown !== undefined) throw invalidParam(`${f}.${unknown}`, p[unknown], `one of the keys ${DECLARATION_KEYS.join(', ')}`);
    const spec = parseVip(`${f}.vip`, p.vip);
    const mode = parseMode(`${f}.mode`, p.mode);
    const ifname = parseIfname(`${f}.interface`, p.interface);
    const health = parseHealth(`${f}.health`, p.health);
    const list = p.backends === undefined ? [] : p.backends;
    if (!Array.isArray(list)) throw invalidParam(`${f}.backends`, list, 'a list of { backend, weight? }');
    const seen = new Set<string>();
    const backends = list.map((b: unknown, j: number) => {
      const q = objectParam(b, '{ backend, weight? }', `${f}.backends[${j}]`);
      const bs = parseBackend(`${f}.backends[${j}].backend`, q.backend, spec);
      if (seen.has(bs.text)) throw invalidParam(`${f}.backends[${j}].backend`, q.backend, `a backend not already listed for ${spec.text}`);
      seen.add(bs.text);
      return { spec: bs, weight: parseWeight(`${f}.backends[${j}].weight`, q.weight) };
    });
    const norm = JSON.stringify({ vip: spec.text, mode, ifname, health, backends: backends.map((b) => [b.spec.text, b.weight]) });
    // eslint-disable-next-line no-restricted-syntax -- the first word of a digest, not a kernel struct
    const hash = crypto.createHash('sha256').update(norm).digest().readBigUInt64LE(0) || 1n;
    return { plan: { spec, mode, ifname, health, backends, hash }, vip: p.vip };
  });
  plans.forEach(({ plan, vip }, i) => {
    if (texts.has(plan.spec.text)) throw invalidParam(`lb.vips[${i}].vip`, vip, 'a VIP declared once');
    texts.add(plan.spec.text);
  });
  return plans.map((x) => x.plan);
}

/** One change to an existing VIP's backends, in declaration order. */
export type BackendChange =
  | { kind: 'add'; backend: string; weight: number }
  | { kind: 'weight'; backend: BackendState; weight: number };

export type VipDecision =
  | { action: 'add' }
  | { action: 'unchanged' }
  | { action: 'conflict'; detail: string }
  | { action: 'update'; vip: VipState; changes: BackendChange[] };

/** What applying `plan` means for the running VIP (undefined: none of that name). */
export function decide(existing: VipState | undefined, plan: DeclaredPlan): VipDecision {
  if (!existing) return { action: 'add' };
  if (existing.declHash === plan.hash) return { action: 'unchanged' };
  const conflicts: string[] = [];
  if (existing.mode !== plan.mode) conflicts.push(`mode is ${existing.mode}, declared ${plan.mode}`);
  if (existing.ifname !== (plan.ifname ?? '')) conflicts.push(`interface is ${existing.ifname || '(defaults)'}, declared ${plan.ifname ?? '(defaults)'}`);
  if (conflicts.length) return { action: 'conflict', detail: `${conflicts.join('; ')}: remove the VIP to apply the declaration` };
  const changes = plan.backends.map((b): BackendChange => {
    const have = existing.backends.get(b.spec.text);
    return have ? { kind: 'weight', backend: have, weight: b.weight } : { kind: 'add', backend: b.spec.text, weight: b.weight };
  });
  return { action: 'update', vip: existing, changes };
}
