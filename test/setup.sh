#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (CI runs as root on a clean clone,
# with nothing started for it). Idempotent and quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v keyctl >/dev/null 2>&1 || need+=(keyutils)          # keyctl(1) and /sbin/request-key
[ -x /sbin/request-key ] || need+=(keyutils)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)       # real user/network namespaces
command -v python3 >/dev/null 2>&1 || need+=(python3)          # sd_notify receiver in the daemon test
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)         # the nsidmap-upcall helper is C, built by npm run build
[ -x /usr/sbin/slapd ] || need+=(slapd)                        # real OpenLDAP for the ldap source tests
command -v ldapsearch >/dev/null 2>&1 || need+=(ldap-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)          # CA and server certs for the TLS tests

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test/setup.sh: missing ${need[*]} and cannot install them (need root and apt-get); tests that need them will skip" >&2
  else
    echo "test/setup.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # slapd: no default database, no /etc/ldap/slapd.d config, no service to stop — the tests start
    # their own slapd on a loopback high port with a throwaway configuration
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# node_modules: install when absent or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
