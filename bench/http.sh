#!/bin/sh
# HTTP benchmarks: connkit against plain libcurl, side by side, on loopback.
#
#  1. sequential: bench/http.lua (an api_token account, acct:get in a loop)
#     against bench/http_baseline.c (one reused easy handle, the same
#     request: headers and Accept-Encoding);
#     COUNT GETs each, REPS runs each alternating, medians compared (best
#     runs and CPU time are printed too: they are steadier on a busy machine).
#  2. instructions per request of both, from callgrind (or perf stat where
#     hardware counters work): (I(N2) - I(N1)) / (N2 - N1), so start-up cost
#     cancels out; CG_RUNS pairs each, median and spread printed.
#  3. concurrent: bench/multi.lua (connkit.all, CONCURRENCY in flight) against
#     bench/multi_baseline.c (curl multi, CONCURRENCY in flight): the same
#     instruction count (one round of MN1 and of MN2 requests; connkit's
#     acct:prepare of the requests, untimed in the wall-time runs as the
#     baseline's handle set-up is, counted apart and subtracted), then the
#     throughput in REPS alternating runs (steady state and fresh process).
#  4. the token store on the request path: bench/store.lua, an oauth2
#     client_credentials account (token from nginx's /token) with a file store
#     against the same with a memory store.
#
# nginx runs on a free 127.0.0.1 port with everything in a temp dir and is
# stopped by PID. Baselines are built into $BUILD/bench, where the callgrind
# profiles are kept too. Summary lines are appended to $BENCH_SUMMARY if set.
# Knobs (env): BENCH_COUNT (20000), BENCH_REPS (7), BENCH_CG_N1 (200),
# BENCH_CG_N2 (2200), BENCH_CG_RUNS (3), BENCH_MULTI_CG_N1 (200),
# BENCH_MULTI_CG_N2 (1200), BENCH_MULTI_STEADY_RUNS (1; 0 skips the
# steady-state count, about 2 minutes under callgrind), BENCH_MULTI_COUNT
# (20000), BENCH_CONCURRENCY (10),
# BENCH_INSTR (auto | perf | callgrind | off), BENCH_LUA_PATH (extra Lua path,
# searched after the repository's own lua/).
set -eu
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

COUNT=${BENCH_COUNT:-20000}
REPS=${BENCH_REPS:-7}
N1=${BENCH_CG_N1:-200}
N2=${BENCH_CG_N2:-2200}
CG_RUNS=${BENCH_CG_RUNS:-3}
MN1=${BENCH_MULTI_CG_N1:-200}
MN2=${BENCH_MULTI_CG_N2:-1200}
STEADY_RUNS=${BENCH_MULTI_STEADY_RUNS:-1}
MCOUNT=${BENCH_MULTI_COUNT:-20000}
CONC=${BENCH_CONCURRENCY:-10}
INSTR=${BENCH_INSTR:-auto}
TOKEN=bench-token
REGION=us
SUMMARY=${BENCH_SUMMARY:-/dev/null}

out="$root/$BUILD/bench"
mkdir -p "$out"
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;${BENCH_LUA_PATH:+$BENCH_LUA_PATH;};"
export LUA_CPATH="$root/$BUILD/?.so;;"
export CONNKIT_ROOT="$root"

BENCH_NAME=http.sh
. bench/lib.sh

# --- build the baselines -------------------------------------------------
CC=${CC:-cc}
for prog in http_baseline multi_baseline; do
  # shellcheck disable=SC2046
  $CC -O2 -g -std=c99 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wmissing-prototypes \
    -Wstrict-prototypes -Wwrite-strings -Wcast-qual -Wformat=2 -o "$out/$prog" "bench/$prog.c" \
    $(pkg-config --cflags --libs libcurl) || die "could not build bench/$prog.c"
done

# --- check the Lua side loads ---------------------------------------------
"$LUA" -e 'require "connkit"; require "socket"' \
  || die "$LUA cannot load connkit (built in $BUILD) and lua-socket"

