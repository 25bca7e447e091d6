// SPDX-License-Identifier: Apache-2.0
// A session's selector as the kernel compares it: process ids with the uid that owns each
// (for the API's access check), a user as a uid, a cgroup path or systemd unit as the cgroup
// ids of it and the cgroups below it, a container or desktop app as the cgroup ids the
// identity service says are its, interface names as ifindexes. What does not resolve is an
// error naming the field; nothing here decides who may select what (api/capture.ts does).
import fs from 'node:fs';
import path from 'node:path';
import { AppError, invalidParam } from '../errors.js';
import { cgroup2Root } from '../sys/mounts.js';
import { userUid } from '../sys/users.js';
import { listLinks, type Link } from '../net/netlink.js';
import type { CaptureDirection, CaptureInterface, CaptureSelector } from '../contract/capture.js';
import type { IdentityFilter, OwnerIdentity } from '../contract/identity.js';
import { matchesIdentity } from '../identity/index.js';
import { parseCgroupPath } from '../identity/parse.js';

/** cgroups one session may select (each is a compare in the engine program). */
export const MAX_CGROUPS = 64;

export interface ResolvedSelector {
  tgids: number[];
  /** The owner (real uid) of each process in `tgids`, for the access check. */
  pidOwners: Map<number, number>;
  uids: number[];
  cgroupIds: bigint[];
  /** The cgroup paths the ids stand for (relative to the cgroup2 mount). */
  cgroups: string[];
  comms: string[];
  interfaces: CaptureInterface[];
  direction?: CaptureDirection;
  expression: string;
}

/** Link-layer header length at TC by ARPHRD_* type (as the classifier is told). */
export function linkTypeOf(link: Pick<Link, 'type'>): 'ethernet' | 'raw' | null {
  if (link.type === 1 || link.type === 772) return 'ethernet';
  if (link.type === 65534) return 'raw';
  return null;
}

/** The real uid of a running process, or null when there is no such process. */
export function processUid(pid: number): number | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    // A thread id is also under /proc: only thread group leaders are processes.
    const tgid = Number(/^Tgid:\s+(\d+)/m.exec(status)?.[1]);
    if (tgid !== pid) return null;
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    return uid === undefined ? null : Number(uid);
  } catch {
    return null;
  }
}

/** A cgroup and the cgroups below it, as paths relative to `root`. */
function cgroupTree(root: string, rel: string, field: string): string[] {
  const out: string[] = [];
  const walk = (r: string) => {
    if (out.length > MAX_CGROUPS) return;
    out.push(r);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(root, r), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.posix.join(r, e.name));
  };
  walk(rel);
  if (out.length > MAX_CGROUPS) {
    throw new AppError('InvalidParams', `${field}: ${rel} has more than ${MAX_CGROUPS} cgroups below it: select a smaller part of the tree`, { field, value: rel });
  }
  return out;
}

/** cgroups a walk of the hierarchy reads, at most. */
const MAX_WALK = 20_000;

/** Breadth-first over the cgroup hierarchy below `root` (at most MAX_WALK directories
 * read): `visit` gets each cgroup's path, name and depth and says whether to go below it. */
function walkCgroups(root: string, visit: (rel: string, name: string, depth: number) => boolean): void {
  const queue: Array<{ rel: string; depth: number }> = [{ rel: '/', depth: 0 }];
  let visited = 0;
  while (queue.length > 0 && visited < MAX_WALK) {
    const { rel, depth } = queue.shift()!;
    visited++;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const child = path.posix.join(rel, e.name);
      if (visit(child, e.name, depth)) queue.push({ rel: child, depth: depth + 1 });
    }
  }
}

/** A unit as given (`nginx`, `nginx.service`, `docker-<id>.scope`) by its full name: a bare name is a service. */
const unitName = (unit: string): string => (/\.(service|scope|slice|socket|mount|swap)$/.test(unit) ? unit : `${unit}.service`);

