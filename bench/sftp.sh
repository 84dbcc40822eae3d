#!/bin/sh
# SFTP benchmark (part of `make bench`): connkit against OpenSSH `sftp -b`
# and `curl sftp://` on loopback, get and put of a 256 MiB file, several
# runs each; prints MiB/s and ratios. Runs with the module built in $BUILD
# under $LUA. The files live on tmpfs when there is one, so the disk is not
# what is measured. SFTP_BENCH_MIB / SFTP_BENCH_RUNS change size and runs.
set -eu
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/$LUA}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${CONNKIT_TMP:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  CONNKIT_TMP=/dev/shm
  export CONNKIT_TMP
fi
curl -V 2>/dev/null | grep -q '^Protocols:.* sftp' || {
  echo "sftp bench: this curl has no sftp support" >&2; exit 1; }
LUA=$LUA BUILD=$BUILD exec sh tools/run-lua.sh bench/sftp_bench.lua
