#!/bin/sh
# Runs the interop suite (gateway and agent against the real odoo/sfu): prepare, run, clean.
# Usage: scripts/check-interop.sh RUNNER [RUNNER ARGS...]   (make check-interop calls it)
# The peer (ODOO_SFU_DIR, default ../shared/peers/odoo-sfu beside the project root) is
# prepared once per run in a temporary folder, twice: as it is (SFU_INTEROP_PEER, what users
# run) and with the patches etc/odoo-sfu/*.patch applied in order (SFU_INTEROP_PEER_PATCHED),
# the second sharing the first's npm install by hard links; both are removed afterwards.
# Without Node.js, npm or the peer folder this says so in one line and succeeds, except under
# CI=true, where a suite that cannot run fails.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ]; then
  echo "usage: $0 RUNNER [RUNNER ARGS...]" >&2
  exit 2
fi
src=${ODOO_SFU_DIR:-$root/../shared/peers/odoo-sfu}

missing=""
command -v node >/dev/null 2>&1 || missing="$missing Node.js (node),"
command -v npm >/dev/null 2>&1 || missing="$missing npm,"
[ -f "$src/package.json" ] || missing="$missing the odoo/sfu peer folder $src,"
if [ -n "$missing" ]; then
  missing=${missing%,}
  case "${CI:-}" in
    true | 1)
      echo "check-interop: FAILED: the real-SFU suite cannot run, missing:$missing" >&2
      exit 1
      ;;
  esac
  echo "check-interop: skipped: the real-SFU suite needs$missing"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sfu-interop.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The patches go through a function's own arguments: "$@" keeps the runner's command.
prepare_patched() {
  set --
  for p in "$root"/etc/odoo-sfu/*.patch; do
    [ -f "$p" ] && set -- "$@" "$p"
  done
  if [ $# -eq 0 ]; then
    echo "check-interop: no patches in $root/etc/odoo-sfu" >&2
    exit 1
  fi
  ODOO_SFU_DIR=$src "$root/scripts/interop-peer.sh" --modules-from "$tmp/odoo-sfu" \
    "$tmp/odoo-sfu-patched" "$@"
}

ODOO_SFU_DIR=$src "$root/scripts/interop-peer.sh" "$tmp/odoo-sfu"
prepare_patched
SFU_INTEROP_PEER=$tmp/odoo-sfu
SFU_INTEROP_PEER_PATCHED=$tmp/odoo-sfu-patched
NODE_BIN=$(command -v node)
export SFU_INTEROP_PEER SFU_INTEROP_PEER_PATCHED NODE_BIN
status=0
"$@" || status=$?
exit "$status"