/** Where a systemd unit's cgroup is: a directory named after it anywhere in the tree
 * (system.slice/nginx.service, user.slice/user-1000.slice/user@1000.service/app.slice/...). */
function findUnit(root: string, unit: string): string[] {
  const name = unitName(unit);
  const found: string[] = [];
  walkCgroups(root, (rel, n, depth) => {
    if (n !== name) return depth < 8;
    found.push(rel);
    return false;
  });
  return found;
}

function cgroupIds(root: string, rels: string[]): bigint[] {
  // The cgroup v2 id the kernel reports (bpf_get_current_cgroup_id) is the directory's inode number.
  return rels.map((r) => fs.statSync(path.join(root, r), { bigint: true }).ino);
}

export interface ResolveOptions {
  /** Interfaces the classifier is attached to now (by name). */
  monitored: () => ReadonlySet<string>;
  /** The identity service's names for a cgroup id (decimal): the container and app selectors. */
  identityOf?: (cgroupId: string) => OwnerIdentity;
}

/**
 * The cgroups whose identity matches `f` (a container or app, and the unit and cgroup path
 * when given too): every cgroup of the hierarchy is parsed by its path (no names read), and
 * those whose path names a container (or an app) are asked of the identity service, which
 * knows their names. Paths relative to `root`.
 */
function findByIdentity(root: string, f: IdentityFilter, identityOf: (cgroupId: string) => OwnerIdentity): string[] {
  const found: string[] = [];
  walkCgroups(root, (rel, _name, depth) => {
    const parsed = parseCgroupPath(rel);
    if ((f.container === undefined || parsed.container) && (f.app === undefined || parsed.app)) {
      let ino: bigint | null = null;
      try {
        ino = fs.statSync(path.join(root, rel), { bigint: true }).ino;
      } catch {
        // removed since the walk read its parent
      }
      if (ino !== null && matchesIdentity(identityOf(ino.toString()), f)) found.push(rel);
    }
    return depth < 16;
  });
  return found;
}

