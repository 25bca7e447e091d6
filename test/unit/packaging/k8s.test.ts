// SPDX-License-Identifier: Apache-2.0
// packaging/kubernetes/ebpfmon-daemonset.yaml, checked without a cluster:
//  1. every document against Kubernetes' own OpenAPI schemas (kubernetes-models: models
//     generated from them, each with an ajv validator compiled from the schema; types,
//     enums and required fields, not unknown keys);
//  2. the fields this DaemonSet depends on, which a schema cannot know: selector and
//     labels, host namespaces, each mount paired with a volume of the right host path and
//     propagation, privileges of the init and main containers, the ConfigMap's
//     configuration accepted by the daemon's own loader, and probes that talk to the
//     socket the configuration names.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import { loadConfig } from '../../../daemon/src/config/load.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const MANIFEST = path.join(root, 'packaging/kubernetes/ebpfmon-daemonset.yaml');

type Doc = { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } } & Record<string, unknown>;

function load(): Doc[] {
  const docs = parseAllDocuments(fs.readFileSync(MANIFEST, 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, [], `YAML errors in ${MANIFEST}`);
  return docs.map((d) => d.toJS() as Doc).filter((d) => d !== null);
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
};

function only<T extends Doc>(docs: Doc[], kind: string): T {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0] as T;
}

