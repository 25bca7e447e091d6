#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds packaging/out/ebpfmon_<version>_amd64.deb with dpkg-deb: `npm run package`.
# Offline when npm's cache holds the locked packages (it does after `npm ci`); no
# debhelper, no fakeroot (dpkg-deb --root-owner-group), nothing installed on this machine.
#
#   packaging/build-deb.sh            build (TypeScript + BPF), stage, package, lintian
#   EBPFMON_PACKAGE_BUILD=0 ...       package the existing build/ (the test suite, which runs
#                                     from a fresh build already, does this)
#   EBPFMON_PACKAGE_LINTIAN=0 ...     skip lintian (it takes ~30 s)
#   EBPFMON_PACKAGE_OUT=DIR ...       build in DIR instead of packaging/out (tests)
#   EBPFMON_PACKAGE_XZ_LEVEL=N ...    xz level 0-9 for the archive (default dpkg-deb's, 6).
#                                     The test suite uses 1: the same files, a 15% larger
#                                     archive, made in 4 s instead of 25-30 s
#
# Steps: build -> production node_modules in a staging dir (npm ci --omit=dev
# --ignore-scripts, then prune-modules.mjs) -> tree under packaging/out/root -> DEBIAN/
# (control with dpkg-shlibdeps' libc/libstdc++ dependencies of koffi's native module,
# maintainer scripts, conffiles, md5sums) -> dpkg-deb -> lintian (fails on any E: tag).
# docs/packaging.md describes what goes where and why.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg="$root/packaging"
out="${EBPFMON_PACKAGE_OUT:-$pkg/out}"
cd "$root"

log() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package: error: %s\n' "$*" >&2; exit 1; }

for tool in dpkg-deb dpkg-parsechangelog dpkg-shlibdeps gzip node npm; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh test installs dpkg-dev, lintian and fakeroot)"
done
[ "$(dpkg --print-architecture)" = amd64 ] || die "only amd64 is packaged (koffi's native module is taken from @koromix/koffi-linux-x64)"

# --- versions -----------------------------------------------------------------------
upstream="$(node -p 'require("./package.json").version')"
version="$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Version)"
maintainer="$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Maintainer)"
[ "${version%-*}" = "$upstream" ] || die "packaging/debian/changelog is at $version but package.json at $upstream: add a changelog entry for $upstream-1"
# Reproducible: every timestamp is the changelog's.
SOURCE_DATE_EPOCH="$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Timestamp)"
export SOURCE_DATE_EPOCH
deb="$out/ebpfmon_${version}_amd64.deb"

# --- build ----------------------------------------------------------------------------
if [ "${EBPFMON_PACKAGE_BUILD:-1}" != 0 ]; then
  log "building TypeScript and BPF objects (npm run build)"
  npm run --silent build || die "the build failed: a package is made from a tree that builds cleanly"
else
  log "EBPFMON_PACKAGE_BUILD=0: packaging the existing build/ as it is"
fi