# --- nginx on a free loopback port, in its own temp dir ---------------------
bench_nginx_start bench/nginx.conf.in /data.json
url="http://127.0.0.1:$port/data.json"
say "nginx $($nginx -v 2>&1 | sed 's|.*/||') on 127.0.0.1:$port (pid $nginx_pid), $(wc -c < bench/data.json | tr -d ' ')-byte JSON, keep-alive"

# --- helpers ----------------------------------------------------------------

# run_one LABEL CMD...: runs a benchmark program, checks it, prints its line.
run_one() {
  label=$1; shift
  line=$("$@" 2> "$tmp/err") || {
    cat "$tmp/err" >&2
    die "$label failed: $line"
  }
  [ -s "$tmp/err" ] && cat "$tmp/err" >&2
  case "$line" in
    skipped*) echo "$line"; return 0 ;;
  esac
  [ "$(field failures "$line")" = 0 ] || die "$label: failed requests: $line"
  echo "$line"
}

# mem_of LINE: "; page faults N (first round N), peak RSS N MB" from a
# result line's faults=, first_faults= and maxrss= (kB); nothing when the
# line has none. mem_keep LINE b|c collects them into flt_b/c, fflt_b/c and
# rss_b/c for medians.
mem_of() {
  mf=$(field faults "$1"); [ -n "$mf" ] || return 0
  printf '; page faults %s (first round %s), peak RSS %s MB' "$mf" "$(field first_faults "$1")" \
    "$(calc '%.1f' "$(field maxrss "$1") / 1024")"
}
mem_keep() {
  mf=$(field faults "$1"); [ -n "$mf" ] || return 0
  mff=$(field first_faults "$1"); mr=$(field maxrss "$1")
  eval "flt_$2=\"\$flt_$2 $mf\"; fflt_$2=\"\$fflt_$2 $mff\"; rss_$2=\"\$rss_$2 $mr\""
}

# compare KIND COUNT: runs base_KIND and ck_KIND (functions printing a result
# line) REPS times alternating; sets med_b med_c (median wall seconds),
# best_b best_c (fastest run), cpu_b cpu_c (median CPU seconds) and pair
# (the median over the runs of connkit's wall time / the baseline's in the
# same run: the machine's speed drifts, and a run's pair sees the same
# drift) and pairs (every run's). With first_seconds in the lines,
# first_pair and fpairs are the same for those.
compare() {
  kind=$1 n=$2
  wb="" wc="" cb="" cc="" wp="" pairs="" fpairs=""
  flt_b="" flt_c="" fflt_b="" fflt_c="" rss_b="" rss_c=""
  r=1
  while [ $r -le "$REPS" ]; do
    l=$(run_one "baseline ($kind)" "base_$kind")
    sb=$(field seconds "$l"); c=$(field cpu "$l"); wb="$wb $sb"; cb="$cb $c"; fb=$(field first_seconds "$l")
    f=""; [ -n "$fb" ] && f="; first round $fb s"
    f="$f$(mem_of "$l")"; mem_keep "$l" b
    say "  run $r  $(printf '%-10s' "$label_b") $(calc '%8.0f req/s' "$n / $sb")  (wall $sb s, cpu $c s$f)"
    l=$(run_one "connkit ($kind)" "ck_$kind")
    s=$(field seconds "$l"); c=$(field cpu "$l"); wc="$wc $s"; cc="$cc $c"; fc=$(field first_seconds "$l")
    pairs="$pairs $(calc '%.6f' "$s / $sb")"
    f=""; [ -n "$fc" ] && [ -n "$fb" ] && { fpairs="$fpairs $(calc '%.6f' "$fc / $fb")"; f="; first round $fc s"; }
    p=$(field prepare "$l"); [ -n "$p" ] && { wp="$wp $p"; p="; acct:prepare before it, untimed: $p s"; }
    p="$p$(mem_of "$l")"; mem_keep "$l" c
    say "  run $r  $(printf '%-10s' "$label_c") $(calc '%8.0f req/s' "$n / $s")  (wall $s s, cpu $c s$f$p)"
    r=$((r + 1))
  done
  # shellcheck disable=SC2086
  { med_b=$(median $wb); med_c=$(median $wc); best_b=$(minimum $wb); best_c=$(minimum $wc)
    cpu_b=$(median $cb); cpu_c=$(median $cc); prep_c=""; [ -n "$wp" ] && prep_c=$(median $wp)
    pair=$(median $pairs); first_pair=""; [ -n "$fpairs" ] && first_pair=$(median $fpairs); }
  say "  median: $label_b $(calc '%.0f' "$n / $med_b") req/s, $label_c $(calc '%.0f' "$n / $med_c") req/s"
}

