#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Install what ebpfmon needs on a fresh Debian 12 or Ubuntu 24.04 machine, then
# `npm ci` and build. Idempotent: a second run installs nothing and rebuilds only
# what changed. Both README commands (`npm start`, `npm test`) run it first.
#
#   scripts/setup.sh [build|test]   (default: test, which includes build)
#
# build: what the daemon needs to run (libbpf1, libsystemd0, libpcap0.8) and the BPF toolchain
#        (clang, llvm, libbpf-dev, bpftool).
# test:  build + what tests and benchmarks use as independent oracles and hosts
#        (tcpdump, iproute2, nftables, dbus, systemd-nspawn, debootstrap, ...).
set -euo pipefail

profile="${1:-test}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

case "$profile" in build|test) ;; *) die "unknown profile '$profile' (expected build or test)";; esac

# --- Node.js ------------------------------------------------------------------
command -v node >/dev/null || die "node is not installed; ebpfmon needs Node.js >= 20 (https://nodejs.org or your distribution's nodejs 20 package)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node -v) is too old; ebpfmon needs >= 20"

# --- apt packages -------------------------------------------------------------
. /etc/os-release 2>/dev/null || true
# libpcap0.8: capture filters are compiled with pcap_compile (daemon/src/capture/pcap.ts).
runtime_pkgs=(libbpf1 libsystemd0 libpcap0.8)
build_pkgs=(clang llvm libbpf-dev make gcc libc6-dev linux-libc-dev)
test_pkgs=(iproute2 tcpdump ethtool nftables iptables procps util-linux psmisc
           dbus dbus-bin libbpf-tools systemd-container debootstrap dpkg-dev fakeroot lintian
           netsniff-ng iperf3 busybox-static xz-utils iputils-ping netcat-openbsd
           zstd debian-archive-keyring qemu-system-x86 kmod curl
           dnsmasq-base nginx-light openssl wget libssl-dev tshark
           prometheus clickhouse-server
           libmaxmind-db-writer-perl mmdb-bin gnome-shell xvfb libglib2.0-bin strace)
# strace: test/integration/history.test.ts checks that the journal is flushed (fdatasync).
# prometheus and clickhouse-server: test/integration/export-*.test.ts start their own
# instances on free local ports from temporary directories; the packaged services are not used.
# bpftool: its own package on Debian; part of linux-tools on Ubuntu.
# chromium (the browser tests and bench/ui): a Debian package; Ubuntu ships it only as a
# snap, which needs snapd (the browser test then fails naming what is missing).
if [ "${ID:-}" = ubuntu ]; then
  build_pkgs+=(linux-tools-common "linux-tools-$(uname -r)")
else
  build_pkgs+=(bpftool)
  test_pkgs+=(chromium)
fi

want=("${runtime_pkgs[@]}" "${build_pkgs[@]}")
[ "$profile" = test ] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [ "$st" = installed ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run this script as root to install them)"
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark pulls in wireshark-common, whose postinst asks whether non-root users may
  # capture (a setuid dumpcap): answer no, so the install never waits for a terminal.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  # Ubuntu's kernel-specific tools package may not exist for a custom kernel: try, then go on.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    optional=()
    for p in "${missing[@]}"; do case "$p" in linux-tools-*) ;; *) optional+=("$p");; esac; done
    apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null
  fi
fi

# --- npm ----------------------------------------------------------------------
# Reinstall only when the lockfile changed since the last install.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f node_modules/.ebpfmon-lock ] || [ "$(cat node_modules/.ebpfmon-lock)" != "$lock_sum" ]; then
  log "npm ci"
  # Native modules that have no prebuilt binary reachable (better-sqlite3's come from
  # GitHub) are compiled against the headers that ship with node, not downloaded ones.
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  [ -f "$node_prefix/include/node/node_api.h" ] && export npm_config_nodedir="$node_prefix"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.ebpfmon-lock
fi

# --- build (TypeScript + BPF) -------------------------------------------------
log "building"
npm run --silent build