# Ship exactly the compiled form of each source file: no stale .js from deleted sources.
mapfile -t sources < <(cd "$root" && find daemon/src client/src -name '*.ts' ! -name '*.d.ts' | sort)
missing=()
for s in "${sources[@]}"; do [ -f "build/js/${s%.ts}.js" ] || missing+=("build/js/${s%.ts}.js"); done
[ "${#missing[@]}" -eq 0 ] || die "not built: ${missing[*]}"
# ebpfmonctl as one file (client/bundle.mjs): what /usr/bin/ebpfmonctl runs.
[ -f build/js/client/src/ebpfmonctl.js ] || die "not built: build/js/client/src/ebpfmonctl.js (npm run build:cli)"
# The daemon bundled (daemon/bundle.mjs): what /usr/sbin/ebpfmon runs, with its chunks.
[ -f build/js/daemon/src/ebpfmon.js ] || die "not built: build/js/daemon/src/ebpfmon.js (npm run build:daemon)"
mapfile -t daemon_bundle < <(cd "$root" && find build/js/daemon/src -maxdepth 1 \( -name ebpfmon.js -o -name 'ebpfmon-*.js' \) | sort)
shopt -s nullglob
objects=(build/bpf/*.bpf.o)
shopt -u nullglob
[ "${#objects[@]}" -gt 0 ] || die "no BPF objects in build/bpf"
# The capture path's native drain (daemon/native): the daemon falls back to TypeScript
# without it, but a package ships what the build makes.
[ -f build/native/libemoncapdrain.so ] || die "not built: build/native/libemoncapdrain.so (npm run build:native)"
# The page of `ebpfmonctl ui` (client/ui, bundled by npm run build:ui).
ui_files=(build/ui/index.html build/ui/app.js build/ui/world.svg build/ui/THIRD-PARTY.json)
for f in "${ui_files[@]}"; do [ -f "$f" ] || die "not built: $f (npm run build)"; done

# --- production node_modules ------------------------------------------------------------
rm -rf "$out/stage" "$out/root"
mkdir -p "$out/stage"
cp package.json package-lock.json "$out/stage/"
log "npm ci --omit=dev into $out/stage"
npm_ci() { (cd "$out/stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error "$@" >&2); }
if ! npm_ci --offline 2>"$out/npm-offline.log"; then
  log "npm's cache lacks a locked package ($(grep -m1 -o 'ENOTCACHED.*' "$out/npm-offline.log" || echo "see $out/npm-offline.log")); retrying with the registry"
  npm_ci --prefer-offline
fi
node "$pkg/prune-modules.mjs" "$out/stage" >&2
[ -f "$out/stage/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node" ] || die "koffi's linux-x64 binary is missing from the staged modules"

# --- the tree ---------------------------------------------------------------------------
umask 022
r="$out/root"
lib="$r/usr/lib/ebpfmon"
install -d "$lib/build/bpf" "$r/usr/sbin" "$r/usr/bin" "$r/usr/lib/systemd/system" "$r/usr/lib/sysusers.d" \
  "$r/etc/ebpfmon" "$r/usr/share/man/man1" "$r/usr/share/man/man8" "$r/usr/share/doc/ebpfmon" "$r/DEBIAN"

# package.json: what the installed program reads (version; "type": "module" for the .js files).
node -e '
  const p = require(process.argv[1]);
  const keep = { name: p.name, version: p.version, description: p.description, license: p.license, type: p.type, private: p.private, engines: p.engines, dependencies: p.dependencies };
  require("fs").writeFileSync(process.argv[2], JSON.stringify(keep, null, 2) + "\n");
' "$root/package.json" "$lib/package.json"
for s in "${sources[@]}"; do install -D -m 0644 "build/js/${s%.ts}.js" "$lib/build/js/${s%.ts}.js"; done
install -m 0644 build/js/client/src/ebpfmonctl.js "$lib/build/js/client/src/"
install -m 0644 "${daemon_bundle[@]}" "$lib/build/js/daemon/src/"
install -m 0644 "${objects[@]}" "$lib/build/bpf/"
install -d "$lib/build/native"
# Stripped (lintian: unstripped-binary-or-object); not a public library: no soname, no symlinks.
install -m 0644 --strip build/native/libemoncapdrain.so "$lib/build/native/"
install -d "$lib/build/ui"
install -m 0644 build/ui/index.html build/ui/app.js build/ui/world.svg "$lib/build/ui/"
cp -a "$out/stage/node_modules" "$lib/node_modules"
install -m 0755 "$pkg/bin/ebpfmon-mounts" "$lib/ebpfmon-mounts"

install -m 0755 "$pkg/bin/ebpfmon" "$r/usr/sbin/ebpfmon"
install -m 0755 "$pkg/bin/ebpfmonctl" "$r/usr/bin/ebpfmonctl"
install -m 0755 "$pkg/bin/ebpfmon-widget" "$r/usr/bin/ebpfmon-widget"
install -m 0644 systemd/ebpfmon.service "$r/usr/lib/systemd/system/"
install -m 0644 "$pkg/sysusers.d/ebpfmon.conf" "$r/usr/lib/sysusers.d/"
install -m 0644 "$pkg/config/ebpfmon.json" "$r/etc/ebpfmon/"
# Written by other parts of the project: installed when present.
if [ -f "$pkg/dbus/org.ebpfmon1.conf" ]; then
  install -D -m 0644 "$pkg/dbus/org.ebpfmon1.conf" "$r/usr/share/dbus-1/system.d/org.ebpfmon1.conf"
else
  log "note: packaging/dbus/org.ebpfmon1.conf not found: no D-Bus policy in this package"
fi
if [ -f "$pkg/polkit/org.ebpfmon1.policy" ]; then
  install -D -m 0644 "$pkg/polkit/org.ebpfmon1.policy" "$r/usr/share/polkit-1/actions/org.ebpfmon1.policy"
else
  log "note: packaging/polkit/org.ebpfmon1.policy not found: no polkit action in this package"
fi
# Wireshark's global Lua plugin folder (tshark -G folders: "Global Lua Plugins"): the
# capture file's process data as ebpfmon.* fields.
install -D -m 0644 "$pkg/wireshark/ebpfmon.lua" "$r/usr/lib/x86_64-linux-gnu/wireshark/plugins/ebpfmon.lua"
# The GNOME Shell extension (GNOME 43/44): installed system-wide, enabled by each user
# (gnome-extensions enable ebpfmon@ebpfmon.org, or the Extensions app).
ext="ebpfmon@ebpfmon.org"
install -d "$r/usr/share/gnome-shell/extensions/$ext"
install -m 0644 "$pkg/gnome-shell/$ext/metadata.json" "$pkg/gnome-shell/$ext/extension.js" "$r/usr/share/gnome-shell/extensions/$ext/"
if [ -f "$pkg/lintian-overrides" ]; then
  install -D -m 0644 "$pkg/lintian-overrides" "$r/usr/share/lintian/overrides/ebpfmon"
fi

gzip -9nc "$pkg/man/ebpfmon.8" > "$r/usr/share/man/man8/ebpfmon.8.gz"
gzip -9nc "$pkg/man/ebpfmonctl.1" > "$r/usr/share/man/man1/ebpfmonctl.1.gz"
gzip -9nc "$pkg/man/ebpfmon-widget.1" > "$r/usr/share/man/man1/ebpfmon-widget.1.gz"
doc="$r/usr/share/doc/ebpfmon"
gzip -9nc "$pkg/debian/changelog" > "$doc/changelog.Debian.gz"
node "$pkg/copyright.mjs" "$pkg/debian/copyright.in" "$out/stage" build/ui > "$doc/copyright"
gzip -9nc README.md > "$doc/README.md.gz"
for f in docs/*.md; do [ "$f" != docs/testing.md ] || continue; gzip -9nc "$f" > "$doc/$(basename "$f").gz"; done

# Modes: npm keeps whatever bits its tarballs had; normalise. Nothing under
# /usr/lib/ebpfmon is run directly except ebpfmon-mounts (node loads the rest)...
find "$r" -type d -exec chmod 0755 {} +
find "$r/usr/lib/ebpfmon" -type f ! -path "$lib/ebpfmon-mounts" -exec chmod 0644 {} +
# ... except scripts with a #! line (the two entry points, a module's own command), which
# stay executable as their authors meant; nothing on PATH points at them.
# (One node process reads the first two bytes of each file: a `head` per file took 6 s.)
find "$lib/build/js" "$lib/node_modules" -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' \) -print0 | node -e '
  const fs = require("fs");
  const b = Buffer.alloc(2);
  for (const f of fs.readFileSync(0, "utf8").split("\0").filter(Boolean)) {
    const fd = fs.openSync(f, "r");
    const n = fs.readSync(fd, b, 0, 2, 0);
    fs.closeSync(fd);
    if (n === 2 && b.toString("latin1") === "#!") fs.chmodSync(f, 0o755);
  }'

# DuckDB's prebuilt binding (history) ships with its symbol tables: strip them as Debian
# strips what it builds (lintian: unstripped-binary-or-object); the dynamic symbols node
# loads stay. (koffi's prebuilt binary comes stripped.)
find "$lib/node_modules/@duckdb" -type f \( -name '*.node' -o -name '*.so' \) -exec strip --strip-unneeded {} +

# --- DEBIAN/ ------------------------------------------------------------------------------
# koffi.node links libc, libstdc++ and libgcc_s; its N-API symbols come from node itself
# (warnings off: dpkg-shlibdeps cannot know that).
shlibs="$(cd "$out" && mkdir -p shlibs/debian && printf 'Source: ebpfmon\n\nPackage: ebpfmon\nArchitecture: amd64\n' > shlibs/debian/control &&
  cd shlibs && dpkg-shlibdeps --warnings=0 -O -e"$lib/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node" -e"$lib/build/native/libemoncapdrain.so" | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies for koffi.node"
# Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, 1 per directory or link.
installed_size="$(find "$r" -path "$r/DEBIAN" -prune -o \( -type f -printf '%s\n' -o -printf '1024\n' \) | awk '{ s += int(($1 + 1023) / 1024) } END { print s }')"

cat > "$r/DEBIAN/control" <<EOF
Package: ebpfmon
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: nodejs (>= 20), libbpf1 (>= 1:1.1), libpcap0.8, libsystemd0, systemd | systemd-standalone-sysusers | systemd-sysusers, mount, $shlibs
Recommends: dbus
Section: net
Priority: optional
Description: eBPF flow monitor: which process talks to whom, and how much
 ebpfmon is a daemon that keeps eBPF programs pinned and attached in the kernel:
 a TC classifier on every monitored interface counts every flow, and socket
 probes record which process opened, connected, bound or accepted each socket.
 Monitoring continues across daemon restarts and upgrades.
 .
 The unprivileged client ebpfmonctl lists flows, live per-process bandwidth and
 connect, accept, close, exec and exit events; each user sees their own traffic,
 members of the group ebpfmon see all of it. The daemon also includes an XDP
 layer-4 load balancer.
 .
 It needs Node.js 20 or later; Debian 12's own nodejs is 18 (see
 /usr/share/doc/ebpfmon/packaging.md.gz for how to get a newer one).
EOF
echo /etc/ebpfmon/ebpfmon.json > "$r/DEBIAN/conffiles"
install -m 0755 "$pkg/debian/postinst" "$pkg/debian/prerm" "$pkg/debian/postrm" "$r/DEBIAN/"
(cd "$r" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$r/DEBIAN/control" "$r/DEBIAN/conffiles" "$r/DEBIAN/md5sums"
find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

rm -f "$deb"
xz_level=()
if [ -n "${EBPFMON_PACKAGE_XZ_LEVEL:-}" ]; then
  case "$EBPFMON_PACKAGE_XZ_LEVEL" in [0-9]) xz_level=(-z "$EBPFMON_PACKAGE_XZ_LEVEL") ;; *) die "EBPFMON_PACKAGE_XZ_LEVEL must be a digit 0-9, not '$EBPFMON_PACKAGE_XZ_LEVEL'" ;; esac
fi
dpkg-deb --root-owner-group -Zxz "${xz_level[@]}" --build "$r" "$deb" >/dev/null
files="$(find "$r" -path "$r/DEBIAN" -prune -o -type f -print | wc -l)"
log "built $deb: $(du -h "$deb" | cut -f1) compressed, ${installed_size} KiB installed, $files files"

# --- lintian --------------------------------------------------------------------------------
if [ "${EBPFMON_PACKAGE_LINTIAN:-1}" != 0 ]; then
  if command -v lintian >/dev/null; then
    log "lintian"
    lint="$(lintian --no-cfg --tag-display-limit 0 "$deb" 2>&1 || true)"
    [ -z "$lint" ] || printf '%s\n' "$lint" >&2
    if printf '%s\n' "$lint" | grep -q '^E: '; then die "lintian reported errors"; fi
    log "lintian: no errors ($(printf '%s\n' "$lint" | grep -c '^W: ' || true) warnings)"
  else
    log "lintian is not installed: skipped (scripts/setup.sh test installs it)"
  fi
fi
printf '%s\n' "$deb"