/** Resolves a validated selector; throws InvalidParams naming the field that does not resolve. */
export function resolveSelector(sel: CaptureSelector, opts: ResolveOptions, prefix = 'params'): ResolvedSelector {
  const pidOwners = new Map<number, number>();
  for (const pid of sel.pids ?? []) {
    const uid = processUid(pid);
    if (uid === null) throw invalidParam(`${prefix}.pids`, pid, 'the id of a running process');
    pidOwners.set(pid, uid);
  }
  const uids: number[] = [];
  if (sel.user !== undefined) {
    if (typeof sel.user === 'number') uids.push(sel.user);
    else {
      const uid = /^\d+$/.test(sel.user) ? Number(sel.user) : userUid(sel.user);
      if (uid === null) throw invalidParam(`${prefix}.user`, sel.user, 'a user name the system knows, or a uid');
      uids.push(uid);
    }
  }
  const cgroups: string[] = [];
  const byIdentity = sel.container !== undefined || sel.app !== undefined;
  if (byIdentity) {
    const root = cgroup2Root();
    if (!root) throw new AppError('NotAvailable', 'no cgroup2 filesystem is mounted: container and app selectors need one');
    if (!opts.identityOf) throw new AppError('NotAvailable', 'the identity service is not running: container and app selectors need it');
    // All given must match the same cgroups: the unit and the cgroup path narrow the
    // container's or app's.
    const f: IdentityFilter = {
      ...(sel.container !== undefined ? { container: sel.container } : {}),
      ...(sel.app !== undefined ? { app: sel.app } : {}),
      ...(sel.unit !== undefined ? { unit: unitName(sel.unit) } : {}),
      ...(sel.cgroup !== undefined ? { cgroup: path.posix.normalize(`/${sel.cgroup}`) } : {}),
    };
    const field = sel.container !== undefined ? `${prefix}.container` : `${prefix}.app`;
    cgroups.push(...findByIdentity(root, f, opts.identityOf));
    if (cgroups.length === 0) {
      throw invalidParam(field, sel.container ?? sel.app, `a ${sel.container !== undefined ? 'container' : 'desktop app'} with a cgroup under ${root} (as ebpfmonctl identity names it${sel.unit !== undefined || sel.cgroup !== undefined || (sel.container !== undefined && sel.app !== undefined) ? ', and matching the other cgroup selectors' : ''})`);
    }
    if (cgroups.length > MAX_CGROUPS) throw invalidParam(field, sel.container ?? sel.app, `a selection of at most ${MAX_CGROUPS} cgroups (${cgroups.length} match: add --unit or --cgroup)`);
  } else if (sel.cgroup !== undefined || sel.unit !== undefined) {
    const root = cgroup2Root();
    if (!root) throw new AppError('NotAvailable', 'no cgroup2 filesystem is mounted: cgroup and unit selectors need one');
    // Without a trailing slash: compared with the unit's path below.
    const rel = sel.cgroup !== undefined ? path.posix.normalize(`/${sel.cgroup}`).replace(/(?<=.)\/+$/, '') : undefined;
    if (sel.cgroup !== undefined && !fs.existsSync(path.join(root, rel!))) throw invalidParam(`${prefix}.cgroup`, sel.cgroup, `a cgroup under ${root}`);
    if (sel.unit === undefined) cgroups.push(...cgroupTree(root, rel!, `${prefix}.cgroup`));
    else {
      const units = findUnit(root, sel.unit);
      if (units.length === 0) throw invalidParam(`${prefix}.unit`, sel.unit, `a systemd unit with a cgroup under ${root}`);
      // Both given must match (AND): the cgroups below both, i.e. the deeper one's tree
      // where one is below the other, nothing where they are apart.
      const within = (inner: string, outer: string) => outer === '/' || inner === outer || inner.startsWith(`${outer}/`);
      for (const u of units) {
        if (rel === undefined || within(u, rel)) cgroups.push(...cgroupTree(root, u, `${prefix}.unit`));
        else if (within(rel, u)) cgroups.push(...cgroupTree(root, rel, `${prefix}.cgroup`));
      }
      if (cgroups.length === 0) throw invalidParam(`${prefix}.unit`, sel.unit, `a systemd unit whose cgroup is under or above ${rel} (${prefix}.cgroup: both must match)`);
    }
    if (cgroups.length > MAX_CGROUPS) throw invalidParam(`${prefix}.cgroup`, sel.cgroup ?? sel.unit, `at most ${MAX_CGROUPS} cgroups in all`);
  }
  const ids = cgroups.length ? cgroupIds(cgroup2Root()!, cgroups) : [];
  const interfaces: CaptureInterface[] = [];
  if (sel.interfaces?.length) {
    const links = new Map(listLinks().map((l) => [l.name, l] as const));
    const monitored = opts.monitored();
    for (const name of sel.interfaces) {
      const l = links.get(name);
      if (!l) throw invalidParam(`${prefix}.interfaces`, name, 'an interface of the daemon\'s network namespace');
      if (!monitored.has(name)) throw invalidParam(`${prefix}.interfaces`, name, 'an interface ebpfmon monitors (configuration `interfaces`; see `ebpfmonctl status`)');
      const lt = linkTypeOf(l);
      if (!lt) throw invalidParam(`${prefix}.interfaces`, name, 'an Ethernet or raw-IP interface');
      interfaces.push({ name, ifindex: l.ifindex, linkType: lt });
    }
  }
  return {
    tgids: [...pidOwners.keys()],
    pidOwners,
    uids,
    cgroupIds: ids,
    cgroups,
    comms: [...new Set(sel.comms ?? [])],
    interfaces,
    direction: sel.direction,
    expression: sel.expression ?? '',
  };
}
