#!/usr/bin/env bash
# `npm run package:deb`: build dist/nsidmap_<version>_<arch>.deb with dpkg-deb alone (no debhelper).
#
#   /usr/lib/nsidmap/{dist,node_modules,package.json}   the program, production dependencies only
#   /usr/lib/nsidmap/bin/nsidmap-upcall                 the request-key helper, compiled for
#                                                       /usr/bin/node and /usr/lib/nsidmap/dist/…
#   /usr/sbin/nsidmapd, /usr/bin/idmapctl                wrappers (node by absolute path)
#   /lib/systemd/system/nsidmapd.service                 the unit
#   /etc/request-key.d/nsidmap.conf, /etc/nsidmap/policy.yaml   conffiles
#   /usr/share/man/…, /usr/share/bash-completion/…, /usr/share/doc/nsidmap/…
#
# The tree is staged by contrib/install.sh (DESTDIR, --prefix …: the same paths, wrappers and
# helper build as a manual install), then pruned, documented and packed. The maintainer scripts
# are contrib/debian/{postinst,prerm,postrm}.
#
# Needs: dpkg-deb, a C compiler, node >= 20 at /usr/bin/node (the node the package depends on
# is Debian's or NodeSource's nodejs, which installs it there; native modules are built for it),
# `npm ci` done. Environment: DEB_MAINTAINER (default "nsidmap developers <nsidmap@example.org>"),
# SOURCE_DATE_EPOCH (reproducible dates), NSIDMAP_DEB_SKIP_BUILD=1 (use dist/ as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

die() { echo "package-deb: error: $*" >&2; exit 1; }
say() { echo "package-deb: $*"; }

NODE=/usr/bin/node
PREFIX=/usr/lib/nsidmap
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
[ -x "$NODE" ] || die "$NODE not found: the package runs Debian's node at $NODE; install nodejs (>= 20)"
"$NODE" -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || die "$NODE is older than Node 20"
[ -d node_modules ] || die "node_modules is missing: run npm ci"

