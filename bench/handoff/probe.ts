// SPDX-License-Identifier: Apache-2.0
// The handoff probes held by one process, unpinned, for bench/handoff: loads
// bpf/handoff.bpf.o against a running daemon's pinned maps with the hook asked for and keeps
// the links in this process (they go away with it), so one run measures every alternative
// side by side. The daemon deploys HANDOFF_COMPONENT (monitor/components.ts) through
// Deployment instead, pinned like every other component; the bench runs it with the
// handoff probes disabled (probes.disable) so that only these are attached.
import fs from 'node:fs';
import path from 'node:path';
import * as L from '../../daemon/src/bpf/libbpf.js';
import { BpfError } from '../../daemon/src/bpf/errors.js';
import { BpfObject } from '../../daemon/src/bpf/object.js';
import { BpfMap } from '../../daemon/src/bpf/maps.js';
import { progInfo, type ProgInfo } from '../../daemon/src/bpf/info.js';
import { lastErrno } from '../../daemon/src/sys/libc.js';
import { ERRNO } from '../../daemon/src/sys/errno.js';
import { HANDOFF_COMPONENT, MAP, PROG } from '../../daemon/src/monitor/components.js';
import { handoffCounters, readHandoffs, type HandoffRecord } from '../../daemon/src/monitor/handoff.js';
import type { HandoffCounterName } from '../../daemon/src/contract/identity.js';

const OBJECT_FILE = HANDOFF_COMPONENT.file;
const HANDOFF_PROG = {
  btfSend: PROG.handoffBtfSend, btfRecv: PROG.handoffBtfRecv, fexit: PROG.handoffFexit, tpSend: PROG.handoffTpSend, tpRecv: PROG.handoffTpRecv,
} as const;

export type HandoffHook = 'tp-btf' | 'fexit' | 'tracepoint';

/** Tried in this order when no hook is asked for (the first the kernel accepts wins). */
export const HOOK_ORDER: readonly HandoffHook[] = ['tp-btf', 'fexit', 'tracepoint'];

const PROGS: Record<HandoffHook, readonly string[]> = {
  'tp-btf': [HANDOFF_PROG.btfSend, HANDOFF_PROG.btfRecv],
  fexit: HANDOFF_PROG.fexit,
  tracepoint: [HANDOFF_PROG.tpSend, HANDOFF_PROG.tpRecv],
};

export interface HandoffProbeOptions {
  /** The monitor's pin directory: its maps/ are reused (the daemon's pinPath). */
  pinPath: string;
  objectDir: string;
  /** Which send/receive hook; default: the first of HOOK_ORDER that loads and attaches. */
  hook?: HandoffHook;
}

export class HandoffProbe {
  private readonly links: L.Ptr[] = [];

  private constructor(private readonly obj: BpfObject, readonly hook: HandoffHook) {}

  static attach(opts: HandoffProbeOptions): HandoffProbe {
    const mapsDir = path.join(opts.pinPath, 'maps');
    if (!fs.existsSync(path.join(mapsDir, 'emon_owners'))) {
      throw new BpfError('opening', OBJECT_FILE, ERRNO.ENOENT, { target: mapsDir, detail: 'no pinned monitor maps (is the daemon running with this pinPath?)' });
    }
    const hooks = opts.hook ? [opts.hook] : HOOK_ORDER;
    const failures: string[] = [];
    for (const hook of hooks) {
      try {
        return HandoffProbe.attachWith(opts, mapsDir, hook);
      } catch (e) {
        if (!(e instanceof BpfError) || hooks.length === 1) throw e;
        failures.push(`${hook}: ${e.message}`);
      }
    }
    throw new BpfError('attaching', OBJECT_FILE, ERRNO.ENOTSUP, { detail: failures.join('; ') });
  }

  private static attachWith(opts: HandoffProbeOptions, mapsDir: string, hook: HandoffHook): HandoffProbe {
    const obj = BpfObject.open(path.join(opts.objectDir, OBJECT_FILE));
    const probe = new HandoffProbe(obj, hook);
    try {
      for (const name of obj.mapNames()) {
        const pin = path.join(mapsDir, name);
        if (!fs.existsSync(pin)) continue; // emon_handoffs, emon_hostats: this object's own
        const m = BpfMap.fromPin(pin, name);
        try {
          obj.reuseMap(name, m.fd);
        } finally {
          m.close();
        }
      }
      const wanted = new Set<string>(PROGS[hook]);
      for (const p of obj.programs()) obj.setAutoload(p.name, wanted.has(p.name));
      obj.load();
      for (const name of wanted) probe.links.push(attachOne(obj, name));
      return probe;
    } catch (e) {
      probe.close();
      throw e;
    }
  }

  /** Every socket that changed hands, by cookie. */
  records(): HandoffRecord[] {
    return readHandoffs(this.obj.map(MAP.handoffs));
  }

  stats(): Record<HandoffCounterName, number> {
    return handoffCounters(this.obj.map(MAP.handoffStats));
  }

  /** The loaded programs' kernel info (ids, run_time_ns/run_cnt when kernel.bpf_stats_enabled=1). */
  programs(): ProgInfo[] {
    return this.obj.programs().filter((p) => this.obj.autoload(p.name)).map((p) => progInfo(this.obj.progFd(p.name), p.name));
  }

  close(): void {
    for (const l of this.links.splice(0)) L.bpf_link__destroy(l);
    this.obj.close();
  }
}

function attachOne(obj: BpfObject, name: string): L.Ptr {
  const prog = obj.program(name);
  let link: L.Ptr | null;
  let target: string;
  if (name === HANDOFF_PROG.tpSend || name === HANDOFF_PROG.tpRecv) {
    target = name === HANDOFF_PROG.tpSend ? 'sock:sock_send_length' : 'sock:sock_recv_length';
    link = L.bpf_program__attach_tracepoint(prog, 'sock', target.split(':')[1]!);
  } else {
    target = 'its section';
    link = L.bpf_program__attach(prog);
  }
  if (link === null) throw new BpfError('attaching', name, lastErrno(), { target });
  return link;
}
