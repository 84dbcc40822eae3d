#!/bin/sh
# `make rock`: installs connkit with LuaRocks into ./luarocks, for $LUA.
# Installs luarocks first when it is missing (tools/deps.sh rock).
#
# The rockspec depends on lua-cjson. Debian's lua-cjson is a plain module,
# not a rock, so LuaRocks' check after the install (which reads its config's
# deps_mode, not --deps-mode) would report it missing. When $LUA loads the
# system's cjson, a config file tells LuaRocks that the system provides it
# (rocks_provided), so the check passes and stays a real check: without a
# loadable cjson it still warns. Nothing is fetched from a rocks server.
# ROCK_TREE installs into another tree (spec/rock_spec.lua: a temp one).
set -eu
LUA=${LUA:-lua5.4}
tree=${ROCK_TREE:-luarocks}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
LUA=$LUA sh tools/deps.sh rock

case "$LUA" in
  lua5.*) version=${LUA#lua} extra="" ;;
  # LuaJIT runs Lua 5.1 modules: build with its headers under LuaRocks' 5.1
  luajit) version=5.1 extra="LUA_INCDIR=/usr/include/luajit-2.1" ;;
  *) echo "rock: unknown LUA '$LUA'" >&2; exit 2 ;;
esac

# Debian keeps curl/curl.h in the multiarch include directory
curl_h=$(find /usr/include -path '*/curl/curl.h' | head -n 1)
[ -n "$curl_h" ] || { echo "rock: curl/curl.h not found (libcurl4-openssl-dev)" >&2; exit 1; }
curl_inc=$(dirname "$(dirname "$curl_h")")

mkdir -p build
config="$root/build/luarocks-config-$LUA.lua"
cjson=$("$LUA" -e 'local ok, c = pcall(require, "cjson")
  io.write(ok and (c._VERSION or "2.1.0"):match("%d[%d.]*") or "")' 2>/dev/null || true)
argparse=$("$LUA" -e 'local ok, a = pcall(require, "argparse")
  io.write(ok and (a.version or "0.7.1"):match("%d[%d.]*") or "")' 2>/dev/null || true)
{
  echo "-- written by tools/rock.sh"
  echo "rocks_provided = {"
  if [ -n "$cjson" ]; then
    echo "  [\"lua-cjson\"] = \"$cjson-1\", -- Debian's lua-cjson"
  fi
  if [ -n "$argparse" ]; then
    echo "  argparse = \"$argparse-1\", -- Debian's lua-argparse"
  fi
  echo "}"
} > "$config"

# shellcheck disable=SC2086
LUAROCKS_CONFIG=$config luarocks --lua-version "$version" make --deps-mode none \
  --tree "$tree" rockspec/connkit-scm-1.rockspec CURL_INCDIR="$curl_inc" $extra
echo "rock: installed in $tree; use it with: eval \"\$(luarocks --lua-version $version --tree $tree path)\""
