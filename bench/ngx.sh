#!/bin/sh
# OpenResty benchmark (issue 11, point 9): inside ONE nginx worker (Debian's
# nginx with its Lua module), C concurrent clients -- light threads of one
# request -- make COUNT GETs of a ~200-byte JSON file from a second server
# block of the same nginx (keep-alive), through connkit's ngx transport
# (`account:get`, bench/bench_account.lua) and, as the floor, written
# directly on ngx.socket.tcp with setkeepalive (bench/ngx.lua). For 10 and
# 100 clients, REPS rounds of each, alternating; the throughput ratio
# connkit/raw is the median of the rounds' own ratios (target >= 0.85), and
# the added latency per request is printed as the median over the rounds of
# connkit's p50 minus raw's p50, and as the worker time added per request
# ((connkit's wall time - raw's) / COUNT). Below target, the worker's CPU
# time per request of raw, the ngx transport alone and connkit, and a
# jit.profile of a raw and a connkit round show where the time goes.
#
# nginx runs on free 127.0.0.1 ports with everything in a temp dir and is
# stopped by PID. connkit is loaded from the LuaJIT build nginx uses
# (build/luajit, made here when missing). Summary lines are appended to
# $BENCH_SUMMARY if set.
# Knobs (env): BENCH_NGX_COUNT (50000), BENCH_NGX_REPS (5),
# BENCH_NGX_CLIENTS ("10 100"), BENCH_NGX_PROFILE (auto | always | off).
set -eu
LUA=${LUA:-lua5.4}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

COUNT=${BENCH_NGX_COUNT:-50000}
REPS=${BENCH_NGX_REPS:-5}
CLIENTS=${BENCH_NGX_CLIENTS:-10 100}
PROFILE=${BENCH_NGX_PROFILE:-auto}
NGX_BUILD=build/luajit
MODULES=/usr/lib/nginx/modules
SUMMARY=${BENCH_SUMMARY:-/dev/null}
TARGET=0.85

BENCH_NAME=ngx.sh
. bench/lib.sh

nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ] || [ ! -f "$MODULES/ngx_http_lua_module.so" ]; then
  summary "ngx: skipped (nginx with its Lua module is not installed: make deps)"
  exit 0
fi
# connkit's C module for nginx's LuaJIT
make --no-print-directory LUA=luajit > /dev/null || die "could not build $NGX_BUILD (make LUA=luajit)"

# the upstream server's port, then nginx (bench/lib.sh) with both servers
uport=$(free_port)
wait_port=$uport
# as root the workers stay root: they read the checkout
user=""
[ "$(id -u)" = 0 ] && user="user root;"
bench_nginx_start bench/ngx.conf.in /data.json -e "s|@UPORT@|$uport|g" -e "s|@ROOT@|$root|g" \
  -e "s|@NGX_BUILD@|$NGX_BUILD|g" -e "s|@MODULES@|$MODULES|g" -e "s|@USER@|$user|g"
say "nginx $($nginx -v 2>&1 | sed 's|.*/||') with its Lua module, one worker (pid $nginx_pid): /bench on :$port," \
  "upstream on :$uport ($(wc -c < bench/data.json | tr -d ' ')-byte JSON, keep-alive)"

# --- helpers ----------------------------------------------------------------

# round MODE CLIENTS N: one round inside the worker; prints its result line.
round() {
  line=$(curl -sS --max-time 600 "http://127.0.0.1:$port/bench?mode=$1&clients=$2&count=$3&port=$uport") \
    || die "the $1 round failed: $(tail -n 5 "$tmp/error.log")"
  case "$line" in
    mode=*) ;;
    *) die "the $1 round failed: $line $(tail -n 5 "$tmp/error.log")" ;;
  esac
  [ "$(field failures "$line")" = 0 ] || die "failed requests: $line"
  echo "$line"
}

# warm-up: the pools fill, LuaJIT compiles the hot paths
for c in $CLIENTS; do round raw "$c" 2000 > /dev/null; round connkit "$c" 2000 > /dev/null; done

