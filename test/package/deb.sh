#!/usr/bin/env bash
# test/package/deb.sh — prove the Debian package in a fresh Debian root (manual / CI; not npm test:
# it takes a minute or more, needs root and Debian's mirror).
#
#   1. builds dist/nsidmap_<version>_<arch>.deb (npm run package:deb), unless NSIDMAP_DEB is given
#   2. makes a minimal Debian root with debootstrap — cached as a tarball per suite and arch under
#      the work dir, so reruns only unpack it — and puts node >= 20 in it: Debian's nodejs when the
#      suite has one, else the host's node repacked as a local `nodejs` .deb (as the host has it:
#      a nodejs package providing /usr/bin/node)
#   3. in a chroot, with a policy-rc.d that forbids starting services:
#        dpkg -i; idmapctl policy check; idmapctl query both ways; the installed daemon, by hand;
#        dpkg -r (no id_resolver/cifs.idmap rule left that names a missing program); reinstall;
#        dpkg -P (nothing left)
#      then the same next to nfs-common's and cifs-utils' own rules (warned about, never changed)
#   4. prints `N passed, N failed`
#
# Environment:
#   NSIDMAP_DEB          a .deb to test instead of building one
#   NSIDMAP_DEB_SUITE    Debian suite of the root (default: the host's, e.g. bookworm)
#   NSIDMAP_DEB_MIRROR   default http://deb.debian.org/debian
#   NSIDMAP_DEB_WORK     work dir (default /var/tmp/nsidmap-deb-test): base tarballs, apt archives
#   NSIDMAP_DEB_KEEP=1   keep the root afterwards (its path is printed)
set -uo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
suite=${NSIDMAP_DEB_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
mirror=${NSIDMAP_DEB_MIRROR:-http://deb.debian.org/debian}
work=${NSIDMAP_DEB_WORK:-/var/tmp/nsidmap-deb-test}
arch=$(dpkg --print-architecture)
t_start=$(date +%s.%N)

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $*"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'; return 0; }
summary() {
  echo "# took $(awk "BEGIN { printf \"%.0f\", $(date +%s.%N) - $t_start }") s"
  echo "$pass passed, $fail failed"
}
die() { not_ok "setup: $1" "${2:-}"; summary; exit 1; }
# check NAME CMD…: ok when CMD succeeds
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi; }
# expect NAME ACTUAL WANTED
expect() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got:  $2
want: $3"; fi; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, dpkg in the root)"
mkdir -p "$work" || die "cannot create $work"

# ---- 1. the package ------------------------------------------------------------------------
if [ -n "${NSIDMAP_DEB:-}" ]; then
  deb=$(readlink -f "$NSIDMAP_DEB")
else
  echo "# building the package"
  (cd "$repo" && npm run --silent package:deb) >"$work/package.log" 2>&1 || die "npm run package:deb failed" "$(tail -n 20 "$work/package.log")"
  deb=$(ls -t "$repo"/dist/nsidmap_*_"$arch".deb 2>/dev/null | head -n 1)
fi
[ -f "$deb" ] || die "no package to test"
echo "# package: $deb ($(du -h "$deb" | cut -f1))"
echo "# $(dpkg-deb -f "$deb" Package Version Architecture Depends | tr '\n' ' ')"

# ---- 2. a fresh Debian root ----------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
  echo "# installing debootstrap"
  apt-get install -y -qq debootstrap >"$work/apt.log" 2>&1 \
    || { apt-get update -qq >>"$work/apt.log" 2>&1 && apt-get install -y -qq debootstrap >>"$work/apt.log" 2>&1; } \
    || die "apt-get install debootstrap failed" "$(tail -n 5 "$work/apt.log")"
fi
base=$work/base-$suite-$arch.tar.gz
if [ ! -f "$base" ]; then
  echo "# debootstrap --variant=minbase $suite (once; cached as $base)"
  t=$(date +%s)
  rm -rf "$work/base.tmp"
  debootstrap --variant=minbase --arch="$arch" "$suite" "$work/base.tmp" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || die "debootstrap could not make a $suite root from $mirror (see $work/debootstrap.log)" "$(tail -n 5 "$work/debootstrap.log")"
  rm -rf "$work/base.tmp/var/cache/apt/archives/"*.deb
  tar -C "$work/base.tmp" -czf "$base.tmp" . && mv "$base.tmp" "$base" || die "cannot write $base"
  rm -rf "$work/base.tmp"
  echo "# debootstrap took $(($(date +%s) - t)) s"
fi
root=$(mktemp -d "$work/root.XXXXXX")
cleanup() {
  if [ -n "${NSIDMAP_DEB_KEEP:-}" ]; then echo "# root kept: $root"; else rm -rf "$root"; fi
}
trap cleanup EXIT
tar -C "$root" -xzf "$base" || die "cannot unpack $base"
archives=$work/archives-$suite-$arch
mkdir -p "$archives/partial"
# services are never started in the root (invoke-rc.d and deb-systemd-invoke ask this)
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# in_root CMD…: run in the root, with /proc and the shared apt archive mounted in a private mount
# namespace (gone when the command ends: nothing to unmount, even after a failure)
in_root() {
  ${IN_ROOT_EXEC:-} unshare --mount --propagation private -- sh -c '
    r=$1; a=$2; shift 2
    mount -t proc proc "$r/proc" && mount --bind "$a" "$r/var/cache/apt/archives" || exit 99
    exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
  ' in_root "$root" "$archives" "$@"
}
apt_in_root() {
  in_root apt-get install -y -qq --no-install-recommends "$@" >>"$work/apt-root.log" 2>&1 && return 0
  in_root apt-get update -qq >>"$work/apt-root.log" 2>&1 && in_root apt-get install -y -qq --no-install-recommends "$@" >>"$work/apt-root.log" 2>&1
}
: >"$work/apt-root.log"

# node >= 20: Debian's nodejs when this suite has one, else the host's node as a local package
node_candidate=$(in_root apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ { print $2 }')
node_major=$(echo "${node_candidate:-0}" | sed 's/^[0-9]*://; s/[^0-9].*//')
if [ -n "$node_candidate" ] && [ "$node_candidate" != "(none)" ] && [ "${node_major:-0}" -ge 20 ]; then
  apt_in_root nodejs || die "apt-get install nodejs ($node_candidate) failed in the root" "$(tail -n 5 "$work/apt-root.log")"
  echo "# nodejs $node_candidate from $suite"
else
  host_node=$(readlink -f "$(command -v node)")
  host_ver=$("$host_node" -p 'process.versions.node')
  [ "${host_ver%%.*}" -ge 20 ] || die "the host's node ($host_node, $host_ver) is older than 20 too"
  echo "# $suite has nodejs ${node_candidate:-none} (< 20): the host's node $host_ver ($host_node) goes in as a local nodejs package"
  nd=$(mktemp -d "$work/nodejs.XXXXXX")
  install -D -m 0755 "$host_node" "$nd/usr/bin/node"
  mkdir -p "$nd/DEBIAN"
  cat >"$nd/DEBIAN/control" <<EOF
Package: nodejs
Version: $host_ver-0host1
Architecture: $arch
Maintainer: test/package/deb.sh <root@localhost>
Depends: libc6, libstdc++6, libgcc-s1
Description: the host's node binary, repacked for the package test
 Copied from $host_node on the machine that ran test/package/deb.sh.
EOF
  dpkg-deb --root-owner-group -Zgzip -z1 --build "$nd" "$root/tmp/nodejs-host.deb" >/dev/null || die "cannot repack the host's node"
  rm -rf "$nd"
  in_root dpkg -i /tmp/nodejs-host.deb >>"$work/apt-root.log" 2>&1 || die "dpkg -i of the repacked node failed" "$(tail -n 5 "$work/apt-root.log")"
fi
check "node in the root runs, and is >= 20 ($(in_root node --version 2>&1))" in_root node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'
apt_in_root keyutils || die "apt-get install keyutils failed in the root" "$(tail -n 5 "$work/apt-root.log")"

cp "$deb" "$root/tmp/nsidmap.deb"

# ---- helpers for the checks ------------------------------------------------------------------
# Active request-key rules for id_resolver / cifs.idmap whose program is missing in the root.
broken_rules() {
  local f line op type prog
  for f in "$root"/etc/request-key.d/*.conf "$root/etc/request-key.conf"; do
    [ -f "$f" ] || continue
    while read -r op type _ _ prog _; do
      case $op in create | '*') ;; *) continue ;; esac
      case $type in id_resolver | cifs.idmap | '*') ;; *) continue ;; esac
      prog=${prog#|}
      [ -x "$root$prog" ] || echo "${f#"$root"}: $op $type … $prog (missing)"
    done <"$f"
  done
}
active_rules() { # active_rules TYPE: "file:program" of every create rule for TYPE
  local f op type prog
  for f in "$root"/etc/request-key.d/*.conf "$root/etc/request-key.conf"; do
    [ -f "$f" ] || continue
    while read -r op type _ _ prog _; do
      [ "$op" = create ] && [ "$type" = "$1" ] && echo "${f#"$root"}:$prog"
    done <"$f"
  done | sort
}
unit_links() { find "$root/etc/systemd" -name 'nsidmapd.service' 2>/dev/null | sed "s|^$root||" | sort; }

# ---- 3a. a clean root: install, use, remove, reinstall, purge -----------------------------------
echo "# dpkg -i in a fresh $suite root"
out=$(in_root dpkg -i /tmp/nsidmap.deb 2>&1)
rc=$?
echo "$out" | sed 's/^/#   /'
expect "dpkg -i nsidmap.deb succeeds (Depends satisfied, maintainer scripts ran)" "$rc" 0
expect "dpkg says: installed" "$(in_root dpkg-query -W -f '${Status}' nsidmap 2>&1)" "install ok installed"
case $out in *"other request-key rules"*) not_ok "no competing-rules warning where there are none" "$out" ;; *) ok "no competing-rules warning where there are none" ;; esac
for f in /usr/bin/idmapctl /usr/sbin/nsidmapd /usr/lib/nsidmap/bin/nsidmap-upcall; do
  check "$f is installed and executable" test -x "$root$f"
done
for f in /lib/systemd/system/nsidmapd.service /etc/request-key.d/nsidmap.conf /etc/nsidmap/policy.yaml \
  /usr/share/man/man8/nsidmapd.8.gz /usr/share/man/man8/idmapctl.8.gz /usr/share/man/man5/nsidmap-policy.5.gz \
  /usr/share/bash-completion/completions/idmapctl /usr/share/doc/nsidmap/migration.md /usr/share/doc/nsidmap/troubleshooting.md; do
  check "$f is installed" test -f "$root$f"
done
expect "conffiles: the policy and the request-key rules" \
  "$(in_root dpkg-query -W -f '${Conffiles}' nsidmap | awk 'NF { print $1 }' | sort | tr '\n' ' ')" "/etc/nsidmap/policy.yaml /etc/request-key.d/nsidmap.conf "
expect "the rules run the installed helper (absolute path)" \
  "$(active_rules id_resolver; active_rules cifs.idmap)" "/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall
/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall"
help=$(in_root /usr/lib/nsidmap/bin/nsidmap-upcall --help 2>&1)
case $help in
  *"/usr/bin/node /usr/lib/nsidmap/dist/keyring/upcall.js"*) ok "the helper's compiled-in fallback is /usr/bin/node /usr/lib/nsidmap/dist/keyring/upcall.js" ;;
  *) not_ok "the helper's compiled-in fallback is /usr/bin/node /usr/lib/nsidmap/dist/keyring/upcall.js" "$help" ;;
esac
check "... and both exist in the root" test -x "$root/usr/bin/node" -a -f "$root/usr/lib/nsidmap/dist/keyring/upcall.js"
if [ -x "$root/usr/bin/deb-systemd-helper" ]; then
  expect "the unit is enabled (deb-systemd-helper, no systemd running)" "$(unit_links | grep wants)" "/etc/systemd/system/multi-user.target.wants/nsidmapd.service"
else
  echo "# no deb-systemd-helper in this root: enable was left to systemctl"
fi
check "the daemon was not started (policy-rc.d, no systemd): no admin socket" test ! -e "$root/run/nsidmap/admin.sock"

out=$(in_root idmapctl policy check /etc/nsidmap/policy.yaml 2>&1)
expect "idmapctl policy check /etc/nsidmap/policy.yaml" "$out" "/etc/nsidmap/policy.yaml: ok"
check "nsidmapd --check" in_root nsidmapd --check --policy /etc/nsidmap/policy.yaml
name=$(in_root idmapctl query user 0 --policy /etc/nsidmap/policy.yaml 2>&1)
domain=${name#root@}
case $name in root@?*) ok "idmapctl query user 0 → $name" ;; *) not_ok "idmapctl query user 0 → root@<domain>" "$name" ;; esac
out=$(in_root idmapctl query uid "root@$domain" --policy /etc/nsidmap/policy.yaml 2>&1)
expect "idmapctl query uid root@$domain --policy /etc/nsidmap/policy.yaml → 0" "$out" "0"
echo "$(in_root idmapctl query uid "root@$domain" --policy /etc/nsidmap/policy.yaml --explain 2>&1)" | sed 's/^/#   /'
out=$(in_root idmapctl query uid "nosuchuser@$domain" --policy /etc/nsidmap/policy.yaml 2>&1)
rc=$?
expect "an unknown name falls through files and NSS (koffi) to nobody, exit 1" "$rc ${out%% *}" "1 65534"

# the installed daemon, started by hand (no systemd here): admin socket, status, a lookup, the
# helper's dry run through it
# (exec all the way down: $! is the daemon itself)
(IN_ROOT_EXEC=exec in_root sh -c 'mkdir -p /run/nsidmap /var/cache/nsidmap /var/lib/nsidmap && exec nsidmapd --serve none >/var/log/nsidmapd.log 2>&1') &
dpid=$!
for _ in $(seq 50); do [ -S "$root/run/nsidmap/admin.sock" ] && break; sleep 0.2; done
status=$(in_root idmapctl status 2>&1)
case $status in "nsidmapd "*", pid "*) ok "the installed nsidmapd answers idmapctl status" ;; *) not_ok "the installed nsidmapd answers idmapctl status" "$status$(cat "$root/var/log/nsidmapd.log" 2>/dev/null)" ;; esac
echo "$status" | sed 's/^/#   /'
expect "idmapctl query uid root@$domain (through the daemon) → 0" "$(in_root idmapctl query uid "root@$domain" 2>&1)" "0"
expect "nsidmap-upcall --dry-run nfs uid:root@$domain (through the daemon)" \
  "$(in_root /usr/lib/nsidmap/bin/nsidmap-upcall --dry-run nfs "uid:root@$domain" 2>&1 | cut -d' ' -f1-2)" "instantiate 3000"
kill -TERM "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null
expect "… it stops on SIGTERM" "$(kill -0 "$dpid" 2>/dev/null; echo $?)" 1
check "the daemon made its cache in /var/cache/nsidmap" test -f "$root/var/cache/nsidmap/cache.sqlite"

# the unit, against the man pages it names (systemd-analyze on the host, if there)
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify of the installed unit (man pages from the package)" \
    env MANPATH="$root/usr/share/man" systemd-analyze verify "$root/lib/systemd/system/nsidmapd.service"
fi

echo "# dpkg -i over the installed package (an upgrade: prerm upgrade, postinst configure <old>)"
echo "# admin edit" >>"$root/etc/nsidmap/policy.yaml"
out=$(in_root dpkg -i --force-confold /tmp/nsidmap.deb 2>&1)
expect "upgrade in place succeeds" "$?" 0
check "… the admin's edit of the policy (a conffile) is kept" grep -q '^# admin edit' "$root/etc/nsidmap/policy.yaml"
expect "… the rules stay in force" "$(active_rules id_resolver)" "/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall"

echo "# dpkg -r"
out=$(in_root dpkg -r nsidmap 2>&1)
expect "dpkg -r nsidmap succeeds" "$?" 0
echo "$out" | sed 's/^/#   /'
expect "after dpkg -r no id_resolver/cifs.idmap rule names a missing program" "$(broken_rules)" ""
expect "… the rule file is parked, not deleted (a conffile of a removed package)" \
  "$(ls "$root/etc/request-key.d/" | tr '\n' ' ')" "nsidmap.conf.dpkg-remove "
check "… the helper is gone" test ! -e "$root/usr/lib/nsidmap/bin/nsidmap-upcall"
check "… the unit is masked while only its configuration is left" test "$(readlink "$root/etc/systemd/system/nsidmapd.service" 2>/dev/null)" = /dev/null

echo "# dpkg -i again (reinstall over the kept configuration)"
out=$(in_root dpkg -i /tmp/nsidmap.deb 2>&1)
expect "reinstall succeeds" "$?" 0
expect "… the parked rules are back in force" "$(active_rules id_resolver)" "/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall"
check "… the unit is unmasked and enabled again" test -L "$root/etc/systemd/system/multi-user.target.wants/nsidmapd.service" -a ! -L "$root/etc/systemd/system/nsidmapd.service"
in_root dpkg -r nsidmap >/dev/null 2>&1

echo "# dpkg -P"
out=$(in_root dpkg -P nsidmap 2>&1)
expect "dpkg -P nsidmap succeeds" "$?" 0
echo "$out" | sed 's/^/#   /'
expect "… dpkg knows nothing of it" "$(in_root dpkg-query -W -f '${Status}' nsidmap 2>/dev/null)" ""
for d in /etc/nsidmap /var/cache/nsidmap /var/lib/nsidmap /usr/lib/nsidmap; do
  check "… $d is gone" test ! -e "$root$d"
done
expect "… no request-key rule file of nsidmap is left" "$(ls "$root/etc/request-key.d/" | grep nsidmap)" ""
expect "… no systemd link to the unit is left" "$(unit_links)" ""
expect "… and no broken rule" "$(broken_rules)" ""

# ---- 3b. next to nfs-common and cifs-utils ------------------------------------------------------
echo "# next to nfs-common and cifs-utils (their own id_resolver / cifs.idmap rules)"
if apt_in_root nfs-common cifs-utils; then
  before=$(cd "$root/etc/request-key.d" && md5sum id_resolver.conf cifs.idmap.conf 2>&1)
  out=$(in_root dpkg -i /tmp/nsidmap.deb 2>&1)
  expect "dpkg -i next to them succeeds" "$?" 0
  echo "$out" | sed 's/^/#   /'
  case $out in
    *"other request-key rules also answer"*id_resolver.conf:*cifs.idmap.conf:* | *"other request-key rules also answer"*cifs.idmap.conf:*id_resolver.conf:*)
      ok "postinst warns about both, naming file and line" ;;
    *) not_ok "postinst warns about both, naming file and line" "$out" ;;
  esac
  expect "… and leaves them as they were" "$(cd "$root/etc/request-key.d" && md5sum id_resolver.conf cifs.idmap.conf 2>&1)" "$before"
  # what the warning says to do
  in_root sed -i 's/^create[[:space:]]\+id_resolver/#&/' /etc/request-key.d/id_resolver.conf
  in_root sed -i 's/^create[[:space:]]\+cifs.idmap/#&/' /etc/request-key.d/cifs.idmap.conf
  expect "after the suggested sed only nsidmap answers id_resolver" "$(active_rules id_resolver)" "/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall"
  expect "… and cifs.idmap" "$(active_rules cifs.idmap)" "/etc/request-key.d/nsidmap.conf:/usr/lib/nsidmap/bin/nsidmap-upcall"
  in_root dpkg -r nsidmap >/dev/null 2>&1
  expect "dpkg -r: no rule names a missing program" "$(broken_rules)" ""
  # the way back (docs/migration.md): uncomment theirs
  in_root sed -i 's/^#\(create[[:space:]]\+id_resolver\)/\1/' /etc/request-key.d/id_resolver.conf
  in_root sed -i 's/^#\(create[[:space:]]\+cifs.idmap\)/\1/' /etc/request-key.d/cifs.idmap.conf
  expect "switching back: nfsidmap answers id_resolver again" "$(active_rules id_resolver)" "/etc/request-key.d/id_resolver.conf:/usr/sbin/nfsidmap"
  expect "… and cifs.idmap answers cifs.idmap" "$(active_rules cifs.idmap)" "/etc/request-key.d/cifs.idmap.conf:/usr/sbin/cifs.idmap"
  expect "… and nothing is broken" "$(broken_rules)" ""
  in_root dpkg -P nsidmap >/dev/null 2>&1
  expect "dpkg -P leaves their rules alone" "$(cd "$root/etc/request-key.d" && md5sum id_resolver.conf cifs.idmap.conf 2>&1)" "$before"
else
  not_ok "apt-get install nfs-common cifs-utils in the root" "$(tail -n 5 "$work/apt-root.log")"
fi

summary
[ "$fail" -eq 0 ]
