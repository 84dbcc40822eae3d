#!/bin/sh
# The pollable engine in a luv loop against connkit.all: bench/luv.lua runs
# the same COUNT GETs of /data.json from a local nginx (bench/nginx.conf.in,
# as bench/http.sh starts it) with CONCURRENCY in flight, once with
# connkit.all and once from a luv loop (connkit.pollfd, connkit.timeout,
# req:start), each in a process of its own, REPS runs alternating; prints
# the throughput ratio luv/all (median of the runs' ratios; target >= 0.95)
# and appends it to $BENCH_SUMMARY. A third run per round drives the same
# handles from a plain connkit.poll loop (no luv, no pollfd): luv/poll is
# what the event loop itself costs, poll/all what the handles cost against
# the batch in C. Skipped when lua-luv is not installed.
# Then the instructions per request of each mode under callgrind,
# (I(N2) - I(N1)) / (N2 - N1) as in bench/http.sh: deterministic where the
# wall clock is not (a busy machine), and user space only (the syscalls the
# event loop adds are not in it).
# Knobs (env): BENCH_LUV_COUNT (20000), BENCH_CONCURRENCY (10), BENCH_REPS (5),
# BENCH_INSTR (callgrind | off; callgrind when valgrind is installed),
# BENCH_CG_N1 (200), BENCH_CG_N2 (2200).
set -eu
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

COUNT=${BENCH_LUV_COUNT:-20000}
CONC=${BENCH_CONCURRENCY:-10}
REPS=${BENCH_REPS:-5}
SUMMARY=${BENCH_SUMMARY:-/dev/null}
INSTR=${BENCH_INSTR:-callgrind}
N1=${BENCH_CG_N1:-200}
N2=${BENCH_CG_N2:-2200}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export LUA_CPATH="$root/$BUILD/?.so;;"
export CONNKIT_ROOT="$root"

BENCH_NAME=luv.sh
. bench/lib.sh

if ! "$LUA" -e 'require "luv"' 2>/dev/null; then
  summary "luv: skipped (lua-luv is not installed for $LUA)"
  exit 0
fi

# --- nginx on a free loopback port, in its own temp dir ---------------------
bench_nginx_start bench/nginx.conf.in /data.json

# --- the runs ------------------------------------------------------------------
run() {
  line=$("$LUA" bench/luv.lua "$port" "$COUNT" "$CONC" "$1") || die "luv.lua $1 failed: $line"
  [ "$(field failures "$line")" = 0 ] || die "luv.lua $1: failed requests: $line"
  printf '%s\n' "$line"
}
say "== luv loop vs connkit.all: $COUNT GETs, $CONC in flight, $REPS runs each (alternating) =="
ws="" wl="" wp="" pairs="" lp=""
r=1
while [ $r -le "$REPS" ]; do
  la=$(run all); sa=$(field seconds "$la")
  ll=$(run luv); sl=$(field seconds "$ll")
  lq=$(run poll); sp=$(field seconds "$lq")
  say "  run $r  connkit.all  $(calc '%8.0f req/s' "$COUNT / $sa")  (wall $sa s, cpu $(field cpu "$la") s)"
  say "  run $r  luv loop     $(calc '%8.0f req/s' "$COUNT / $sl")  (wall $sl s, cpu $(field cpu "$ll") s, $(field wakeups "$ll") wakeups)"
  say "  run $r  poll loop    $(calc '%8.0f req/s' "$COUNT / $sp")  (wall $sp s, cpu $(field cpu "$lq") s)"
  ws="$ws $sa" wl="$wl $sl" wp="$wp $sp"
  pairs="$pairs $(calc '%.6f' "$sa / $sl")" lp="$lp $(calc '%.6f' "$sp / $sl")"
  r=$((r + 1))
done
# shellcheck disable=SC2086
{ med_a=$(median $ws); med_l=$(median $wl); med_p=$(median $wp)
  ratio=$(calc '%.3f' "$(median $pairs)"); own=$(calc '%.3f' "$(median $lp)"); }
summary "luv ($COUNT GETs, $CONC in flight, $REPS runs): connkit.all $(calc '%.0f' "$COUNT / $med_a") req/s, luv loop $(calc '%.0f' "$COUNT / $med_l") req/s, handles in a connkit.poll loop $(calc '%.0f' "$COUNT / $med_p") req/s (medians), throughput ratio luv/all $ratio (median of the runs' ratios; target >= 0.95: $(verdict "$ratio >= 0.95")); luv/poll $own (the event loop's own cost)"

# --- instructions per request (callgrind) --------------------------------------
if [ "$INSTR" = off ] || ! command -v valgrind > /dev/null; then
  summary "luv instructions/request: not measured (BENCH_INSTR=$INSTR or valgrind missing)"
  exit 0
fi
instr() { # instr MODE N: the instructions of one run
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
    "$LUA" bench/luv.lua "$port" "$2" "$CONC" "$1" > "$tmp/cg.line" 2> "$tmp/cg.err" \
    || { cat "$tmp/cg.line" "$tmp/cg.err" >&2; die "luv.lua $1 under callgrind failed"; }
  sed -n 's/^summary: *//p' "$tmp/cg.out" | head -n 1
}
say "== instructions per request (callgrind): (I($N2) - I($N1)) / $((N2 - N1)) =="
ipr=""
for m in all luv poll; do
  i1=$(instr "$m" "$N1"); i2=$(instr "$m" "$N2")
  v=$(calc '%.0f' "($i2 - $i1) / ($N2 - $N1)")
  say "  $m  I($N1)=$i1  I($N2)=$i2  -> $v per request"
  ipr="$ipr $m=$v"
done
summary "luv instructions/request (callgrind):$ipr"
