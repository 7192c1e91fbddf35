#!/bin/sh
# Prepares a scratch copy of the real odoo/sfu for the interop tests: copy, patch, npm install.
# Usage: scripts/interop-peer.sh DEST [PATCH...]
#   DEST   folder to create (must not exist yet); the copy of $ODOO_SFU_DIR goes there
#   PATCH  patch files applied in order with `patch -p1` inside DEST
# ODOO_SFU_DIR defaults to ../shared/peers/odoo-sfu beside the project root. The copy gets
# only what the HTTP and auth services need from the npm registry (mediasoup without its
# C++ worker, ws, tsx) and the project's entry points from tests/interop/.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ]; then
  echo "usage: $0 DEST [PATCH...]" >&2
  exit 2
fi
dest=$1
shift
src=${ODOO_SFU_DIR:-$root/../shared/peers/odoo-sfu}

if [ ! -f "$src/package.json" ] || [ ! -d "$src/src" ]; then
  echo "interop-peer: no odoo/sfu at $src (set ODOO_SFU_DIR)" >&2
  exit 1
fi
if [ -e "$dest" ]; then
  echo "interop-peer: $dest already exists" >&2
  exit 1
fi
for p in "$@"; do
  if [ ! -f "$p" ]; then
    echo "interop-peer: no patch file $p" >&2
    exit 1
  fi
done

mkdir -p "$dest"
# The peer folder is read-only: copy its files, not its permissions, and never write there.
cp -R "$src/." "$dest/"
chmod -R u+w "$dest"
for p in "$@"; do
  patch_file=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
  (cd "$dest" && patch -p1 --forward --batch --silent <"$patch_file") || {
    echo "interop-peer: $p does not apply to $src" >&2
    exit 1
  }
done
(cd "$dest" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
  mediasoup@3.19.14 ws@8 tsx >/dev/null) || {
  echo "interop-peer: npm install failed in $dest" >&2
  exit 1
}
cp "$root"/tests/interop/sfu_http.ts "$root"/tests/interop/ws_sessions.mjs "$dest/"
echo "interop-peer: odoo/sfu ready in $dest" >&2