# inverse VALUES...: 1/v of each, for ratios the other way round.
inverse() { for v in "$@"; do calc '%.6f' "1 / $v"; printf ' '; done; }
# runs_of VALUES...: "median M (runs: a b c; spread lo..hi)" with FMT ($fmt).
runs_of() {
  # shellcheck disable=SC2086
  m=$(median "$@"); lo_hi=$(spread "$@")
  list=""; for v in "$@"; do list="$list $(calc "$fmt" "$v")"; done
  printf 'median %s (runs:%s; spread %s..%s)' "$(calc "$fmt" "$m")" "$list" \
    "$(calc "$fmt" "${lo_hi%%..*}")" "$(calc "$fmt" "${lo_hi##*..}")"
}

# --- 1. sequential -----------------------------------------------------------
base_seq() { "$out/http_baseline" "$url" "$COUNT" "$TOKEN" "$REGION"; }
ck_seq() { "$LUA" bench/http.lua "$port" "$COUNT"; }
say ""
say "== sequential: $COUNT GETs, one at a time, $REPS runs each (alternating) =="
say "  (the same request on both sides: Authorization, X-Region and Accept-Encoding)"
label_b=libcurl label_c=connkit
compare seq "$COUNT"
ratio=$(calc '%.3f' "$pair")
fmt='%.3f'
# shellcheck disable=SC2086
say "  wall-time ratio connkit/libcurl: $(runs_of $pairs); of the medians $(calc '%.3f' "$med_c / $med_b")," \
  "best runs $(calc '%.3f' "$best_c / $best_b"); CPU time ratio (median) $(calc '%.3f' "$cpu_c / $cpu_b")"
# shellcheck disable=SC2086
summary "http sequential ($COUNT GETs, $REPS runs): libcurl $(calc '%.0f' "$COUNT / $med_b") req/s, connkit $(calc '%.0f' "$COUNT / $med_c") req/s (medians), wall-time ratio connkit/libcurl $(runs_of $pairs) (target <= 1.05: $(verdict "$ratio <= 1.05")); CPU-time ratio $(calc '%.3f' "$cpu_c / $cpu_b")"

# --- 2. instructions per request ---------------------------------------------
# instr CMD...: user-space instructions the command executes, or nothing.
perf_ok() {
  v=$(perf stat -x, -e instructions:u true 2>&1 >/dev/null | awk -F, '/instructions/ { print $1; exit }')
  case "$v" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac
}
instr() {
  case "$tool" in
    perf)
      perf stat -x, -o "$tmp/perf" -e instructions:u "$@" > /dev/null 2> "$tmp/err" \
        || { cat "$tmp/err" >&2; return 1; }
      awk -F, '/instructions/ { print $1; exit }' "$tmp/perf" ;;
    callgrind)
      f="$tmp/callgrind.out"
      valgrind --tool=callgrind --callgrind-out-file="$f" "$@" > /dev/null 2> "$tmp/err" \
        || { cat "$tmp/err" >&2; return 1; }
      cp "$f" "$cg_keep"
      sed -n 's/^summary: *//p' "$f" | head -n 1 ;;
  esac
}
# count KIND N: instr of one program run of KIND with N requests; the
# callgrind profile is kept as $out/callgrind.KIND.N.out.
count() {
  cg_keep="$out/callgrind.$1.$2.out"
  case "$1" in
    seq_base) instr "$out/http_baseline" "$url" "$2" "$TOKEN" "$REGION" ;;
    seq_ck) instr "$LUA" bench/http.lua "$port" "$2" ;;
    multi_base) instr "$out/multi_baseline" "$url" "$2" "$CONC" "$TOKEN" "$REGION" 1 ;;
    multi_ck) instr "$LUA" bench/multi.lua "$port" "$2" "$CONC" 1 ;;
    multi_prep) instr "$LUA" bench/multi.lua "$port" "$2" "$CONC" prepare ;;
    multi_base2) instr "$out/multi_baseline" "$url" "$2" "$CONC" "$TOKEN" "$REGION" 2 ;;
    multi_ck2) instr "$LUA" bench/multi.lua "$port" "$2" "$CONC" 2 ;;
    multi_ck1p) instr "$LUA" bench/multi.lua "$port" "$2" "$CONC" 1+prepare ;;
  esac || die "$1 under $tool failed"
}
# per_request KIND N1 N2: (I(N2) - I(N1)) / (N2 - N1) of KIND, once.
per_request() {
  a=$(count "$1" "$2"); z=$(count "$1" "$3")
  calc '%.0f' "($z - $a) / ($3 - $2)"
}
tool=""
case "$INSTR" in
  off) ;;
  perf) perf_ok && tool=perf ;;
  callgrind) command -v valgrind > /dev/null && tool=callgrind ;;
  *) if command -v perf > /dev/null && perf_ok; then tool=perf
     elif command -v valgrind > /dev/null; then tool=callgrind; fi ;;
