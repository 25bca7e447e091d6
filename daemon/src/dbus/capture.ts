// SPDX-License-Identifier: Apache-2.0
// org.ebpfmon1.Capture at /org/ebpfmon1/capture: the D-Bus adapter over the API's mirror.*
// and capture.list methods (api/capture.ts). As for the load balancer (lb.ts): D-Bus
// arguments become the API's params (a{sv} key by key, with their variant types), the API
// checks the values, and a change is checked in this order: availability, the arguments,
// then authorization (root, the admin group, or polkit's yes for
// org.ebpfmon1.manage-mirrors), so a call that would fail never prompts for a password.
// capture.start is not here: it streams pcapng on the socket (ebpfmonctl capture).
// Results carry the JSON-RPC field names with one D-Bus type per key (below).
import dbus from 'dbus-next';
import type { MethodTable } from '../api/index.js';
import { CAPTURE_PATH, CAPTURE_SPEC, POLKIT_ACTION_MANAGE_MIRRORS, type CaptureMethod, type CaptureProperty } from '../contract/dbus.js';
import type { CaptureCounters, CaptureSelector, CaptureSessionView, MirrorCounters, MirrorSpec, MirrorView } from '../contract/capture.js';
import { dictOf, jsonDict, readDict, type Dict, type FieldKind, type ValueSig } from './convert.js';
import { apiCaller, type ObjectImpl } from './object.js';

/** AddMirror's keys: mirror.add's params with their variant types. */
export const ADD_MIRROR: Record<keyof MirrorSpec, FieldKind> = {
  name: 'string', to: 'string', encap: 'string', vni: 'int', snaplen: 'int', ratePps: 'int',
  pids: 'int-list', comms: 'string-list', user: 'int-or-string', unit: 'string', cgroup: 'string', container: 'string', app: 'string',
  interfaces: 'string-list', direction: 'string', expression: 'string',
};

const SELECTOR_TYPES: { readonly [K in Exclude<keyof CaptureSelector, 'user'>]-?: ValueSig } = {
  pids: 'au', comms: 'as', unit: 's', cgroup: 's', container: 's', app: 's', interfaces: 'as', direction: 's', expression: 's',
};
const SPEC_TYPES: { readonly [K in Exclude<keyof MirrorSpec, 'user'>]-?: ValueSig } = {
  ...SELECTOR_TYPES, name: 's', to: 's', encap: 's', vni: 'u', snaplen: 'u', ratePps: 'u',
};
const MIRROR_COUNTER_TYPES: { readonly [K in keyof MirrorCounters]-?: ValueSig } = {
  matched: 't', matchedBytes: 't', mirrored: 't', mirroredBytes: 't', truncated: 't', rateLimited: 't', failed: 't', tooBig: 't',
};
const CAPTURE_COUNTER_TYPES: { readonly [K in keyof CaptureCounters]-?: ValueSig } = {
  matched: 't', matchedBytes: 't', captured: 't', capturedBytes: 't', dropped: 't', clientDropped: 't', written: 't', truncated: 't', lostInRestart: 't',
};
/** Keys whose value is built below (nested dictionaries). */
type Nested = 'spec' | 'counters' | 'interfaces';
const MIRROR_TYPES: { readonly [K in Exclude<keyof MirrorView, Nested>]-?: ValueSig } = {
  name: 's', to: 's', encap: 's', vni: 'u', state: 's', source: 's', createdAt: 's', device: 's', pathMtu: 'u',
};
const SESSION_TYPES: { readonly [K in Exclude<keyof CaptureSessionView, 'selector' | 'counters'>]-?: ValueSig } = {
  session: 's', uid: 'u', pid: 'u', startedAt: 's', snaplen: 'u', delivery: 's', deliveryReason: 's',
};

/** A selector (or a mirror's declaration): `user` travels as given, a uid (u) or a name (s). */
function selectorDict(sel: CaptureSelector, types: Record<string, ValueSig>): Dict {
  const d = dictOf(sel, types);
  if (typeof sel.user === 'number') d.user = new dbus.Variant('u', sel.user);
  else if (typeof sel.user === 'string') d.user = new dbus.Variant('s', sel.user);
  return d;
}

export function mirrorDict(m: MirrorView): Dict {
  const d = dictOf(m, MIRROR_TYPES);
  d.spec = new dbus.Variant('a{sv}', selectorDict(m.spec, SPEC_TYPES));
  d.interfaces = new dbus.Variant('aa{sv}', m.interfaces.map((i) => jsonDict({ ...i })));
  d.counters = new dbus.Variant('a{sv}', dictOf(m.counters, MIRROR_COUNTER_TYPES));
  return d;
}

export function mirrorStatsDict(m: { name: string; state: string; counters: MirrorCounters }): Dict {
  return { name: new dbus.Variant('s', m.name), state: new dbus.Variant('s', m.state), counters: new dbus.Variant('a{sv}', dictOf(m.counters, MIRROR_COUNTER_TYPES)) };
}

export function captureSessionDict(s: CaptureSessionView): Dict {
  const d = dictOf(s, SESSION_TYPES);
  d.selector = new dbus.Variant('a{sv}', selectorDict(s.selector, SELECTOR_TYPES));
  d.counters = new dbus.Variant('a{sv}', dictOf(s.counters, CAPTURE_COUNTER_TYPES));
  return d;
}

export function captureObject(methods: MethodTable, available: () => Promise<boolean>): ObjectImpl<CaptureMethod, CaptureProperty, never> {
  const call = apiCaller(methods, POLKIT_ACTION_MANAGE_MIRRORS);
  return {
    path: CAPTURE_PATH,
    spec: CAPTURE_SPEC,
    methods: {
      AddMirror: async (ctx, [raw]) => mirrorDict((await call(ctx, 'mirror.add', 'params', () => readDict(raw, 'params', ADD_MIRROR))) as MirrorView),
      RemoveMirror: async (ctx, [name]) => {
        const r = (await call(ctx, 'mirror.remove', '', () => ({ name }))) as { name: string; counters: MirrorCounters };
        return { name: new dbus.Variant('s', r.name), counters: new dbus.Variant('a{sv}', dictOf(r.counters, MIRROR_COUNTER_TYPES)) };
      },
      ListMirrors: async (ctx) => ((await call(ctx, 'mirror.list', '', () => undefined)) as { mirrors: MirrorView[] }).mirrors.map(mirrorDict),
      GetMirrorStats: async (ctx, [name]) =>
        ((await call(ctx, 'mirror.stats', '', () => (name === '' ? {} : { name }))) as { mirrors: Array<{ name: string; state: string; counters: MirrorCounters }> }).mirrors.map(mirrorStatsDict),
      ListCaptures: async (ctx) => ((await call(ctx, 'capture.list', '', () => undefined)) as { sessions: CaptureSessionView[] }).sessions.map(captureSessionDict),
    },
    properties: {
      Available: () => available(),
    },
  };
}