missed=0
for c in $CLIENTS; do
  say ""
  say "== $c concurrent clients in one worker: $COUNT GETs per round, $REPS rounds each (alternating) =="
  ratios="" cpu_ratios="" added_p50="" added_worker="" sr="" sc="" pr="" pc=""
  r=1
  while [ $r -le "$REPS" ]; do
    lr=$(round raw "$c" "$COUNT"); lc=$(round connkit "$c" "$COUNT")
    s_r=$(field seconds "$lr"); s_c=$(field seconds "$lc")
    p_r=$(field p50_us "$lr"); p_c=$(field p50_us "$lc")
    sr="$sr $s_r"; sc="$sc $s_c"; pr="$pr $p_r"; pc="$pc $p_c"
    ratios="$ratios $(calc '%.4f' "$s_r / $s_c")"
    cpu_ratios="$cpu_ratios $(calc '%.4f' "$(field cpu "$lr") / $(field cpu "$lc")")"
    added_p50="$added_p50 $(calc '%.0f' "$p_c - $p_r")"
    added_worker="$added_worker $(calc '%.1f' "($s_c - $s_r) * 1e6 / $COUNT")"
    say "  round $r  raw     $(calc '%7.0f req/s' "$COUNT / $s_r")  p50 ${p_r} us  p90 $(field p90_us "$lr") us  p99 $(field p99_us "$lr") us  max $(field max_us "$lr") us  (cpu $(field cpu "$lr") s)"
    say "  round $r  connkit $(calc '%7.0f req/s' "$COUNT / $s_c")  p50 ${p_c} us  p90 $(field p90_us "$lc") us  p99 $(field p99_us "$lc") us  max $(field max_us "$lc") us  (cpu $(field cpu "$lc") s)"
    r=$((r + 1))
  done
  # shellcheck disable=SC2086
  { ratio=$(median $ratios); rspread=$(spread $ratios)
    ap50=$(median $added_p50); ap50s=$(spread $added_p50)
    aw=$(median $added_worker); aws=$(spread $added_worker)
    cr=$(median $cpu_ratios); crs=$(spread $cpu_ratios)
    mr=$(median $sr); mc=$(median $sc); }
  say "  throughput ratio connkit/raw: median $ratio (rounds $rspread); CPU-time ratio raw/connkit $cr (rounds $crs)"
  say "  added latency per request: p50 +$ap50 us (rounds $ap50s); worker time +$aw us (rounds $aws)"
  v=$(verdict "$ratio >= $TARGET")
  [ "$v" = OK ] || missed=1
  summary "ngx $c clients ($COUNT GETs, $REPS rounds, one worker): raw cosockets $(calc '%.0f' "$COUNT / $mr") req/s, connkit $(calc '%.0f' "$COUNT / $mc") req/s (medians); throughput ratio connkit/raw $ratio (median of the rounds' ratios, spread $rspread; target >= $TARGET: $v); CPU-time ratio raw/connkit $cr; added latency p50 +$ap50 us, worker time +$aw us per request"
done

if [ "$PROFILE" = always ] || { [ "$PROFILE" = auto ] && [ $missed = 1 ]; }; then
  say ""
  say "== where the time goes (10 clients, $COUNT GETs, worker CPU time per request, median of $REPS rounds) =="
  say "   raw: the floor; transport: connkit's ngx transport alone (one prepared request performed"
  say "   again and again); connkit: account:get (request building, auth, rules, then the transport)"
  for mode in raw transport connkit; do
    cpus=""
    r=1
    while [ $r -le "$REPS" ]; do
      l=$(round "$mode" 10 "$COUNT")
      cpus="$cpus $(calc '%.2f' "$(field cpu "$l") * 1e6 / $COUNT")"
      r=$((r + 1))
    done
    # shellcheck disable=SC2086
    say "  $(printf '%-9s' "$mode") $(median $cpus) us per request (rounds $(spread $cpus))"
  done
  for mode in raw connkit; do
    say ""
    say "== one $mode round of 10 clients under jit.profile =="
    curl -sS --max-time 600 "http://127.0.0.1:$port/bench/profile?mode=$mode&clients=10&count=$COUNT&port=$uport" \
      || die "the profiled round failed"
  done
fi
