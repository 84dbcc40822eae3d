#!/bin/sh
# Installs the Debian packages that build, test, demo and bench need, when
# any is missing. As root it runs apt-get; otherwise it names what to install.
set -eu
LUA=${LUA:-lua5.4}
case "$LUA" in
  lua5.4) lua_pkgs="lua5.4 liblua5.4-dev" ;;
  lua5.3) lua_pkgs="lua5.3 liblua5.3-dev" ;;
  lua5.1) lua_pkgs="lua5.1 liblua5.1-0-dev" ;;
  luajit) lua_pkgs="luajit libluajit-5.1-dev" ;;
  *) echo "deps: unknown LUA '$LUA'" >&2; exit 2 ;;
esac
pkgs="$lua_pkgs gcc make pkg-config lua-cjson lua-busted lua-socket lua-filesystem
  libcurl4-openssl-dev libssl-dev libssh2-1-dev openssl curl
  python3-httpbin openssh-server openssh-client procps nginx valgrind"

missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
# node and npm may come from Debian or from another packaging of Node.js
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -z "$missing" ]; then
  :
elif [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # Debian starts the services it installs; the suite runs its own, on free ports.
  for svc in nginx ssh; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  done
else
  echo "deps: missing packages:$missing" >&2
  echo "deps: run as root, or: sudo apt-get install -y$missing" >&2
  exit 1
fi

# npm: oidc-provider for the OAuth specs, pinned by spec/oidc/package-lock.json.
# Runs only when spec/oidc/node_modules is absent or older than the lockfile;
# needs the npm registry then, and nothing afterwards.
oidc=$(cd "$(dirname "$0")/.." && pwd)/spec/oidc
if [ ! -f "$oidc/node_modules/.package-lock.json" ] ||
   [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
  echo "deps: npm ci in spec/oidc"
  (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "deps: npm ci failed in spec/oidc (the OAuth specs need oidc-provider)" >&2
    exit 1
  }
fi