version=$("$NODE" -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
node_arch=$("$NODE" -p process.arch)
deb=dist/nsidmap_${version}_${arch}.deb
# outside dist/: install.sh copies dist/ into the stage
work=$(mktemp -d "${TMPDIR:-/tmp}/nsidmap-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

# ---- build ---------------------------------------------------------------------------------
if [ -z "${NSIDMAP_DEB_SKIP_BUILD:-}" ]; then
  say "building (tsc, upcall helper, man pages)"
  npm run --silent build
fi
npm run --silent man -- "$work/man" >/dev/null

# ---- stage with contrib/install.sh ---------------------------------------------------------
rm -f dist/nsidmap_*.deb
mkdir -p "$stage"
say "staging with contrib/install.sh"
bash contrib/install.sh --destdir "$stage" --prefix "$PREFIX" --node "$NODE" \
  --unitdir /lib/systemd/system --bindir /usr/bin --sbindir /usr/sbin | sed 's/^/  /'
# dpkg owns these files: install.sh --uninstall's manifest has no place in a package
rm -f "$stage$PREFIX/install-manifest"

helper=$stage$PREFIX/bin/nsidmap-upcall
[ "$(head -c 4 "$helper" | od -An -c | tr -d ' ')" = '177ELF' ] || die "$helper is not a compiled helper (no C compiler?): a package must not ship the slow Node wrapper"
"$helper" --help | grep -qF "$NODE $PREFIX/dist/keyring/upcall.js" \
  || die "the helper does not have $NODE $PREFIX/dist/keyring/upcall.js compiled in: $("$helper" --help | grep -i fallback || true)"

# ---- prune what the program never loads ----------------------------------------------------
# install.sh copies all of dist/: keep what tsc built (src/, keyring/), not whatever else lies there
find "$stage$PREFIX/dist" -mindepth 1 -maxdepth 1 ! -name src ! -name keyring -exec rm -rf {} +
nm=$stage$PREFIX/node_modules
# koffi ships prebuilt binaries for ~18 platforms: keep this one
if [ -d "$nm/koffi/build/koffi" ]; then
  [ -d "$nm/koffi/build/koffi/linux_$node_arch" ] || die "koffi has no prebuilt linux_$node_arch"
  find "$nm/koffi/build/koffi" -mindepth 1 -maxdepth 1 ! -name "linux_$node_arch" -exec rm -rf {} +
  rm -rf "$nm/koffi/src" "$nm/koffi/vendor" "$nm/koffi/doc"
fi
# better-sqlite3: the addon, not its sources, the SQLite amalgamation or the object files
if [ -d "$nm/better-sqlite3/build/Release" ]; then
  rm -rf "$nm/better-sqlite3/deps" "$nm/better-sqlite3/src"
  find "$nm/better-sqlite3/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$nm/better-sqlite3/build/Release" -mindepth 1 ! -name better_sqlite3.node -exec rm -rf {} +
fi
find "$nm" \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' -o -name '*.tsbuildinfo' \) -type f -delete
find "$nm" -name '.*' -maxdepth 3 \( -type f -o -type d \) -prune -exec rm -rf {} +

# ---- the rest of the tree ------------------------------------------------------------------
install -D -m 0644 contrib/debian/policy.yaml "$stage/etc/nsidmap/policy.yaml"
for f in "$work"/man/*.[0-9]; do
  s=${f##*.}
  mkdir -p "$stage/usr/share/man/man$s"
  gzip -9n <"$f" >"$stage/usr/share/man/man$s/$(basename "$f").gz"
done
install -D -m 0644 contrib/bash-completion/idmapctl "$stage/usr/share/bash-completion/completions/idmapctl"
doc=$stage/usr/share/doc/nsidmap
install -D -m 0644 README.md "$doc/README.md"
for f in docs/*.md; do install -m 0644 "$f" "$doc/"; done
mkdir -p "$doc/examples"
cp -R policies/. "$doc/examples/"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nsidmap
Source: the nsidmap source tree (package.json "license": $("$NODE" -p 'require("./package.json").license'))

Files: *
License: GPL-2.0-or-later
 On Debian systems the full text of the GNU General Public License version 2 is in
 /usr/share/common-licenses/GPL-2.

Files: usr/lib/nsidmap/node_modules/*
License: various (each package's LICENSE file, beside it)
EOF
{
  echo "nsidmap ($version) unstable; urgency=medium"
  echo
  echo "  * Package built from the nsidmap source tree."
  echo
  echo " -- ${DEB_MAINTAINER:-nsidmap developers <nsidmap@example.org>}  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"

# ---- DEBIAN/ -------------------------------------------------------------------------------
D=$stage/DEBIAN
mkdir -p "$D"
for s in postinst prerm postrm; do install -m 0755 "contrib/debian/$s" "$D/$s"; done
printf '%s\n' /etc/nsidmap/policy.yaml /etc/request-key.d/nsidmap.conf >"$D/conffiles"

# Shared libraries the ELF files need → packages; libc6 versioned by the newest GLIBC_ symbol.
depends_libs() {
  local libs glibc pkgs=() lib path pkg
  libs=$(find "$stage" -path "$D" -prune -o -type f -print0 | xargs -0 file -N | awk -F: '/ELF/ { print $1 }' \
    | xargs -r objdump -p 2>/dev/null | awk '/NEEDED/ { print $2 }' | sort -u)
  glibc=$(find "$stage" -path "$D" -prune -o -type f -print0 | xargs -0 file -N | awk -F: '/ELF/ { print $1 }' \
    | xargs -r objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
  for lib in $libs; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
    [ -n "$path" ] || continue
    # dpkg knows the path it unpacked (/lib/… on a merged-/usr system), so try it before the real one
    pkg=$( (dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null) | head -n 1 | cut -d: -f1) || true
    [ -n "$pkg" ] && pkgs+=("$pkg")
  done
  for pkg in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
    if [ "$pkg" = libc6 ] && [ -n "$glibc" ]; then echo "libc6 (>= $glibc)"; else echo "$pkg"; fi
  done
}
command -v objdump >/dev/null && command -v file >/dev/null || die "objdump and file are needed to work out the library dependencies (apt-get install binutils file)"
libdeps=$(depends_libs | paste -sd, | sed 's/,/, /g')
case $libdeps in *libc6*) ;; *) libdeps="libc6${libdeps:+, $libdeps}" ;; esac

# normal modes: directories 0755, files without group/other write
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod go-w {} +
chmod 0644 "$stage/etc/nsidmap/policy.yaml" "$stage/etc/request-key.d/nsidmap.conf" "$D/conffiles"

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum | sed 's|  \./|  |') >"$D/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

cat >"$D/control" <<EOF
Package: nsidmap
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-nsidmap developers <nsidmap@example.org>}
Installed-Size: $size
Depends: nodejs (>= 20), keyutils, $libdeps
Recommends: mount
Suggests: nfs-common, cifs-utils
Section: net
Priority: optional
Description: container-aware identity mapping daemon for NFSv4 and SMB
 nsidmap answers the kernel's identity-mapping requests — NFSv4 owner names
 to uids and gids and back (id_resolver keys, the rpc_pipefs upcall, nfsd's
 idmap caches) and Windows SIDs to ids and back (cifs.idmap keys) — from one
 policy, in place of nfsidmap, rpc.idmapd and cifs.idmap.
 .
 Scopes choose per request, per id range, per domain and per container which
 sources answer (files, NSS, static tables, LDAP/Active Directory, algorithmic
 SID ranges), in which id space, and whether root is squashed. idmapctl
 explains every answer, inspects the caches and tests policies.
EOF

# smoke test of the staged program: its own node_modules, the shipped policy
"$NODE" "$stage$PREFIX/dist/src/cli/main.js" policy check "$stage/etc/nsidmap/policy.yaml" >/dev/null \
  || die "the staged idmapctl cannot check the shipped policy"

mkdir -p "$(dirname "$deb")"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB)"
say "Depends: nodejs (>= 20), keyutils, $libdeps"
