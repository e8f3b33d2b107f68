#!/usr/bin/env bash
# `npm test`: set up what is missing, type-check, then every test file on node:test (through tsx).
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/setup.sh
npx tsc --noEmit
# dist/: the keyring helper and its fallback run as real programs under /sbin/request-key
npm run build --silent
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
