#!/bin/sh
# Prepares a scratch copy of the real odoo/sfu for the interop tests: copy, patch, npm install.
# Usage: scripts/interop-peer.sh [--modules-from DIR] DEST [PATCH...]
#   DEST   folder to create (must not exist yet); the copy of $ODOO_SFU_DIR goes there
#   PATCH  patch files applied in order with `patch -p1` inside DEST
#   --modules-from DIR  take node_modules from DIR, a copy this script prepared before, by
#          hard links (a plain copy where links cannot be made) instead of installing it
#          again: the patches change no dependency, so an unpatched and a patched copy can
#          share one install
# ODOO_SFU_DIR defaults to ../shared/peers/odoo-sfu beside the project root. The copy gets
# only what the HTTP and auth services need from the npm registry (mediasoup without its
# C++ worker, ws, tsx; from npm's cache when it has them) and the project's entry points
# from tests/interop/.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
modules_from=""
if [ "${1:-}" = "--modules-from" ]; then
  if [ $# -lt 2 ] || [ ! -d "$2/node_modules" ]; then
    echo "interop-peer: --modules-from needs a prepared copy (no ${2:-?}/node_modules)" >&2
    exit 2
  fi
  modules_from=$2
  shift 2
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [--modules-from DIR] DEST [PATCH...]" >&2
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
if [ -n "$modules_from" ]; then
  rm -rf "$dest/node_modules"
  if ! cp -al "$modules_from/node_modules" "$dest/node_modules" 2>/dev/null; then
    rm -rf "$dest/node_modules"
    cp -R "$modules_from/node_modules" "$dest/node_modules" || {
      echo "interop-peer: cannot copy $modules_from/node_modules to $dest" >&2
      exit 1
    }
  fi
else
  (cd "$dest" && npm install --prefer-offline --ignore-scripts --no-audit --no-fund \
    --loglevel=error mediasoup@3.19.14 ws@8 tsx >/dev/null) || {
    echo "interop-peer: npm install failed in $dest" >&2
    exit 1
  }
fi
cp "$root"/tests/interop/sfu_http.ts "$root"/tests/interop/ws_sessions.mjs "$dest/"
echo "interop-peer: odoo/sfu ready in $dest with $# patches" >&2
