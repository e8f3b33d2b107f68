#!/usr/bin/env bash
# `npm test`: set up what is missing, type-check, then every test file on node:test (through tsx).
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/setup.sh
npx tsc --noEmit
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