esac
say ""
fmt='%.0f'
if [ -z "$tool" ]; then
  summary "http instructions/request: not measured (BENCH_INSTR=$INSTR; perf counters unavailable and/or valgrind missing)"
else
  say "== sequential, instructions per request ($tool): (I($N2) - I($N1)) / $((N2 - N1)), $CG_RUNS runs each =="
  [ "$INSTR" = auto ] && [ "$tool" = callgrind ] && say "  (perf stat: hardware counters not available here)"
  bs="" cs="" ds="" r=1
  while [ $r -le "$CG_RUNS" ]; do
    b=$(per_request seq_base "$N1" "$N2"); c=$(per_request seq_ck "$N1" "$N2")
    bs="$bs $b"; cs="$cs $c"; ds="$ds $((c - b))"
    say "  run $r  libcurl $b  connkit $c  extra $((c - b))"
    r=$((r + 1))
  done
  # shellcheck disable=SC2086
  { bi=$(median $bs); ci=$(median $cs); extra=$(median $ds); }
  # shellcheck disable=SC2086
  say "  libcurl $(runs_of $bs)"
  # shellcheck disable=SC2086
  say "  connkit $(runs_of $cs)"
  # shellcheck disable=SC2086
  summary "http sequential instructions/request ($tool, $CG_RUNS runs): libcurl $bi, connkit $ci, extra $(runs_of $ds) (target <= +0: $(verdict "$extra <= 0"))"
  if [ "$tool" = callgrind ]; then
    say "  profiles: $out/callgrind.{seq_base,seq_ck}.{$N1,$N2}.out"
    say "  e.g. callgrind_annotate --inclusive=yes $out/callgrind.seq_ck.$N2.out | head -40"
  fi
fi

