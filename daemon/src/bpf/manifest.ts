// SPDX-License-Identifier: Apache-2.0
// The manifest: what ebpfmon put in its pin directory (layout version, which object
// build loaded which programs and probes, where the classifier and XDP are attached).
// It lives in bpffs itself, in a one-entry array map pinned at <pinPath>/meta, so it
// exists exactly as long as the pins it describes (a reboot clears both).
//   value: u32 magic 'EMON' | u32 layout version | u32 JSON length | JSON (UTF-8)
import * as L from './libbpf.js';
import { BpfError } from './errors.js';
import { BpfMap } from './maps.js';
import { BPF_MAP_TYPE } from './uapi.js';
import { close } from '../sys/libc.js';
import type { ProbeStatus } from '../contract/status.js';

const MAGIC = 0x4e4f4d45; // 'EMON' little-endian
export const META_VALUE_SIZE = 64 * 1024;

export type { ProbeStatus };

export interface ComponentRecord {
  /** sha256 of the object file that loaded the pinned programs. */
  hash: string;
  loadedAt: string;
  programs: string[];
  links: string[];
  probes: ProbeStatus[];
  /** `probes.disable` entries that applied when it was loaded (a change reloads it). */
  disabled?: string[];
}

export interface TcRecord {
  ifindex: number;
  ifname: string;
  /** ebpfmon created the clsact qdisc (teardown removes it when nothing else uses it). */
  createdClsact: boolean;
  attachedAt: string;
  programs: { ingress?: string; egress?: string };
  /** Kernel ids of the programs attached (an upgrade replaces them; teardown matches by id). */
  progIds?: { ingress?: number; egress?: number };
}

/** A feature's own TC filter (not the classifier): ebpfmon's handle at the feature priority
 * (DEFAULT_TC_PRIORITY + 1), e.g. L7's DNS tap on `lo` egress. */
export interface TcFeatureRecord {
  ifindex: number;
  ifname: string;
  dir: 'ingress' | 'egress';
  program: string;
  progId: number;
  createdClsact: boolean;
  attachedAt: string;
}

export interface XdpRecord {
  ifindex: number;
  ifname: string;
  program: string;
  mode: 'native' | 'generic';
  link: string;
  attachedAt: string;
}

/** A network device ebpfmon created (mirror tunnels): teardown deletes it. */
export interface DeviceRecord {
  ifindex: number;
  ifname: string;
  /** IFLA_INFO_KIND (`vxlan`, `gretap`...): teardown deletes only a device still of this name and kind. */
  kind: string;
}

export interface Manifest {
  layout: number;
  createdAt: string;
  daemonVersion: string;
  components: Record<string, ComponentRecord>;
  tc: Record<string, TcRecord>;
  /** Feature filters by `<ifindex>:<dir>` (absent in manifests of earlier versions). */
  tcFeature?: Record<string, TcFeatureRecord>;
  xdp: Record<string, XdpRecord>;
  /** Absent in manifests written before devices were recorded. */
  devices?: Record<string, DeviceRecord>;
}

export function emptyManifest(layout: number, daemonVersion: string): Manifest {
  return { layout, createdAt: new Date().toISOString(), daemonVersion, components: {}, tc: {}, xdp: {} };
}

const KEY0 = new Uint8Array(4);

export class ManifestStore {
  private constructor(private readonly map: BpfMap) {}

  static open(path: string): ManifestStore {
    return new ManifestStore(BpfMap.fromPin(path, 'meta'));
  }

  static create(path: string): ManifestStore {
    const fd = L.bpf_map_create(BPF_MAP_TYPE.ARRAY, 'emon_meta', 4, META_VALUE_SIZE, 1, null);
    if (fd < 0) throw new BpfError('creating', 'emon_meta', -fd);
    const ret = L.bpf_obj_pin(fd, path);
    close(fd);
    if (ret < 0) throw new BpfError('pinning', 'emon_meta', -ret, { target: path });
    return ManifestStore.open(path);
  }

  /** The stored layout version and manifest; null manifest when the value is empty or unreadable. */
  read(): { layout: number | null; manifest: Manifest | null } {
    const v = this.map.lookup(KEY0);
    if (!v || v.readUInt32LE(0) !== MAGIC) return { layout: null, manifest: null };
    const layout = v.readUInt32LE(4);
    const len = v.readUInt32LE(8);
    try {
      return { layout, manifest: JSON.parse(v.toString('utf8', 12, 12 + len)) as Manifest };
    } catch {
      return { layout, manifest: null };
    }
  }

  write(m: Manifest): void {
    const json = Buffer.from(JSON.stringify(m), 'utf8');
    if (json.length + 12 > META_VALUE_SIZE) throw new BpfError('updating', 'emon_meta', 27 /* EFBIG */, { detail: 'manifest too large' });
    const v = Buffer.alloc(META_VALUE_SIZE);
    v.writeUInt32LE(MAGIC, 0);
    v.writeUInt32LE(m.layout, 4);
    v.writeUInt32LE(json.length, 8);
    json.copy(v, 12);
    this.map.update(KEY0, v);
  }

  close(): void {
    this.map.close();
  }
}
