// SPDX-License-Identifier: Apache-2.0
// capture.* and mirror.*: packet capture and mirror sessions, one declaration for every
// transport. Access: a capture session selects only packets of the caller's own
// processes (the kernel compares the owner's uid with the caller's), unless the caller is
// root or in the ebpfmon group; naming another user's process or user is refused, not
// silently narrowed. Mirrors change the host's traffic going out (copies to a collector):
// root, the admin group or (D-Bus) polkit. capture.start streams, so each transport serves
// it itself (rpc/capture.ts on the socket) through captureStart() here.
import { CAPTURE_DIRECTIONS, CAPTURE_LATENCY_MS, DEFAULT_SNAPLEN, MIRROR_ENCAPS, type CaptureResume, type CaptureSelector, type CaptureStatus, type MirrorSpec } from '../contract/capture.js';
import { AppError, invalidParam } from '../errors.js';
import type { CaptureHandle, CaptureManager, CaptureRequest, CaptureSink } from '../capture/manager.js';
import { FdOutput, FdUnavailable, takeClientFd } from '../capture/fdout.js';
import { parseIp } from '../net/ip.js';
import type { Caller } from './caller.js';
import { method } from './method.js';
import { optBool, optEnum, optInt, optString, paramsObject, reqString, type Params } from './validate.js';

/** What the API uses of the capture manager (a fake can stand in for tests). */
export type CaptureApi = Pick<CaptureManager, 'resolve' | 'startCapture' | 'stopCapture' | 'listCaptures' | 'addMirror' | 'removeMirror' | 'listMirrors' | 'mirror' | 'status'>;

const SELECTOR_PARAMS = ['pids', 'comms', 'user', 'unit', 'cgroup', 'container', 'app', 'interfaces', 'direction', 'expression'] as const satisfies ReadonlyArray<keyof CaptureSelector>;
const MAX_PID = 0x7fffffff;
const MAX_UID = 0xffffffff - 1;
const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;

function optList<T>(p: Params, name: string, max: number, item: (v: unknown) => T | undefined, expected: string): T[] | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > max) throw invalidParam(`params.${name}`, v, `an array of at most ${max} ${expected}`);
  return v.map((x, i) => {
    const ok = item(x);
    if (ok === undefined) throw invalidParam(`params.${name}[${i}]`, x, expected);
    return ok;
  });
}