# --- 3. concurrent -----------------------------------------------------------
say ""
l=$(run_one connkit-multi "$LUA" bench/multi.lua "$port" "$CONC" "$CONC")
case "$l" in
  skipped*)
    say "  connkit: $l"
    summary "http concurrent: $l" ;;
  *)
    if [ -n "$tool" ]; then
      say "== concurrent, instructions per request ($tool): (I($MN2) - I($MN1)) / $((MN2 - MN1)), $CONC in flight, $CG_RUNS runs each =="
      say "  (one round each; connkit's: the whole program minus the same program that only"
      say "  prepares its requests, which the wall-time runs leave untimed as the baseline's set-up)"
      bs="" cs="" ps="" rs="" r=1
      while [ $r -le "$CG_RUNS" ]; do
        b=$(per_request multi_base "$MN1" "$MN2"); w=$(per_request multi_ck "$MN1" "$MN2")
        p=$(per_request multi_prep "$MN1" "$MN2"); c=$((w - p))
        bs="$bs $b"; cs="$cs $c"; ps="$ps $p"; rs="$rs $(calc '%.6f' "$c / $b")"
        say "  run $r  curl multi $b  connkit.all $c (+ acct:prepare $p)  ratio $(calc '%.3f' "$c / $b")"
        r=$((r + 1))
      done
      # shellcheck disable=SC2086
      { mb=$(median $bs); mc=$(median $cs); mp=$(median $ps); mr=$(median $rs); }
      # shellcheck disable=SC2086
      say "  curl multi  $(runs_of $bs)"
      # shellcheck disable=SC2086
      say "  connkit.all $(runs_of $cs)"
      # shellcheck disable=SC2086
      say "  acct:prepare (untimed below) $(runs_of $ps)"
      fmt='%.3f'
      # shellcheck disable=SC2086
      summary "http concurrent instructions/request ($tool, $CONC in flight, $CG_RUNS runs): curl multi $mb, connkit.all $mc (acct:prepare apart: $mp), ratio $(runs_of $rs) (target <= 1.05: $(verdict "$mr <= 1.05"))"
      fmt='%.0f'
      [ "$tool" = callgrind ] && say "  profiles: $out/callgrind.{multi_base,multi_ck,multi_prep}.{$MN1,$MN2}.out"
      if [ "$STEADY_RUNS" -gt 0 ]; then
        say ""
        say "== concurrent, steady state, instructions per request ($tool): the second round of $MCOUNT, $STEADY_RUNS run(s) =="
        say "  (curl multi: I(2 rounds) - I(1 round); connkit: I(2 rounds) - I(1 round, then $MCOUNT more requests"
        say "  prepared): the round as the wall-time runs time it, with the first round's garbage and a heap of"
        say "  $MCOUNT prepared requests)"
        bs="" cs="" rs="" r=1
        while [ $r -le "$STEADY_RUNS" ]; do
          b=$(( $(count multi_base2 "$MCOUNT") - $(count multi_base "$MCOUNT") ))
          c=$(( $(count multi_ck2 "$MCOUNT") - $(count multi_ck1p "$MCOUNT") ))
          b=$(calc '%.0f' "$b / $MCOUNT"); c=$(calc '%.0f' "$c / $MCOUNT")
          bs="$bs $b"; cs="$cs $c"; rs="$rs $(calc '%.6f' "$c / $b")"
          say "  run $r  curl multi $b  connkit.all $c  ratio $(calc '%.3f' "$c / $b")"
          r=$((r + 1))
        done
        fmt='%.3f'
        # shellcheck disable=SC2086
        summary "http concurrent instructions/request, steady state ($tool, second round of $MCOUNT, $STEADY_RUNS run(s)): curl multi $(median $bs), connkit.all $(median $cs), ratio $(runs_of $rs) (target <= 1.05: $(verdict "$(median $rs) <= 1.05"))"
        fmt='%.0f'
      fi
      say ""
    fi
    say "== concurrent: $MCOUNT GETs, $CONC in flight, $REPS runs each (alternating) =="
    base_multi() { "$out/multi_baseline" "$url" "$MCOUNT" "$CONC" "$TOKEN" "$REGION"; }
    ck_multi() { "$LUA" bench/multi.lua "$port" "$MCOUNT" "$CONC"; }
    label_b="curl multi" label_c="connkit.all"
    say "  (each run: a warm-up of $CONC requests, then two timed rounds of $MCOUNT: the first in a fresh"
    say "  process, the second in steady state; the figures are the second's)"
    compare multi "$MCOUNT"
    ratio=$(calc '%.3f' "1 / $pair")
    first_ratio=$(calc '%.3f' "1 / $first_pair")
    fmt='%.3f'
    # shellcheck disable=SC2046,SC2086
    { tput=$(runs_of $(inverse $pairs)); ftput=$(runs_of $(inverse $fpairs)); }
    say "  throughput ratio connkit/curl (steady state): $tput; of the medians $(calc '%.3f' "$med_b / $med_c")," \
      "best runs $(calc '%.3f' "$best_b / $best_c"); CPU time ratio (median) $(calc '%.3f' "$cpu_c / $cpu_b")"
    say "  first round in a fresh process: throughput ratio $ftput (it also grows the Lua heap for the"
    say "  $MCOUNT responses it returns: page faults, which cost ~10 us each on some VMs)"
    [ -n "$prep_c" ] && say "  preparing the $MCOUNT requests (before the clock starts, as the baseline sets up" \
      "its handles): median $prep_c s"
    # shellcheck disable=SC2086
    { mem_line="page faults per round (medians): steady state curl multi $(median $flt_b), connkit.all $(median $flt_c);"
      mem_line="$mem_line first round curl multi $(median $fflt_b), connkit.all $(median $fflt_c);"
      mem_line="$mem_line peak RSS curl multi $(calc '%.1f' "$(median $rss_b) / 1024") MB, connkit $(calc '%.1f' "$(median $rss_c) / 1024") MB"; }
    say "  $mem_line"
    l=$(run_one connkit-mem "$LUA" bench/multi.lua "$port" "$MCOUNT" "$CONC" mem)
    mem_line="$mem_line; Lua heap per prepared request $(field prepared_bytes "$l") bytes, per result of connkit.all $(field result_bytes "$l") bytes"
    say "  Lua heap (full collections, untimed run): per prepared request $(field prepared_bytes "$l") bytes," \
      "per result of connkit.all $(field result_bytes "$l") bytes"
    summary "http concurrent ($MCOUNT GETs, $CONC in flight, $REPS runs, steady state): curl multi $(calc '%.0f' "$MCOUNT / $med_b") req/s, connkit.all $(calc '%.0f' "$MCOUNT / $med_c") req/s (medians), throughput ratio connkit/curl $tput (target >= 1.0: $(verdict "$ratio >= 1.0")); CPU-time ratio $(calc '%.3f' "$cpu_c / $cpu_b")"
    summary "http concurrent, first round in a fresh process ($REPS runs): throughput ratio connkit/curl $ftput (target >= 0.95: $(verdict "$first_ratio >= 0.95"))"
    summary "http concurrent memory ($MCOUNT GETs): $mem_line" ;;
