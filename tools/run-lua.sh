#!/bin/sh
# Runs a Lua script with the module built in $BUILD (used by make demo).
set -u
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/$BUILD/?.so;;"
export CONNKIT_ROOT="$root"
exec "$LUA" "$@"
