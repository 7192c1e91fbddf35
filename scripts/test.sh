#!/bin/sh
# Runs the whole test suite on a fresh Debian 12 machine: installs what it needs, builds, tests,
# then runs every libFuzzer target briefly on its seed corpus (make fuzz-smoke, about 30 s).
# Usage: scripts/test.sh [--asan]
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh test
jobs=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = "--asan" ]; then
  make -j"$jobs" check-asan
else
  make -j"$jobs" all
  make -j"$jobs" check
fi
make -j"$jobs" fuzz
make fuzz-smoke
