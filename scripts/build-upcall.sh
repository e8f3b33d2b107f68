#!/usr/bin/env bash
# Compile keyring/nsidmap-upcall.c into dist/keyring/nsidmap-upcall (run by `npm run build`, after tsc).
#
# The helper runs under /sbin/request-key with PATH=/sbin:/bin:/usr/sbin:/usr/bin and HOME=/, so
# the node binary and the fallback script are compiled in as absolute paths: the node found now
# (symlinks resolved, e.g. nvm's) and this checkout's dist/keyring/upcall.js. Moving the checkout or
# changing node means building again. CC and CFLAGS from the environment are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

node=$(command -v node) || { echo "build-upcall: node is not on PATH" >&2; exit 1; }
node=$(readlink -f "$node")
fallback="$root/dist/keyring/upcall.js"
for p in "$node" "$fallback"; do
  # they become C string literals
  case "$p" in
    *'"'* | *'\'* | *$'\n'*) echo "build-upcall: cannot compile in a path containing a quote, backslash or newline: $p" >&2; exit 1 ;;
  esac
done
[ -f "$fallback" ] || echo "build-upcall: warning: $fallback does not exist yet (run tsc -p tsconfig.build.json)" >&2

cc=${CC:-cc}
out=dist/keyring/nsidmap-upcall
mkdir -p dist/keyring
# Build beside the target and rename: replacing the file in place would fail with ETXTBSY (or
# corrupt a run) while a request-key upcall is executing the old one.
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# shellcheck disable=SC2086 # CFLAGS is a list of words
"$cc" -std=c11 -Wall -Wextra -Wformat=2 -Wshadow -O2 \
  -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -pie -Wl,-z,relro,-z,now \
  ${CFLAGS:-} \
  -DNSIDMAP_NODE="\"$node\"" -DNSIDMAP_FALLBACK="\"$fallback\"" \
  -o "$tmp" keyring/nsidmap-upcall.c
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