/** The selector fields of capture.start and mirror.add, checked for shape (resolution follows). */
export function parseSelector(p: Params): CaptureSelector {
  const pids = optList(p, 'pids', 64, (x) => (typeof x === 'number' && Number.isInteger(x) && x > 0 && x <= MAX_PID ? x : undefined), 'process ids (1 to 2147483647)');
  const comms = optList(p, 'comms', 16, (x) => (typeof x === 'string' && x.length > 0 && Buffer.byteLength(x) <= 15 ? x : undefined), 'command names of 1 to 15 bytes');
  let user: string | number | undefined;
  if (p.user !== undefined) {
    const u = p.user;
    if (typeof u === 'number' && Number.isInteger(u) && u >= 0 && u <= MAX_UID) user = u;
    else if (typeof u === 'string' && /^[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,31}\$?$/.test(u)) user = u;
    else throw invalidParam('params.user', u, 'a user name or a uid');
  }
  const interfaces = optList(p, 'interfaces', 32, (x) => (typeof x === 'string' && x.length > 0 && x.length <= 15 && !/[\s/]/.test(x) ? x : undefined), 'interface names');
  const expression = p.expression === undefined || p.expression === '' ? undefined : optString(p, 'expression', 2048, /^[^\0]*$/, 'a pcap-filter expression of at most 2048 characters');
  return {
    ...(pids ? { pids } : {}),
    ...(comms ? { comms } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(p.unit !== undefined ? { unit: optString(p, 'unit', 256, /^[^\0/]+$/, 'a systemd unit name')! } : {}),
    ...(p.cgroup !== undefined ? { cgroup: optString(p, 'cgroup', 4096, /^\/[^\0]*$/, 'a cgroup path starting with /')! } : {}),
    ...(p.container !== undefined ? { container: optString(p, 'container', 256, /^\S+$/, 'a container id (12+ hex digits), name, pod name, namespace/pod or pod UID')! } : {}),
    ...(p.app !== undefined ? { app: optString(p, 'app', 256, /^[^\0\n]+$/, 'a desktop app id or name')! } : {}),
    ...(interfaces ? { interfaces } : {}),
    ...(p.direction !== undefined ? { direction: optEnum(p, 'direction', CAPTURE_DIRECTIONS)! } : {}),
    ...(expression !== undefined ? { expression } : {}),
  };
}

/** mirror.add's params (and a mirror declared in the configuration), checked for shape. */
export function parseMirrorSpec(raw: unknown): MirrorSpec {
  const p = paramsObject(raw, ['name', 'to', 'encap', 'vni', 'snaplen', 'ratePps', ...SELECTOR_PARAMS]);
  const name = reqString(p, 'name', 32, NAME_RE, 'a name of 1 to 32 letters, digits, ".", "_" or "-"');
  const to = reqString(p, 'to', 64);
  if (!parseIp(to)) throw invalidParam('params.to', to, 'the collector\'s IPv4 or IPv6 address');
  const encap = optEnum(p, 'encap', MIRROR_ENCAPS);
  const vni = optInt(p, 'vni', 0, (encap ?? 'vxlan') === 'vxlan' ? 0xffffff : 0xffffffff);
  const snaplen = optInt(p, 'snaplen', 64, 65535);
  const ratePps = optInt(p, 'ratePps', 1, 10_000_000);
  return {
    name, to,
    ...(encap ? { encap } : {}),
    ...(vni !== undefined ? { vni } : {}),
    ...(snaplen !== undefined ? { snaplen } : {}),
    ...(ratePps !== undefined ? { ratePps } : {}),
    ...parseSelector(p),
  };
}

/** May `caller` select these processes and users? Root and the ebpfmon group: anything. */
function checkAccess(caller: Pick<Caller, 'uid' | 'seesAll'>, pidOwners: ReadonlyMap<number, number>, uids: readonly number[]): void {
  if (caller.seesAll) return;
  for (const [pid, uid] of pidOwners) {
    if (uid !== caller.uid) {
      throw new AppError('PermissionDenied', `process ${pid} belongs to uid ${uid}: uid ${caller.uid} may capture only its own processes' packets (root and the ebpfmon group may capture any)`, { field: 'params.pids', value: pid });
    }
  }
  for (const uid of uids) {
    if (uid !== caller.uid) {
      throw new AppError('PermissionDenied', `uid ${caller.uid} may capture only its own processes' packets, not uid ${uid}'s (root and the ebpfmon group may capture any)`, { field: 'params.user', value: uid });
    }
  }
}

/** capture.start's params as a request: checked, resolved and scoped to the caller. */
/** capture.start's `resume`, checked for shape (the manager knows whether the session waits). */
function parseResume(p: Params): CaptureResume | undefined {
  const r = p.resume;
  if (r === undefined) return undefined;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw invalidParam('params.resume', r, 'an object with session, instance and received');
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['session', 'instance', 'received'].includes(k)) throw invalidParam(`params.resume.${k}`, o[k], 'one of session, instance, received');
  const str = (k: string, re: RegExp, what: string): string => {
    const v = o[k];
    if (typeof v !== 'string' || !re.test(v)) throw invalidParam(`params.resume.${k}`, v, what);
    return v;
  };
  const received = o.received;
  if (typeof received !== 'number' || !Number.isSafeInteger(received) || received < 0) throw invalidParam('params.resume.received', received, 'a count of packets (an integer from 0)');
  return { session: str('session', /^cap-[0-9a-f]{1,32}$/, 'a capture session id (cap-...)'), instance: str('instance', /^[0-9a-f]{1,32}$/, 'a daemon instance id'), received };
}

