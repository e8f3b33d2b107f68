#!/usr/bin/env bash
# Compile keyring/nsidmap-upcall.c (run by `npm run build`, after tsc; and by contrib/install.sh).
#
#   scripts/build-upcall.sh [--out PATH] [--node PATH] [--fallback PATH] [--link static|dynamic] [--dry-run]
#
#   --out       the helper to write (default: dist/keyring/nsidmap-upcall in this checkout)
#   --node      the node the in-process fallback runs (default: the node on PATH, symlinks resolved)
#   --fallback  the fallback script (default: this checkout's dist/keyring/upcall.js)
#   --dry-run   print the compile command, write nothing
#   --link static|dynamic   static (default: a static PIE where one can be linked) or dynamic;
#               also NSIDMAP_UPCALL_LINK from the environment
#
# The helper runs under /sbin/request-key with PATH=/sbin:/bin:/usr/sbin:/usr/bin and HOME=/, so
# the node binary and the fallback script are compiled in as absolute paths. Moving the checkout or
# changing node means building again. CC and CFLAGS from the environment are honoured.
#
# Linked as a static PIE where the C library allows it (glibc's libc.a, i.e. libc6-dev): an upcall
# forks and execs the helper every time, and with no ld.so to map libc and relocate it, one exec
# costs ~130 µs less here (fork+exec+exit of `nsidmap-upcall --help`: ~480 instead of ~610 µs,
# medians of 1200 interleaved runs; ~0.1 ms less per upcall in bench/upcall.ts).
# The helper calls nothing that needs NSS or dlopen, which static glibc cannot do. Still PIE, with
# full RELRO (-z relro -z now) and the fortify/stack-protector checks. Where no static PIE can be
# linked (no libc.a, an old toolchain) it is linked dynamically, as before, and says so on stdout.
# The price of static: a glibc security update reaches the helper only when it is built again
# (packagers who want it to follow libc6 pass --link dynamic).
set -euo pipefail

die() { echo "build-upcall: $*" >&2; exit 1; }

out= node= fallback= dry=0 link_mode=${NSIDMAP_UPCALL_LINK:-static}
while [ $# -gt 0 ]; do
  case $1 in
    --out|--node|--fallback|--link)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in --out) out=$2 ;; --node) node=$2 ;; --fallback) fallback=$2 ;; --link) link_mode=$2 ;; esac
      shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
done

# --out relative to where we were called from, before the cd below
if [ -n "$out" ]; then
  case $out in /*) ;; *) out="$(pwd -P)/$out" ;; esac
fi
cd "$(dirname "$0")/.."
root=$(pwd -P)
src="$root/keyring/nsidmap-upcall.c"
[ -f "$src" ] || die "$src is missing"

if [ -z "$node" ]; then
  node=$(command -v node) || die "node is not on PATH (or pass --node)"
  node=$(readlink -f "$node")
fi
default_fallback=0
if [ -z "$fallback" ]; then
  fallback="$root/dist/keyring/upcall.js"
  default_fallback=1
fi
for p in "$node" "$fallback"; do
  case "$p" in /*) ;; *) die "not an absolute path: $p (request-key runs the helper with PATH=/sbin:/bin:/usr/sbin:/usr/bin)" ;; esac
  # they become C string literals
  case "$p" in
    *'"'* | *'\'* | *$'\n'*) die "cannot compile in a path containing a quote, backslash or newline: $p" ;;
  esac
done
if [ "$default_fallback" = 1 ] && [ ! -f "$fallback" ] && [ "$dry" = 0 ]; then
  echo "build-upcall: warning: $fallback does not exist yet (run tsc -p tsconfig.build.json)" >&2
fi
out=${out:-$root/dist/keyring/nsidmap-upcall}

cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || die "no C compiler ($cc)"
# shellcheck disable=SC2206 # CFLAGS is a list of words
cflags=(-std=c11 -Wall -Wextra -Wformat=2 -Wshadow -O2
  -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -Wl,-z,relro,-z,now ${CFLAGS:-})
defs=("-DNSIDMAP_NODE=\"$node\"" "-DNSIDMAP_FALLBACK=\"$fallback\"")

case $link_mode in static|dynamic) ;; *) die "--link static or dynamic, not \"$link_mode\"" ;; esac
# Can a static PIE be linked here? A probe, so that a real error in the helper is reported once.
link=(-pie)
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
if [ "$link_mode" = static ]; then
  link=(-static-pie)
  printf '#include <stdio.h>\nint main(void) { return puts("") < 0; }\n' >"$probe_dir/probe.c"
  if ! "$cc" "${cflags[@]}" -static-pie -o "$probe_dir/probe" "$probe_dir/probe.c" >/dev/null 2>&1 || ! "$probe_dir/probe" >/dev/null 2>&1; then
    link=(-pie)
    echo "build-upcall: no static PIE can be linked here (is libc6-dev's libc.a installed?): linking dynamically, ~0.1 ms slower per upcall"
  fi
fi

cmd=("$cc" "${cflags[@]}" "${link[@]}" "${defs[@]}")
if [ "$dry" = 1 ]; then
  echo "would compile: ${cmd[*]} -o $out $src"
  exit 0
fi
mkdir -p "$(dirname "$out")"
# Build beside the target and rename: replacing the file in place would fail with ETXTBSY (or
# corrupt a run) while a request-key upcall is executing the old one.
tmp="$out.tmp.$$"
trap 'rm -rf "$probe_dir" "$tmp"' EXIT
"${cmd[@]}" -o "$tmp" "$src"
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
