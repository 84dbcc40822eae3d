#!/bin/sh
# make fuzz: for each target named, replays its committed seed corpus
# (fuzz/corpus/<target>/), then fuzzes it for FUZZ_SECONDS (default 30).
# New inputs go to build/fuzz/corpus/<target>/ (not committed); a crash, an
# oracle failure, a timeout (FUZZ_TIMEOUT seconds for one input, default 10)
# or a leak is saved in build/fuzz/crashes/<target>/ and fails the run after
# every target has had its turn. Prints each target's execution count.
#   sh fuzz/run.sh template token ...
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
seconds=${FUZZ_SECONDS:-30}
timeout=${FUZZ_TIMEOUT:-10}
failed=""
summary=""
for t in "$@"; do
  bin=build/fuzz/$t
  seeds=fuzz/corpus/$t
  work=build/fuzz/corpus/$t
  crashes=build/fuzz/crashes/$t
  log=build/fuzz/$t.log
  mkdir -p "$work" "$crashes"
  # one input of a target may be longer than its seeds, within reason
  max_len=4096
  [ -f "fuzz/$t.options" ] && max_len=$(sed -n 's/^max_len *= *//p' "fuzz/$t.options")
  echo "fuzz: $t: replaying $(ls "$seeds" | wc -l) seeds"
  if ! "$bin" -runs=0 -timeout="$timeout" -artifact_prefix="$crashes/" \
      "$seeds" >"$log" 2>&1; then
    echo "fuzz: $t: a seed fails (log: $log)" >&2
    tail -n 40 "$log" >&2
    failed="$failed $t"
    continue
  fi
  echo "fuzz: $t: fuzzing for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -timeout="$timeout" -max_len="$max_len" \
      -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$seeds" \
      >"$log" 2>&1; then
    echo "fuzz: $t: FAILED (log: $log)" >&2
    grep -E "oracle failed|ERROR: |SUMMARY" "$log" | head -n 5 >&2
    echo "fuzz: $t: the input is in $crashes/; replay it with $bin <file>," >&2
    echo "fuzz: $t: and once fixed, commit it to $seeds/ as a regression seed" >&2
    failed="$failed $t"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  summary="$summary
  $t: ${runs:-?} executions in ${seconds}s"
done
echo "fuzz: executions:$summary"
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed" >&2
  exit 1
fi
echo "fuzz: all targets clean"
