#!/bin/sh
# `luarocks test` (the rockspec's test command): the specs, with the
# busted Debian installs (LuaRocks' busted runner would download busted).
#   luarocks test rockspec/connkit-scm-1.rockspec             -> make test
#   luarocks test rockspec/connkit-scm-1.rockspec -- spec/x_spec.lua ...
#                                       -> make, then only those specs
# LUA picks the interpreter (default lua5.4).
set -eu
LUA=${LUA:-lua5.4}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ $# -eq 0 ]; then exec make test LUA="$LUA"; fi
make --no-print-directory LUA="$LUA" >/dev/null
LUA=$LUA BUILD=build/$LUA exec sh tools/run-specs.sh "$@"