export function captureRequest(capture: CaptureApi, raw: unknown, caller: Caller): CaptureRequest {
  const p = paramsObject(raw, [...SELECTOR_PARAMS, 'snaplen', 'count', 'durationSec', 'statsIntervalSec', 'latencyMs', 'resume', 'fd', 'progress']);
  optInt(p, 'fd', 0, 0x7fffffff); // taken by captureStart
  optBool(p, 'progress'); // taken by the transport (rpc/capture.ts)
  const given = parseSelector(p);
  const snaplen = optInt(p, 'snaplen', 0, DEFAULT_SNAPLEN) || DEFAULT_SNAPLEN;
  const count = optInt(p, 'count', 1, 1_000_000_000);
  const durationSec = optInt(p, 'durationSec', 1, 30 * 24 * 3600);
  const statsIntervalSec = optInt(p, 'statsIntervalSec', 0, 3600);
  const latencyMs = optInt(p, 'latencyMs', CAPTURE_LATENCY_MS.min, CAPTURE_LATENCY_MS.max) ?? CAPTURE_LATENCY_MS.default;
  const resume = parseResume(p);
  if (resume) {
    // The kernel keeps the session's selection (the processes named may have exited
    // since); only its owner may take it over (the manager checks the uid).
    const none = { tgids: [], pidOwners: new Map<number, number>(), uids: [], cgroupIds: [], cgroups: [], comms: [], interfaces: [], expression: '' };
    return {
      selector: none, given, snaplen, count, resume, latencyMs,
      durationMs: durationSec !== undefined ? durationSec * 1000 : undefined,
      statsIntervalMs: statsIntervalSec !== undefined ? statsIntervalSec * 1000 : undefined,
      owner: { uid: caller.uid, pid: caller.pid },
    };
  }
  const selector = capture.resolve(given);
  checkAccess(caller, selector.pidOwners, selector.uids);
  // Outside the group, the kernel itself keeps the session to the caller's processes.
  if (!caller.seesAll) selector.uids = [caller.uid];
  return {
    selector, given, snaplen, count, latencyMs,
    durationMs: durationSec !== undefined ? durationSec * 1000 : undefined,
    statsIntervalMs: statsIntervalSec !== undefined ? statsIntervalSec * 1000 : undefined,
    owner: { uid: caller.uid, pid: caller.pid },
  };
}

export interface CaptureApiDeps {
  capture: CaptureApi | null;
  /** Why capture is not available (when `capture` is null). */
  reason: string;
}

/** What the transport hears of a session in `fd` delivery. */
export interface FdDeliveryEvents {
  /** Writing into the client's descriptor failed (EPIPE...): the session is being ended. */
  onError(message: string): void;
  /** The daemon closed its duplicate: everything it wrote is in the client's file. */
  onClosed(error: string | null): void;
}

/**
 * Starts a capture session. With `params.fd`, the daemon writes into a duplicate of the
 * caller's descriptor (capture/fdout.ts says what is checked); when this host refuses
 * pidfd_getfd, or without `fd`, into `streamSink` (each transport's own channel) and the
 * result's `delivery` says `stream` and why.
 */
