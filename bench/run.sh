#!/bin/sh
# `make bench`: runs each benchmark in turn, then prints one summary.
# Called with LUA and BUILD set (see Makefile). Each bench/<name>.sh prints
# its own details and appends its result lines to the file $BENCH_SUMMARY.
# Exits non-zero when a benchmark could not run (missed targets are reported
# as MISSED in the summary, not as a failure: timings are noisy).
set -u
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
export LUA BUILD

BENCH_SUMMARY=$(mktemp /tmp/connkit-bench-summary.XXXXXX)
export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT
trap 'exit 130' INT TERM HUP

status=0
for name in http sftp luv ngx redis; do
  script="bench/$name.sh"
  if [ ! -f "$script" ]; then
    echo "$name: skipped ($script not present)" >> "$BENCH_SUMMARY"
    continue
  fi
  echo "===== $script ($LUA, $BUILD) ====="
  before=$(wc -l < "$BENCH_SUMMARY")
  if sh "$script"; then
    [ "$(wc -l < "$BENCH_SUMMARY")" -gt "$before" ] \
      || echo "$name: finished (figures above)" >> "$BENCH_SUMMARY"
  else
    echo "$name: FAILED ($script exited non-zero, see above)" >> "$BENCH_SUMMARY"
    status=1
  fi
  echo ""
done

echo "===== summary ($LUA) ====="
cat "$BENCH_SUMMARY"
exit $status