esac

# --- 4. the store on the request path -------------------------------------------
say ""
say "== token store: $COUNT GETs through an oauth2 account, file store vs memory store, $REPS runs each =="
mkdir "$tmp/store"
l=$(run_one connkit-store "$LUA" bench/store.lua "$port" 10 file "$tmp/store/probe")
case "$l" in
  skipped*)
    say "  connkit: $l"
    summary "token store: $l" ;;
  *)
    base_store() { "$LUA" bench/store.lua "$port" "$COUNT" memory; }
    # a fresh store directory per run ($r is the run number in compare)
    ck_store() { "$LUA" bench/store.lua "$port" "$COUNT" file "$tmp/store/s$r"; }
    label_b="memory" label_c="file"
    compare store "$COUNT"
    ratio=$(calc '%.3f' "$pair")
    fmt='%.3f'
    # shellcheck disable=SC2086
    say "  wall-time ratio file/memory: $(runs_of $pairs); of the medians $(calc '%.3f' "$med_c / $med_b")"
    # shellcheck disable=SC2086
    summary "token store ($COUNT GETs, $REPS runs): memory store $(calc '%.0f' "$COUNT / $med_b") req/s, file store $(calc '%.0f' "$COUNT / $med_c") req/s (medians), wall-time ratio file/memory $(runs_of $pairs) (target <= 1.05: $(verdict "$ratio <= 1.05")); CPU-time ratio $(calc '%.3f' "$cpu_c / $cpu_b")" ;;
esac