export function captureStart(d: CaptureApiDeps, raw: unknown, caller: Caller, streamSink: CaptureSink, events?: FdDeliveryEvents): CaptureHandle {
  const capture = available(d);
  const req = captureRequest(capture, raw, caller);
  const fdNum = (raw as { fd?: number }).fd;
  let out: FdOutput | null = null;
  if (fdNum === undefined) req.delivery = { kind: 'stream', reason: 'the client did not offer a descriptor' };
  else if (!events) req.delivery = { kind: 'stream', reason: 'this transport cannot take a descriptor' };
  else {
    try {
      const t = takeClientFd(caller.pid, caller.uid, fdNum);
      out = new FdOutput(t.fd, t.kind);
      req.delivery = { kind: 'fd', reason: `the client's ${t.kind === 'file' ? 'regular file' : t.kind === 'fifo' ? 'pipe' : 'socket'}` };
    } catch (err) {
      if (!(err instanceof FdUnavailable)) throw err;
      req.delivery = { kind: 'stream', reason: err.message };
    }
  }
  if (!out) return capture.startCapture(req, streamSink);
  const fdOut = out;
  let handle: CaptureHandle;
  fdOut.onError = (m) => {
    events!.onError(m);
    // The reader went away or the disk is full: the session ends (its kernel state goes).
    setImmediate(() => handle?.finish());
  };
  fdOut.onClosed = () => events!.onClosed(fdOut.error);
  try {
    handle = capture.startCapture(req, fdOut);
  } catch (err) {
    fdOut.end();
    throw err;
  }
  return handle;
}

function available(d: CaptureApiDeps): CaptureApi {
  if (!d.capture) throw new AppError('NotAvailable', d.reason);
  return d.capture;
}

export function captureMethods(d: CaptureApiDeps) {
  const noParams = (raw: unknown) => {
    available(d);
    paramsObject(raw, []);
  };
  const nameParam = (raw: unknown) => {
    available(d);
    const p = paramsObject(raw, ['name']);
    return { name: reqString(p, 'name', 32, NAME_RE, 'a mirror name') };
  };
  return {
    'capture.stop': method<'capture.stop', { session: string }>({
      access: 'read',
      validate: (raw) => {
        available(d);
        return { session: reqString(paramsObject(raw, ['session']), 'session', 64) };
      },
      run: async (p, caller) => ({ session: p.session, counters: await available(d).stopCapture(p.session, caller) }),
    }),
    'capture.list': method<'capture.list', void>({
      access: 'read',
      validate: noParams,
      run: (_p, caller) => ({ sessions: available(d).listCaptures(caller.seesAll ? undefined : caller.uid) }),
    }),
    'mirror.add': method<'mirror.add', MirrorSpec>({
      access: 'admin',
      validate: (raw) => {
        available(d);
        return parseMirrorSpec(raw);
      },
      run: (spec) => {
        const c = available(d);
        return c.addMirror(spec, c.resolve(spec), 'api');
      },
    }),
    'mirror.remove': method<'mirror.remove', { name: string }>({ access: 'admin', validate: nameParam, run: (p) => available(d).removeMirror(p.name) }),
    'mirror.list': method<'mirror.list', void>({ access: 'read', validate: noParams, run: () => ({ mirrors: available(d).listMirrors() }) }),
    'mirror.stats': method<'mirror.stats', { name?: string }>({
      access: 'read',
      validate: (raw) => {
        available(d);
        const p = paramsObject(raw, ['name']);
        const name = optString(p, 'name', 32, NAME_RE, 'a mirror name');
        return name === undefined ? {} : { name };
      },
      run: (p) => {
        const c = available(d);
        const list = p.name !== undefined ? [c.mirror(p.name)] : c.listMirrors();
        return { mirrors: list.map((m) => ({ name: m.name, state: m.state, counters: m.counters })) };
      },
    }),
  };
}

/** `status.capture`. */
export function captureStatus(d: CaptureApiDeps): CaptureStatus {
  if (d.capture) return d.capture.status();
  return {
    available: false, reason: d.reason, engine: '-', delivery: '-',
    encaps: { vxlan: { available: false, device: null, reason: d.reason }, gre: { available: false, device: null, reason: d.reason } },
    sessions: [], mirrors: [], loss: { dropped: 0, clientDropped: 0, lostInRestart: 0, ringLost: 0, mirrorFailed: 0, mirrorRateLimited: 0, mirrorTooBig: 0, mirrorDeviceRefused: 0 },
  };
}
