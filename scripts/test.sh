#!/usr/bin/env bash
# Runs mproc's whole test suite (unit tests, examples, consumer builds) after bringing the
# build up to date. Extra arguments go to ctest, e.g. `scripts/test.sh -L unit` or `-R codec`.
# Each test runs under its own TIMEOUT property. Exits non-zero if anything fails.
#
# Environment: BUILD_DIR (default: build; created by scripts/setup.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  printf 'error: %s is not configured; run scripts/setup.sh first\n' "$BUILD_DIR" >&2
  exit 1
fi

printf '==> build: %s\n' "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$jobs"
printf '==> test: ctest -j%s %s\n' "$jobs" "$*"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$jobs" "$@"
