#!/bin/sh
# Runs the whole test suite on a fresh Debian 12 machine: installs what it needs, builds, tests.
# After the main suite comes the interop suite against the real odoo/sfu (make check-interop),
# then the check that the odoo/sfu patches of etc/odoo-sfu still apply, type-check and pass
# their jest suites (scripts/odoo-sfu-patch-check.sh), and every libFuzzer target
# briefly on its seed corpus (make fuzz-smoke, about 30 s).
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
  make -j"$jobs" check-interop
  scripts/odoo-sfu-patch-check.sh
fi
make -j"$jobs" fuzz
make fuzz-smoke
