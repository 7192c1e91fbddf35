#!/bin/sh
# Installs the Debian 12 packages sfu-gateway needs to build, test and benchmark.
# Usage: scripts/deps.sh [build|test|bench|all]   (default: test)
set -eu

what=${1:-test}

build_pkgs="build-essential pkg-config libuv1-dev node-llhttp libjson-c-dev libssl-dev openssl curl"
# etcd-server and etcd-client: the cluster tests start their own etcd members on loopback.
# libjwt-dev: `make check` builds the microbenchmarks, and bench-token compares libjwt.
test_pkgs="libcriterion-dev libjwt-dev curl procps psmisc prometheus mandoc shellcheck clang libclang-rt-14-dev valgrind systemd logrotate lintian dpkg-dev adduser man-db etcd-server etcd-client nginx-light"
bench_pkgs="wrk haproxy nginx-light gnuplot-nox strace python3"

case "$what" in
  build) pkgs="$build_pkgs" ;;
  test)  pkgs="$build_pkgs $test_pkgs" ;;
  bench) pkgs="$build_pkgs $test_pkgs $bench_pkgs" ;;
  all)   pkgs="$build_pkgs $test_pkgs $bench_pkgs" ;;
  *) echo "usage: $0 [build|test|bench|all]" >&2; exit 2 ;;
esac

# Skip apt entirely when everything is already installed: faster, and works offline.
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# The interop suite runs the real odoo/sfu on Node.js. A machine may have Node.js from
# elsewhere than Debian (its npm then comes with it): ask for the commands, not packages.
if [ "$what" != build ]; then
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"
  command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "deps: installing:$missing" >&2
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
