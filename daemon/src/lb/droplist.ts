// SPDX-License-Identifier: Apache-2.0
// The drop list: source prefixes (emon_lb_drop4 / emon_lb_drop6, LPM tries) and protocol
// rules (emon_lb_dproto), each with an id whose per-CPU counters live in emon_lb_dcnt. The
// maps are the source of truth: restore() rebuilds the rules (and their canonical text) from
// their keys.
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { BPF_ANY, BPF_NOEXIST } from '../bpf/uapi.js';
import { ipText, type Family } from '../net/ip.js';
import type { DropRuleInfo } from '../contract/lb.js';
import { sumRuleCtr } from './codec/counters.js';
import { decodeLpm, decodeProtoKey, encodeLpm, encodeProtoKey } from './codec/drops.js';
import { decodeU32, u32Key } from './codec/fields.js';
import { CFG, protoCfgBit } from './wire.js';
import { entries, type LbKernelMap, type LbMaps } from './kernel.js';
import { transact, type Step } from './tx.js';
import { protoRuleText, type DropRule } from './validate.js';

interface RuleState {
  rule: DropRule;
  id: number;
}

export class DropList {
  private readonly rules = new Map<string, RuleState>();

  /** `limit`: rule ids (emon_lb_dcnt entries). */
  constructor(private readonly m: LbMaps, readonly limit: number, private readonly log: Logger) {}

  get size(): number {
    return this.rules.size;
  }

  restore(): void {
    const add = (text: string, id: number, rule: DropRule) => {
      if (!this.rules.has(text)) this.rules.set(text, { rule, id });
    };
    for (const [map, family] of [[this.m.drop4, 'ipv4'], [this.m.drop6, 'ipv6']] as const) {
      for (const { key, value } of entries(map)) {
        const { addr, len } = decodeLpm(key, 0, family);
        const text = `${ipText(addr)}/${len}`;
        add(text, decodeU32(value), { kind: 'prefix', addr, len, text });
      }
    }
    for (const { key, value } of entries(this.m.dproto)) {
      const k = decodeProtoKey(key);
      if (!k) continue;
      const text = protoRuleText(k.proto, k.kind, k.value, k.family);
      const have = this.rules.get(text);
      if (have && have.rule.kind === 'proto') {
        if (!have.rule.families.includes(k.family)) have.rule.families.push(k.family);
        continue;
      }
      add(text, decodeU32(value), { kind: 'proto', families: [k.family], proto: k.proto, match: k.kind, value: k.value, text });
    }
  }

  /** emon_lb_config flags: which tables the data path must consult. */
  cfgFlags(): number {
    let flags = 0;
    for (const { rule } of this.rules.values()) {
      if (rule.kind === 'prefix') flags |= rule.addr.family === 'ipv4' ? CFG.drop4 : CFG.drop6;
      else flags |= protoCfgBit(rule.proto);
    }
    return flags;
  }

  private keys(rule: DropRule): Array<{ map: LbKernelMap; key: Buffer }> {
    if (rule.kind === 'prefix') return [{ map: rule.addr.family === 'ipv4' ? this.m.drop4 : this.m.drop6, key: encodeLpm(rule.addr, rule.len) }];
    return rule.families.map((family: Family) => ({ map: this.m.dproto, key: encodeProtoKey({ family, proto: rule.proto, kind: rule.match, value: rule.value }) }));
  }

  private info(r: RuleState): DropRuleInfo {
    const v = this.m.dcnt.lookup(u32Key(r.id));
    return { rule: r.rule.text, id: r.id, ...(v ? sumRuleCtr(v) : { packets: 0, bytes: 0 }) };
  }

  list(): DropRuleInfo[] {
    return [...this.rules.values()].map((r) => this.info(r)).sort((a, b) => a.id - b.id);
  }

  /** Adds a rule; `writeConfig` publishes the new flags. Nothing changes if it throws. */
  add(rule: DropRule, raw: unknown, writeConfig: () => void): DropRuleInfo {
    if (this.rules.has(rule.text)) throw new AppError('DropRuleExists', `drop rule ${rule.text} already exists`, { field: 'params.rule', value: raw });
    const used = new Set([...this.rules.values()].map((r) => r.id));
    let id = -1;
    for (let i = 0; i < this.limit; i++) {
      if (!used.has(i)) {
        id = i;
        break;
      }
    }
    // Each map has its own capacity (a tcp:PORT rule takes one entry per family).
    const need = new Map<LbKernelMap, number>();
    for (const { map } of [...[...this.rules.values()].flatMap((r) => this.keys(r.rule)), ...this.keys(rule)]) need.set(map, (need.get(map) ?? 0) + 1);
    const over = [...need].find(([map, n]) => n > map.maxEntries);
    if (id < 0 || over) {
      throw new AppError('InvalidParams', `the drop list is full (${this.rules.size} rules${over ? `; ${over[0].name} holds ${over[0].maxEntries} entries` : ''})`, { field: 'params.rule', value: raw, limit: this.limit });
    }
    const idv = u32Key(id);
    const dcnt = this.m.dcnt;
    const steps: Step[] = [() => dcnt.update(idv, Buffer.alloc(dcnt.valueBytes), BPF_ANY)];
    for (const { map, key } of this.keys(rule)) {
      steps.push(() => {
        map.update(key, idv, BPF_NOEXIST);
        return () => void map.delete(key);
      });
    }
    steps.push(() => {
      this.rules.set(rule.text, { rule, id });
      try {
        writeConfig();
      } catch (err) {
        this.rules.delete(rule.text);
        throw err;
      }
    });
    transact(this.log, `adding drop rule ${rule.text}`, steps);
    return { rule: rule.text, id, packets: 0, bytes: 0 };
  }

  /** Removes a rule; returns it with its last counters. Nothing changes if it throws. */
  remove(rule: DropRule, raw: unknown, writeConfig: () => void): DropRuleInfo {
    const r = this.rules.get(rule.text);
    if (!r) throw new AppError('UnknownDropRule', `no drop rule ${rule.text}`, { field: 'params.rule', value: raw });
    const info = this.info(r);
    const idv = u32Key(r.id);
    transact(this.log, `removing drop rule ${rule.text}`, [
      ...this.keys(r.rule).map(({ map, key }) => () => {
        map.delete(key);
        return () => map.update(key, idv, BPF_ANY);
      }),
      () => {
        this.rules.delete(rule.text);
        try {
          writeConfig();
        } catch (err) {
          this.rules.set(rule.text, r);
          throw err;
        }
      },
    ]);
    return info;
  }
}
