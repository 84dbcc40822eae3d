#!/bin/sh
# Runs the busted specs with the module just built in $BUILD under $LUA.
# SANITIZE=1: preload the ASan/UBSan runtimes and fail on any report.
# NGX_BUILD: the LuaJIT build the OpenResty peer loads (default build/luajit;
# with SANITIZE=1, give it the ASan build).
# Extra arguments go to busted (e.g. spec/template_spec.lua).
set -u
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
busted=$(command -v busted) || { echo "busted is not installed" >&2; exit 1; }

export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/$BUILD/?.so;;"
export CONNKIT_ROOT="$root"
export CONNKIT_LUA="$LUA"
# the LuaJIT build nginx loads (spec/peers/openresty.lua); make test builds
# it. Under SANITIZE=1 it should be the ASan build (make test-asan passes
# build/luajit-asan), and nginx gets the runtimes preloaded.
export CONNKIT_NGX_BUILD="$root/${NGX_BUILD:-build/luajit}"
export CONNKIT_NGX_SANITIZE="${SANITIZE:-}"

if [ "${SANITIZE:-}" = 1 ]; then
  log=$(mktemp /tmp/connkit-asan.XXXXXX)
  asan=$(gcc -print-file-name=libasan.so)
  ubsan=$(gcc -print-file-name=libubsan.so)
  # Leaks are checked; the interpreter's own allocations are freed by lua_close.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86:log_path=$log" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$log" \
  LD_PRELOAD="$asan $ubsan" "$LUA" "$busted" "$@" &
  pid=$!
  wait $pid
  rc=$?
  # Only the interpreter's report counts: the shells popen starts inherit the
  # preload for an instant before the specs' commands drop it.
  if grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log.$pid" 2>/dev/null; then
    echo "sanitizer reports:" >&2
    cat "$log.$pid" >&2
    rc=1
  elif [ $rc -eq 0 ] && [ -s "$log.$pid" ]; then
    cat "$log.$pid" >&2
  fi
  rm -f "$log"*
  exit $rc
fi
exec "$LUA" "$busted" "$@"
