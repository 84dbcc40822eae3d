#!/bin/sh
# Installs the Debian packages a make target needs, when any is missing, and
# the pinned npm packages of the OAuth peer. As root it runs apt-get;
# otherwise it names what to install.
#   sh tools/deps.sh [--print] [test|bench|valgrind|rock|fuzz|docs]
#     test   (default) make, make test, make test-asan and make demo
#     bench  the same plus valgrind (make bench)
#     valgrind  the same plus valgrind (make test-valgrind)
#     rock   the build plus luarocks (make rock), no peers
#     fuzz   the build plus clang and its libFuzzer/sanitizer runtimes
#            (make fuzz, with LUA=lua5.4), no peers
#     docs   LDoc and the Lua it runs on (make docs)
#   --print: only print the target's packages, one a line (spec/deps_spec.lua)
# apt-get runs with --no-install-recommends, so everything used is named
# here, what Debian only recommends included (python3-httpbin's gunicorn).
# `make test-fresh` checks this list on a bare Debian 12 root.
set -eu
LUA=${LUA:-lua5.4}
print=0
if [ "${1:-}" = --print ]; then print=1; shift; fi
target=${1:-test}
tools=$(cd "$(dirname "$0")" && pwd)
. "$tools/apt.sh"

case "$LUA" in
  lua5.4) lua_pkgs="lua5.4 liblua5.4-dev" ;;
  lua5.3) lua_pkgs="lua5.3 liblua5.3-dev" ;;
  lua5.1) lua_pkgs="lua5.1 liblua5.1-0-dev" ;;
  # the OpenResty branch of LuaJIT, the one Debian's nginx Lua module is
  # built on: Debian's plain luajit and libluajit-5.1-dev conflict with it,
  # and installing them would remove the nginx Lua module. Both install
  # /usr/bin/luajit and luajit.pc (same name, same paths), so the build and
  # the specs run on either; only the choice of what to install is made here.
  luajit) lua_pkgs="luajit2 libluajit2-5.1-dev" ;;
  *) echo "deps: unknown LUA '$LUA'" >&2; exit 2 ;;
esac

# The build: compiler, C library headers, pkg-config, the libraries'
# headers (zlib: the ngx transport's gzip decoding, csrc/inflate.c),
# lua-cjson (connkit's JSON) and lua-argparse (the connkit command's
# arguments; one argparse.lua for Lua 5.1/LuaJIT, 5.2, 5.3 and 5.4).
build="$lua_pkgs gcc libc6-dev make pkg-config libcurl4-openssl-dev libssl-dev
  libssh2-1-dev zlib1g-dev libhiredis-dev lua-cjson lua-argparse"
# The specs and the demo: busted and the Lua modules they load (socket, lfs),
# the programs they run (curl, openssl, ssh-keygen and sftp, pgrep) and the
# peers: httpbin served by gunicorn, nginx, sshd, and node for oidc-provider
# and the scripted server.
test="$build lua-busted lua-socket lua-filesystem curl openssl procps
  openssh-client openssh-server nginx python3 python3-httpbin python3-gunicorn
  lua-luv redis-server"
# The connkit command's specs (spec/cli_*_spec.lua) drive it through a
# pseudo-terminal with script(1) (bsdutils); make docs and its spec run
# LDoc (lua-ldoc), which runs on Lua 5.1 or 5.2 only and does not bring
# either (lua-any picks one that is installed): lua5.1.
docs="lua-ldoc lua5.1"
test="$test bsdutils $docs"
# The OpenResty specs (spec/openresty_spec.lua, spec/peers/openresty.lua):
# nginx's Lua module with the development kit it loads first and its Lua
# library, and the LuaJIT branch the module is built on (headers for
# build/luajit/connkit/core.so, which `make test` builds for any LUA, and the
# interpreter, so that the plain luajit it replaces leaves no gap).
openresty="libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-nginx-redis luajit2
  libluajit2-5.1-dev"
test="$test $openresty"

node=0
case "$target" in
  test) pkgs=$test node=1 ;;
  bench) pkgs="$test valgrind" node=1 ;; # callgrind counts instructions
  valgrind) pkgs="$test valgrind" node=1 ;; # memcheck: make test-valgrind
  rock) pkgs="$build luarocks" ;;
  fuzz) pkgs="$build clang libclang-rt-14-dev" ;;
  docs) pkgs=$docs ;;
  *) echo "deps: unknown target '$target' (test, bench, valgrind, rock, fuzz or docs)" >&2; exit 2 ;;
esac

# one line each, first mention kept (LUA=luajit names luajit2 twice for test)
pkgs=$(printf '%s\n' $pkgs | awk '!seen[$0]++')

if [ "$print" = 1 ]; then
  [ "$node" = 1 ] && pkgs="$pkgs nodejs npm"
  printf '%s\n' $pkgs
  exit 0
fi

installed() {
  case "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" in
    *"ok installed"*) return 0 ;;
  esac
  return 1
}
# A target without the nginx Lua module (rock, fuzz) builds as well against
# Debian's plain LuaJIT: where that is what is installed, it is kept.
case " $(echo $pkgs) " in
  *" libnginx-mod-http-lua "*) ;;
  *" luajit2 "*)
    if installed luajit && installed libluajit-5.1-dev; then
      pkgs=$(printf '%s\n' $pkgs | grep -v -x -e luajit2 -e libluajit2-5.1-dev)
    fi ;;
esac

missing=""
for p in $pkgs; do
  installed "$p" || missing="$missing $p"
done
if [ "$node" = 1 ]; then
  # node and npm may come from Debian or from another packaging of Node.js
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"
  command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
if [ -z "$missing" ]; then
  :
elif [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  # shellcheck disable=SC2086
  apt_install $missing || exit 1
  # Debian starts the services it installs; the suite runs its own, on free ports.
  for svc in nginx ssh; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  done
else
  echo "deps: missing packages:$missing" >&2
  echo "deps: run as root, or: sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi

[ "$node" = 1 ] || exit 0
# npm: oidc-provider for the OAuth specs, pinned by spec/oidc/package-lock.json.
# Runs only when spec/oidc/node_modules is absent or older than the lockfile;
# needs the npm registry then, and nothing afterwards.
oidc=$(cd "$tools/.." && pwd)/spec/oidc
if [ ! -f "$oidc/node_modules/.package-lock.json" ] ||
   [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
  echo "deps: npm ci in spec/oidc"
  (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "deps: npm ci failed in spec/oidc (the OAuth specs need oidc-provider)" >&2
    exit 1
  }
fi
