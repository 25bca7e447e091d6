// SPDX-License-Identifier: Apache-2.0
// Synthetic closed flows for bench/history: the shape of the daemon's close events plus the
// owner details history keeps (exe, cgroup), from a seeded generator so that every engine
// and every run sees the same records. A few hundred processes of a few dozen commands and
// users, remotes drawn from a few thousand addresses (Zipf-like: a handful take most
// connections), ports, sizes and durations with long tails.

/** xorshift32: small, seeded, fast enough not to show in the measurements. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Index in [0, n) skewed towards 0 (rank r is drawn about 1/(r+1) as often). */
  zipf(n: number): number {
    return Math.min(n - 1, Math.floor(Math.exp(this.next() * Math.log(n + 1)) - 1));
  }
}

export const COMMS = [
  'firefox-esr', 'chromium', 'curl', 'wget', 'apt', 'ssh', 'sshd', 'systemd-resolve', 'NetworkManager', 'chronyd',
  'postgres', 'nginx', 'node', 'python3', 'java', 'dockerd', 'containerd', 'kubelet', 'git', 'npm',
  'thunderbird', 'slack', 'zoom', 'spotify', 'code', 'rsync', 'snapd', 'fwupd', 'cupsd', 'avahi-daemon',
];
export const USERS = [0, 1000, 1001, 33, 104];

export interface Proc {
  pid: number;
  comm: string;
  uid: number;
  exe: string;
  cgroupId: string;
}

/** A closed flow as history receives it (CloseEvent fields + owner details). */
export interface FlowSample extends Proc {
  proto: 'tcp' | 'udp';
  family: 'ipv4' | 'ipv6';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  interface: string;
  direction: 'outbound' | 'inbound';
  attributedBy: 'connect' | 'accept';
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  firstMs: number;
  lastMs: number;
  closedMs: number;
}

const PORTS = [443, 443, 443, 443, 80, 53, 22, 5432, 8080, 993, 123, 3478];

export class FlowGen {
  readonly procs: Proc[] = [];
  private readonly remotes4: string[] = [];
  private readonly remotes6: string[] = [];
  private readonly rng: Rng;

  constructor(seed = 42, nprocs = 600, nremotes = 5000) {
    this.rng = new Rng(seed);
    for (let i = 0; i < nprocs; i++) {
      const comm = COMMS[this.rng.zipf(COMMS.length)]!;
      this.procs.push({
        pid: 1000 + i * 7,
        comm,
        uid: USERS[this.rng.zipf(USERS.length)]!,
        exe: `/usr/bin/${comm}`,
        cgroupId: String(4000 + (i % 97)),
      });
    }
    for (let i = 0; i < nremotes; i++) {
      this.remotes4.push(`${[23, 34, 52, 104, 142, 151, 172, 185][i % 8]}.${(i >> 8) & 255}.${i & 255}.${(i * 37) & 255}`);
      this.remotes6.push(`2a00:1450:${(i >> 8).toString(16)}:${(i & 255).toString(16)}::${((i * 37) & 0xffff).toString(16)}`);
    }
  }

  /** One flow that closed at `closedMs`. */
  next(closedMs: number): FlowSample {
    const r = this.rng;
    const p = this.procs[r.zipf(this.procs.length)]!;
    const v6 = r.next() < 0.2;
    const inbound = r.next() < 0.1;
    const dur = Math.floor(Math.exp(r.next() * 11)); // 1 ms .. 60 s, long tail
    const txp = 3 + r.zipf(200);
    const rxp = 3 + r.zipf(2000);
    // Written out, not spread: the daemon builds its events this way (one object shape); a
    // spread of this many fields gives dictionary-mode objects, 10x slower to read.
    return {
      pid: p.pid, comm: p.comm, uid: p.uid, exe: p.exe, cgroupId: p.cgroupId,
      proto: r.next() < 0.9 ? 'tcp' : 'udp',
      family: v6 ? 'ipv6' : 'ipv4',
      localAddr: v6 ? 'fd00:198::1' : '198.18.0.1',
      localPort: inbound ? PORTS[r.int(PORTS.length)]! : 32768 + r.int(28232),
      remoteAddr: v6 ? this.remotes6[r.zipf(this.remotes6.length)]! : this.remotes4[r.zipf(this.remotes4.length)]!,
      remotePort: inbound ? 32768 + r.int(28232) : PORTS[r.int(PORTS.length)]!,
      interface: r.next() < 0.95 ? 'eth0' : 'wlan0',
      direction: inbound ? 'inbound' : 'outbound',
      attributedBy: inbound ? 'accept' : 'connect',
      txBytes: txp * 52 + r.zipf(200_000),
      rxBytes: rxp * 52 + r.zipf(5_000_000),
      txPackets: txp,
      rxPackets: rxp,
      firstMs: closedMs - dur,
      lastMs: closedMs,
      closedMs,
    };
  }
}
