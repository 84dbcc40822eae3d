# Shared by the bench/*.sh scripts (sourced; set BENCH_NAME first): output
# helpers, arithmetic on result lines, and an nginx of the run's own.

say() { printf '%s\n' "$*"; }
summary() { printf '%s\n' "$*" >> "${SUMMARY:-/dev/null}"; say "$*"; }
die() { say "$BENCH_NAME: $*" >&2; exit 1; }

# field NAME LINE: the value of NAME=... in a result line.
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s..%s", lo, hi }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "OK"; else echo "MISSED"; fi; }

# A free TCP port on 127.0.0.1 (asked of the kernel with lua-socket).
free_port() {
  "$LUA" -e 'local s = assert(require("socket").bind("127.0.0.1", 0))
    local _, p = s:getsockname(); s:close(); print(p)'
}

# bench_nginx_start CONF_IN URL_PATH SED_ARGS...: nginx with the config made
# from template CONF_IN (@PORT@ and @DIR@ filled in, and whatever SED_ARGS
# add) in a temp dir of its own ($tmp, with bench/data.json in www/), on a
# free loopback port ($port), waited for until URL_PATH on $wait_port
# (default $port; a port the caller chose for a second server) answers. Stopped by PID (and $tmp removed) at exit.
tmp="" nginx_pid=""
bench_cleanup() {
  if [ -n "$nginx_pid" ]; then
    kill "$nginx_pid" 2>/dev/null || true
    i=0
    while kill -0 "$nginx_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$nginx_pid" 2>/dev/null && kill -9 "$nginx_pid" 2>/dev/null
    wait "$nginx_pid" 2>/dev/null || true
    nginx_pid=""
  fi
  [ -n "$tmp" ] && rm -rf "$tmp"
}
bench_nginx_start() {
  conf_in=$1 path=$2
  shift 2
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$nginx" ] || die "nginx is not installed"
  tmp=$(mktemp -d "/tmp/connkit-bench-$BENCH_NAME.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM HUP
  port=$(free_port)
  while [ "$port" = "${wait_port:-}" ]; do port=$(free_port); done
  # Workers run as an unprivileged user when started by root: let them read.
  chmod 755 "$tmp"
  mkdir "$tmp/www"
  cp bench/data.json "$tmp/www/data.json"
  chmod 644 "$tmp/www/data.json"
  sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$tmp|g" "$@" "$conf_in" > "$tmp/nginx.conf"
  "$nginx" -p "$tmp/" -e "$tmp/error.log" -c "$tmp/nginx.conf" > "$tmp/nginx.out" 2>&1 &
  nginx_pid=$!
  i=0
  until curl -sf -o /dev/null "http://127.0.0.1:${wait_port:-$port}$path"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$nginx_pid" 2>/dev/null; then
      cat "$tmp/nginx.out" "$tmp/error.log" >&2 2>/dev/null || true
      die "nginx did not come up on 127.0.0.1:${wait_port:-$port}"
    fi
    sleep 0.05
  done
}
