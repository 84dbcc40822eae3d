#!/bin/sh
# Runs a Lua script with the module built in $BUILD under valgrind's memcheck
# (make test-valgrind). Fails on any memcheck error or any definitely lost
# block (--errors-for-leak-kinds=definite makes those errors too); blocks
# still reachable at exit (libcurl's and OpenSSL's global state) are not
# counted. Suppressions: tools/valgrind.supp, third-party leaks only, each
# one commented. Prints valgrind's summary; the whole log on failure.
#   LUA=lua5.4 BUILD=build/lua5.4-valgrind sh tools/valgrind.sh script.lua
set -u
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA-valgrind}
root=$(cd "$(dirname "$0")/.." && pwd)
case "$LUA" in
  luajit)
    # LuaJIT's own allocator and its word-wise string reads are reported by
    # memcheck unless LuaJIT itself is built for valgrind; Debian's is not.
    echo "valgrind.sh: LUA=luajit is not supported (use lua5.4, lua5.3 or lua5.1)" >&2
    exit 2 ;;
esac
command -v valgrind > /dev/null || { echo "valgrind.sh: valgrind is not installed (sh tools/deps.sh valgrind)" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: sh tools/valgrind.sh script.lua [args]" >&2; exit 2; }

export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/$BUILD/?.so;;"
export CONNKIT_ROOT="$root"
export CONNKIT_LUA="$LUA"
log=$(mktemp /tmp/connkit-valgrind.XXXXXX)
# The peers and commands the script starts (sh, curl, sshd, node) are not
# traced: valgrind follows only the interpreter (no --trace-children).
valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --num-callers=40 \
  --suppressions="$root/tools/valgrind.supp" --log-file="$log" \
  "$LUA" "$@"
rc=$?
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -n 1 | tr -d ,)
lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -n 1 | tr -d ,)
echo "valgrind ($LUA $*):"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:|All heap blocks' "$log" | sed 's/^==[0-9]*== */  /'
if [ "$rc" -ne 0 ] || [ "${errors:-x}" != 0 ] || [ "${lost:-0}" != 0 ]; then
  echo "valgrind.sh: FAILED (exit $rc, errors ${errors:-?}, definitely lost ${lost:-?} bytes); the log:" >&2
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "valgrind.sh: 0 errors, 0 bytes definitely lost"