describe('packaging/kubernetes/ebpfmon-daemonset.yaml', () => {
  const docs = load();
  const ds = only<Doc & { spec: DaemonSet['spec'] }>(docs, 'DaemonSet');
  const spec = ds.spec!.template.spec!;
  const volumes = new Map<string, IVolume>((spec.volumes ?? []).map((v) => [v.name, v]));
  const main = spec.containers.find((c) => c.name === 'ebpfmon');
  const init = spec.initContainers?.find((c) => c.name === 'mounts');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-k8s-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('every document validates against the Kubernetes schema of its kind', () => {
    assert.deepEqual(docs.map((d) => `${d.apiVersion}/${d.kind}`).sort(), Object.keys(MODELS).sort());
    for (const d of docs) {
      const Model = MODELS[`${d.apiVersion}/${d.kind}`]!;
      assert.doesNotThrow(() => new Model(d as never).validate(), `${d.kind} ${d.metadata?.name}`);
    }
  });

  it('the schema check is real: it rejects a wrong type and an unknown enum value', () => {
    // Raw objects, as a typo in the YAML would give (the model types would refuse them).
    const bad = structuredClone(ds) as unknown as { spec: { template: { spec: Record<string, unknown> & { containers: Array<{ volumeMounts: Array<Record<string, unknown>> }> } } } };
    bad.spec.template.spec.hostPID = 'yes';
    assert.throws(() => new DaemonSet(bad as never).validate(), /hostPID/);
    const bad2 = structuredClone(ds) as unknown as typeof bad;
    bad2.spec.template.spec.containers[0]!.volumeMounts[0]!.mountPropagation = 'Sideways';
    assert.throws(() => new DaemonSet(bad2 as never).validate(), /mountPropagation/);
  });

  it('everything lives in one namespace that admits privileged pods', () => {
    const ns = only<Doc & { metadata: { name: string; labels: Record<string, string> } }>(docs, 'Namespace');
    for (const d of docs.filter((x) => x.kind !== 'Namespace')) assert.equal(d.metadata?.namespace, ns.metadata.name, `${d.kind} namespace`);
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
  });

  it('the selector matches the pod template labels', () => {
    const match = ds.spec!.selector.matchLabels ?? {};
    assert.ok(Object.keys(match).length > 0, 'selector has matchLabels');
    const labels = ds.spec!.template.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(match)) assert.equal(labels[k], v, `template label ${k}`);
  });

  it('runs in the node namespaces, on every node, without an API token', () => {
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.hostPID, true);
    assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.ok(spec.tolerations?.some((t) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined), 'tolerates every taint');
    assert.equal(spec.automountServiceAccountToken, false);
  });

  it('every mount has a volume and every volume is mounted', () => {
    const containers: IContainer[] = [...spec.containers, ...(spec.initContainers ?? [])];
    const used = new Set<string>();
    for (const c of containers) {
      for (const m of c.volumeMounts ?? []) {
        assert.ok(volumes.has(m.name), `${c.name}: volume ${m.name} is declared`);
        used.add(m.name);
      }
    }
    assert.deepEqual([...volumes.keys()].filter((v) => !used.has(v)), [], 'unused volumes');
  });

  /** The main (or init) container's mount at `mountPath` and the host path behind it. */
  function mountOf(c: IContainer | undefined, mountPath: string) {
    const m = c?.volumeMounts?.find((x) => x.mountPath === mountPath);
    assert.ok(m, `${c?.name} mounts ${mountPath}`);
    return { mount: m, volume: volumes.get(m.name)! };
  }

  it('bpffs, tracefs and the cgroup v2 root are the node\'s, with the right propagation', () => {
    assert.ok(main && init, 'containers ebpfmon and init container mounts');
    for (const p of ['/sys/fs/bpf', '/sys/kernel/tracing', '/sys/fs/cgroup']) {
      const { mount, volume } = mountOf(main, p);
      assert.equal(volume.hostPath?.path, p, `${p} is a hostPath of the same path`);
      // Pins and mounts the init container made on the node must be seen by the daemon.
      assert.equal(mount.mountPropagation, 'HostToContainer', `${p} propagation`);
    }
    assert.notEqual(mountOf(main, '/sys/fs/bpf').mount.readOnly, true, 'pins are written');
    for (const p of ['/sys/fs/bpf', '/sys/kernel/tracing']) {
      // The init container's mounts must reach the node: Bidirectional, which Kubernetes
      // allows only in privileged containers.
      assert.equal(mountOf(init, p).mount.mountPropagation, 'Bidirectional', `init ${p}`);
    }
    assert.equal(init!.securityContext?.privileged, true);
    assert.deepEqual(init!.command, ['/usr/lib/ebpfmon/ebpfmon-mounts']);
  });

  it('the daemon has exactly the capabilities of the systemd unit and nothing else', () => {
    const sc = main!.securityContext!;
    assert.notEqual(sc.privileged, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities?.drop, ['ALL']);
    assert.deepEqual([...(sc.capabilities?.add ?? [])].sort(), ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_PTRACE']);
    const unit = fs.readFileSync(path.join(root, 'systemd/ebpfmon.service'), 'utf8');
    const bounding = /^CapabilityBoundingSet=(.*)$/m.exec(unit)?.[1]?.split(/\s+/).map((c) => c.replace(/^CAP_/, '')).sort();
    assert.deepEqual(bounding, [...(sc.capabilities?.add ?? [])].sort(), 'same set as systemd/ebpfmon.service');
    assert.equal(sc.appArmorProfile?.type, 'Unconfined', 'default AppArmor profiles deny writes under /sys/fs/bpf');
    assert.equal(main!.resources?.limits?.cpu, undefined, 'no CPU limit (throttling loses events)');
    assert.ok(main!.resources?.limits?.memory && main!.resources?.requests?.memory, 'memory request and limit');
  });

  it('the ConfigMap holds a configuration the daemon accepts, mounted where the command reads it', () => {
    const cm = only<Doc & { metadata: { name: string }; data: Record<string, string> }>(docs, 'ConfigMap');
    const { mount, volume } = mountOf(main, '/etc/ebpfmon');
    assert.equal(volume.configMap?.name, cm.metadata.name);
    assert.equal(mount.readOnly, true);
    const args = main!.command ?? [];
    const file = args[args.indexOf('--config') + 1]!;
    assert.equal(path.dirname(file), '/etc/ebpfmon');
    const text = cm.data[path.basename(file)];
    assert.ok(text, `ConfigMap key ${path.basename(file)}`);
    const copy = path.join(tmp, 'ebpfmon.json');
    fs.writeFileSync(copy, text);
    const { config } = loadConfig({ file: copy, env: {} });
    assert.equal(config.dbus.enabled, false, 'no system bus in the container');
    assert.equal(config.pinPath.startsWith('/sys/fs/bpf/'), true, 'pins on the node bpffs');

    // The socket and its lock are on the node, and the probes ask that socket.
    const run = mountOf(main, path.dirname(config.socketPath));
    assert.equal(run.volume.hostPath?.path, path.dirname(config.socketPath));
    for (const probe of [main!.livenessProbe, main!.readinessProbe, main!.startupProbe]) {
      const cmd = probe?.exec?.command ?? [];
      assert.equal(cmd[0], '/usr/bin/ebpfmonctl');
      assert.equal(cmd[cmd.indexOf('--socket') + 1], config.socketPath);
      assert.ok(cmd.includes('status'));
    }
  });

  it('Prometheus scraping: annotations, a named port, and a metrics.listen the daemon accepts on that port', () => {
    const ann = ds.spec!.template.metadata?.annotations ?? {};
    assert.equal(ann['prometheus.io/scrape'], 'true');
    assert.equal(ann['prometheus.io/path'], '/metrics');
    const port = main!.ports?.find((p) => p.name === 'metrics');
    assert.ok(port, 'a container port named metrics (the PodMonitor in docs/export.md names it)');
    assert.equal(String(port.containerPort), ann['prometheus.io/port']);
    // The address comes from the downward API: resolve $(HOST_IP) as the kubelet does.
    const env = new Map((main!.env ?? []).map((e) => [e.name, e]));
    assert.equal(env.get('HOST_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.hostIP');
    const listen = env.get('EBPFMON_METRICS_LISTEN')?.value?.replace('$(HOST_IP)', '198.18.0.7');
    assert.ok(listen, 'EBPFMON_METRICS_LISTEN');
    const cm = only<Doc & { data: Record<string, string> }>(docs, 'ConfigMap');
    const copy = path.join(tmp, 'metrics.json');
    fs.writeFileSync(copy, cm.data['ebpfmon.json']!);
    const { config } = loadConfig({ file: copy, env: { EBPFMON_METRICS_LISTEN: listen } });
    assert.equal(config.metrics.listen, `198.18.0.7:${port.containerPort}`, 'the daemon listens where Prometheus is told to scrape');
    // Exported records carry the node's machine id, not the image's.
    const { mount, volume } = mountOf(main, '/etc/machine-id');
    assert.equal(volume.hostPath?.path, '/etc/machine-id');
    assert.equal(volume.hostPath?.type, 'File');
    assert.equal(mount.readOnly, true);
  });

  it('the image is the .deb: the Dockerfile installs it and runs its daemon', () => {
    const dockerfile = fs.readFileSync(path.join(root, 'packaging/kubernetes/Dockerfile'), 'utf8');
    assert.match(dockerfile, /apt-get install[^\n]*\\?\n?[^\n]*ebpfmon_\*_amd64\.deb/);
    assert.match(dockerfile, /ENTRYPOINT \["\/usr\/sbin\/ebpfmon"\]/);
    assert.equal(main!.command?.[0], '/usr/sbin/ebpfmon');
  });
});
