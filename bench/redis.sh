#!/bin/sh
# Redis store benchmark (part of `make bench`): bench/redis_bench.lua on
# loopback against the spec peers (redis-server, oidc-provider). Runs with
# the module built in $BUILD under $LUA; appends its summary lines to
# $BENCH_SUMMARY.
set -eu
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v redis-server >/dev/null 2>&1 || { echo "redis bench: redis-server is not installed" >&2; exit 1; }
LUA=$LUA BUILD=$BUILD exec sh tools/run-lua.sh bench/redis_bench.lua
