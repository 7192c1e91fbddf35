#!/bin/sh
# Checks that the odoo/sfu patches in etc/odoo-sfu still apply to the peer copy and type-check.
#
# Usage: scripts/odoo-sfu-patch-check.sh
# Environment: ODOO_SFU_DIR (default: ../shared/peers/odoo-sfu beside the repository),
# CI=true (a missing node, npm or peer copy is then a failure instead of a skip).
#
# In temporary copies of the peer it applies each patch alone, each pair in order, then all of
# them in order (patch -p1, no fuzz), installs the peer's devDependencies from the npm registry
# (from npm's cache when it has them), and runs, side by side, the peer's tsc --noEmit, its
# eslint on the files the patches touch (untouched upstream files have prettier errors of their
# own) and the jest suites that need no mediasoup worker: the ones the patches add and the auth
# suite, each bounded by CHECK_TIMEOUT seconds (default 240). Ends with one "N passed, N failed"
# line; exits 1 on a failure. scripts/test.sh runs it after the interop suite.
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
	case "${CI:-}" in
	true | 1)
		echo "odoo-sfu-patch-check: FAILED: cannot check the patches: $1" >&2
		exit 1
		;;
	esac
	echo "odoo-sfu-patch-check: skipped: $1"
	exit 0
}

command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
command -v patch >/dev/null 2>&1 || skip "patch is not installed"
command -v timeout >/dev/null 2>&1 || skip "timeout (coreutils) is not installed"
[ -f "$peer/package.json" ] || skip "no odoo/sfu copy at $peer"
set -- "$patches"/[0-9][0-9][0-9][0-9]-*.patch
[ -f "$1" ] || skip "no patches in $patches"

limit=${CHECK_TIMEOUT:-240}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/odoo-sfu-patch-check.XXXXXX") || exit 1
# The checks that run side by side are stopped with the script (each is bounded anyway).
jobs_pids=""
trap '[ -z "$jobs_pids" ] || kill $jobs_pids 2>/dev/null; rm -rf "$tmp"' EXIT
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
	for patch_file in "$@"; do
		patch -d "$dir" -p1 --batch --forward --fuzz=0 <"$patch_file" || return 1
	done
}

in_sfu() {
	(cd "$sfu" && timeout "$limit" "$@")
}

# start NAME COMMAND...: runs COMMAND in the background; finish reports it like check.
started=0
start() {
	started=$((started + 1))
	printf '%s\n' "$1" >"$tmp/job.$started.name"
	shift
	("$@" >"$tmp/job.$started.log" 2>&1; echo $? >"$tmp/job.$started.rc") &
	jobs_pids="$jobs_pids $!"
}

# finish: waits for every started command and reports each, in the order they started.
finish() {
	wait
	jobs_pids=""
	i=1
	while [ "$i" -le "$started" ]; do
		name=$(cat "$tmp/job.$i.name")
		if [ "$(cat "$tmp/job.$i.rc" 2>/dev/null)" = 0 ]; then
			passed=$((passed + 1))
			echo "ok: $name"
		else
			failed=$((failed + 1))
			echo "FAILED: $name"
			sed 's/^/    /' "$tmp/job.$i.log"
		fi
		i=$((i + 1))
	done
}

install_tools() {
	# eslint-config-prettier is used by the peer's eslint config but missing from its
	# devDependencies.
	# npm install with a package also installs the package.json's dependencies.
	in_sfu npm install --prefer-offline --no-save --no-audit --no-fund --ignore-scripts \
		--loglevel=error eslint-config-prettier@8
}

for p in "$@"; do
	check "$(basename "$p") applies alone" apply_to "$tmp/alone" "$p"
done
# Each pair, in the series' order: every patch works without any one of the others.
for first in "$@"; do
	after_first=false
	for second in "$@"; do
		if $after_first; then
			check "$(basename "$first") + $(basename "$second") apply" \
				apply_to "$tmp/alone" "$first" "$second"
		fi
		[ "$second" != "$first" ] || after_first=true
	done
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

start "tsc --noEmit" in_sfu ./node_modules/.bin/tsc --noEmit -p tsconfig.json

# The .ts files that the patches add or change, one word each.
touched=$(sed -n 's|^+++ b/\(.*\.ts\)$|\1|p' "$@" | sort -u | tr '\n' ' ')
touched=${touched% }
# shellcheck disable=SC2086 # split on purpose: one word per file
start "eslint $touched" in_sfu ./node_modules/.bin/eslint $touched

# shellcheck disable=SC2086 # split on purpose: one word per suite
start "jest $jest_suites" in_sfu env LOG_LEVEL=none node ./node_modules/.bin/jest -i $jest_suites
finish

echo "odoo-sfu-patch-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
