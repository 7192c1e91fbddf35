#!/bin/sh
# Checks that the odoo/sfu patches in etc/odoo-sfu still apply to the peer copy and type-check.
#
# Usage: scripts/odoo-sfu-patch-check.sh
# Environment: ODOO_SFU_DIR (default: ../shared/peers/odoo-sfu beside the repository),
# CI=true (a missing node, npm or peer copy is then a failure instead of a skip).
#
# In temporary copies of the peer it applies each patch alone, then all of them in order
# (patch -p1, no fuzz), installs the peer's devDependencies from the npm registry, and runs the
# peer's tsc --noEmit, its eslint on the files the patches touch (untouched upstream files have
# prettier errors of their own) and the jest suites that need no mediasoup worker: the ones the
# patches add and the auth suite. Ends with one "N passed, N failed" line; exits 1 on a failure.
set -u

case $0 in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
repo=$(cd "$here/.." && pwd)
patches="$repo/etc/odoo-sfu"
peer=${ODOO_SFU_DIR:-$repo/../shared/peers/odoo-sfu}
jest_suites="tests/auth.test.ts tests/disconnect.test.ts tests/proxy.test.ts tests/gateway.test.ts"

skip() {
	echo "odoo-sfu-patch-check: skipped: $1"
	if [ "${CI:-}" = "true" ]; then
		exit 1
	fi
	exit 0
}

command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
command -v patch >/dev/null 2>&1 || skip "patch is not installed"
[ -f "$peer/package.json" ] || skip "no odoo/sfu copy at $peer"
set -- "$patches"/[0-9][0-9][0-9][0-9]-*.patch
[ -f "$1" ] || skip "no patches in $patches"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/odoo-sfu-patch-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM
sfu="$tmp/odoo-sfu"
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, shows its output only when it fails.
check() {
	name=$1
	shift
	if "$@" >"$tmp/check.log" 2>&1; then
		passed=$((passed + 1))
		echo "ok: $name"
		return 0
	fi
	failed=$((failed + 1))
	echo "FAILED: $name"
	sed 's/^/    /' "$tmp/check.log"
	return 1
}

# apply_to DIR PATCH...: applies the patches in order to a fresh copy of the peer, strictly.
apply_to() {
	dir=$1
	shift
	rm -rf "$dir" && cp -R "$peer" "$dir" && chmod -R u+w "$dir" || return 1
	for p in "$@"; do
		patch -d "$dir" -p1 --batch --forward --fuzz=0 <"$p" || return 1
	done
}

in_sfu() {
	(cd "$sfu" && "$@")
}

install_tools() {
	# eslint-config-prettier is used by the peer's eslint config but missing from its
	# devDependencies.
	in_sfu npm install --no-audit --no-fund --ignore-scripts --loglevel=error &&
		in_sfu npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
			eslint-config-prettier@8
}

for p in "$@"; do
	check "$(basename "$p") applies alone" apply_to "$tmp/alone" "$p"
done
rm -rf "$tmp/alone"
if ! check "the series applies in order" apply_to "$sfu" "$@"; then
	echo "odoo-sfu-patch-check: $passed passed, $failed failed"
	exit 1
fi
if ! install_tools >"$tmp/npm.log" 2>&1; then
	sed 's/^/    /' "$tmp/npm.log"
	skip "npm install in the peer copy failed (is the npm registry reachable?)"
fi

check "tsc --noEmit" in_sfu ./node_modules/.bin/tsc --noEmit -p tsconfig.json

# The .ts files that the patches add or change, one word each.
touched=$(sed -n 's|^+++ b/\(.*\.ts\)$|\1|p' "$@" | sort -u | tr '\n' ' ')
touched=${touched% }
# shellcheck disable=SC2086 # split on purpose: one word per file
check "eslint $touched" in_sfu ./node_modules/.bin/eslint $touched

# shellcheck disable=SC2086 # split on purpose: one word per suite
check "jest $jest_suites" in_sfu env LOG_LEVEL=none node ./node_modules/.bin/jest -i $jest_suites

echo "odoo-sfu-patch-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
